"""Pruner: drop journal frames once every campus is known to hold them,
and trim the conflict log to its configured retention.

"Known" comes from Acks: each receiver reports its own journal vector and
everything it has learned of the others, so knowledge flows backwards round
the ring. A campus never heard from counts as holding nothing, which keeps
the journal whole for it; the journal size in status shows that growth.
"""

from __future__ import annotations

import asyncio
import logging

from node.dr.sets import SetGuard
from node.replication.resources import NodeResources
from node.replication.state import ReplicationState
from node.replication.vectors import meet
from ringsync.config import NodeConfig

log = logging.getLogger(__name__)

PRUNE_INTERVAL_SECONDS = 2.0
CONFLICT_LOG_PRUNE_EVERY = 30  # rounds: once a minute


async def prune_loop(config: NodeConfig, res: NodeResources, state: ReplicationState,
                     sets: SetGuard) -> None:
    """Every few seconds: prune what every campus holds, per ``state.known``."""
    ring = config.cluster.ring
    settings = config.cluster.conflicts
    campus, journal = state.campus, res.journal
    rounds = 0
    while True:
        await asyncio.sleep(PRUNE_INTERVAL_SECONDS)
        rounds += 1
        if rounds % CONFLICT_LOG_PRUNE_EVERY == 0:  # the conflict log's retention
            try:
                await res.in_engine(res.engine.store.prune_conflicts, settings.log_keep_rows,
                                    settings.log_keep_days)
            except Exception:
                log.exception("conflict log prune failed; will retry")
        known = state.known_snapshot(journal.vector())
        if any(c not in known for c in ring):
            continue
        # Never drop what this campus has not applied yet (nor its own
        # transactions whose row versions are not recorded yet).
        local = state.applied_vector(journal.vector())
        local[campus] = min(local.get(campus, 0), state.applied.get(campus, 0))
        everywhere = meet([*(known[c] for c in ring), local], journal.vector())
        if sets.enabled:  # keep own frames a stale-tail undo may still need
            if sets.own_frames_prunable():
                sets.own_prune_cap = everywhere.get(campus, 0)
            else:
                everywhere[campus] = min(everywhere.get(campus, 0), sets.own_prune_cap)
        try:
            removed = await res.in_journal(journal.prune, everywhere)
        except Exception:
            log.exception("journal prune failed; will retry")
            continue
        if removed:
            log.debug("pruned %d transactions from the journal", removed)
