"""Pruner: drop journal frames once every campus is known to hold them.

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


async def prune_loop(rt: NodeRuntime) -> None:
    ring = rt.config.cluster.ring
    while True:
        await asyncio.sleep(PRUNE_INTERVAL_SECONDS)
        known = rt.known_snapshot()
        if any(campus not in known for campus in ring):
            continue
        # Never drop what this campus has not applied yet (nor its own
        # transactions whose row versions are not recorded yet).
        local = rt.applied_vector()
        local[rt.campus] = min(local.get(rt.campus, 0), rt.applied.get(rt.campus, 0))
        everywhere = meet([*(known[c] for c in ring), local], rt.journal.vector())
        try:
            removed = await rt.in_journal(rt.journal.prune, everywhere)
        except Exception:
            log.exception("journal prune failed; will retry")
            continue
        if removed:
            log.debug("pruned %d transactions from the journal", removed)
