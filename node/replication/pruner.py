"""Pruner: drop journal frames once every campus is known to hold them,
and trim the conflict log to its configured retention.

Leaves (node.leaf) count while within their retention (``campuses_kept_for``).
"Known" comes from Acks: each receiver reports its own journal vector and
everything it has learned of the others, so knowledge flows backwards round
the ring. A campus never heard from counts as holding nothing, which keeps
the journal whole for it; the journal size in status shows that growth.
"""

from __future__ import annotations

import asyncio
import logging
import time

from node.dr.sets import SetGuard
from node.replication.resources import NodeResources
from node.replication.state import ReplicationState
from node.replication.vectors import Vector, meet
from ringsync.config import NodeConfig

log = logging.getLogger(__name__)

PRUNE_INTERVAL_SECONDS = 2.0
CONFLICT_LOG_PRUNE_EVERY = 30  # rounds: once a minute


async def prune_loop(config: NodeConfig, res: NodeResources, state: ReplicationState,
                     sets: SetGuard) -> None:
    """Every few seconds: prune what every campus holds, per ``state.known``;
    once a minute, the conflict log."""
    rounds = 0
    while True:
        await asyncio.sleep(PRUNE_INTERVAL_SECONDS)
        rounds += 1
        if rounds % CONFLICT_LOG_PRUNE_EVERY == 0:  # the conflict log's retention
            settings = config.cluster.conflicts
            try:
                await res.in_engine(res.engine.store.prune_conflicts, settings.log_keep_rows,
                                    settings.log_keep_days)
            except Exception:
                log.exception("conflict log prune failed; will retry")
        await prune_journal(await campuses_kept_for(config, res, state), res, state, sets)


async def campuses_kept_for(config: NodeConfig, res: NodeResources,
                            state: ReplicationState) -> tuple[str, ...]:
    """The campuses whose needs keep frames in this journal. On a ring member:
    every member, and every leaf heard of whose oldest missing frame is within
    its ``retention_hours`` (a leaf never heard of copies its subset when it
    first comes; one past its retention must be re-seeded). On a leaf: the
    ring members, which must get its own writes (none if it sends none up)."""
    cluster = config.cluster
    leaf = config.leaf
    if leaf is not None:
        return cluster.ring if leaf.uploads else ()
    kept = list(cluster.ring)
    now = time.time()
    for other in cluster.leaves:
        known = state.known.get(other.name)
        if known is None:
            continue
        oldest = await res.in_journal(res.journal.oldest_missing_time, known)
        if oldest is None or now - oldest <= other.retention_hours * 3600:
            kept.append(other.name)
    return tuple(kept)


def held_everywhere(ring: tuple[str, ...], state: ReplicationState, sets: SetGuard,
                    journal_vector: Vector) -> Vector | None:
    """What the journal may drop: what every campus of ``ring`` is known to
    hold and this one has applied (None while a campus was never heard from)."""
    campus = state.campus
    known = state.known_snapshot(journal_vector)
    if any(c not in known for c in ring):
        return None
    # Never drop what this campus has not applied yet (nor its own
    # transactions whose row versions are not recorded yet).
    local = state.applied_vector(journal_vector)
    local[campus] = min(local.get(campus, 0), state.applied.get(campus, 0))
    everywhere = meet([*(known[c] for c in ring), local], journal_vector)
    if sets.enabled:  # keep own frames a stale-tail undo may still need
        if sets.own_frames_prunable():
            sets.own_prune_cap = everywhere.get(campus, 0)
        else:
            everywhere[campus] = min(everywhere.get(campus, 0), sets.own_prune_cap)
    return everywhere


async def prune_journal(ring: tuple[str, ...], res: NodeResources, state: ReplicationState,
                        sets: SetGuard) -> int:
    """One round: drop what is held everywhere; the transactions removed."""
    everywhere = held_everywhere(ring, state, sets, res.journal.vector())
    if everywhere is None:
        return 0
    try:
        removed = await res.in_journal(res.journal.prune, everywhere)
    except Exception:
        log.exception("journal prune failed; will retry")
        return 0
    if removed:
        log.debug("pruned %d transactions from the journal", removed)
    return removed
