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

from node.replication.vectors import meet
from node.runtime import NodeRuntime

log = logging.getLogger(__name__)

PRUNE_INTERVAL_SECONDS = 2.0
CONFLICT_LOG_PRUNE_EVERY = 30  # rounds: once a minute


async def prune_loop(rt: NodeRuntime) -> None:
    ring = rt.config.cluster.ring
    settings = rt.config.cluster.conflicts
    rounds = 0
    while True:
        await asyncio.sleep(PRUNE_INTERVAL_SECONDS)
        rounds += 1
        if rounds % CONFLICT_LOG_PRUNE_EVERY == 0:  # the conflict log's retention
            try:
                await rt.in_engine(rt.engine.store.prune_conflicts, settings.log_keep_rows,
                                   settings.log_keep_days)
            except Exception:
                log.exception("conflict log prune failed; will retry")
        known = rt.known_snapshot()
        if any(campus not in known for campus in ring):
            continue
        # Never drop what this campus has not applied yet (nor its own
        # transactions whose row versions are not recorded yet).
        local = rt.applied_vector()
        local[rt.campus] = min(local.get(rt.campus, 0), rt.applied.get(rt.campus, 0))
        everywhere = meet([*(known[c] for c in ring), local], rt.journal.vector())
        if rt.sets.enabled:  # keep own frames a stale-tail undo may still need
            if rt.sets.own_frames_prunable():
                rt.sets.own_prune_cap = everywhere.get(rt.campus, 0)
            else:
                everywhere[rt.campus] = min(everywhere.get(rt.campus, 0),
                                            rt.sets.own_prune_cap)
        try:
            removed = await rt.in_journal(rt.journal.prune, everywhere)
        except Exception:
            log.exception("journal prune failed; will retry")
            continue
        if removed:
            log.debug("pruned %d transactions from the journal", removed)
