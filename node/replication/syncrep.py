"""Synchronous mode (durability = "sync", PostgreSQL): release commits once a
peer holds them, and degrade when no peer answers, as the policy says.

Every acknowledgement a sender receives carries the receiver's journal
vector (and what it knows of the others'). The highest seq of this campus
that any other campus holds durably is *acknowledged*; its capture position
(its commit's end LSN) goes to the engine, whose replication connection is
PostgreSQL's synchronous standby and reports nothing flushed beyond it
(node.engines.postgres.capture). So a commit returns to its application only once
another campus's journal holds it: RPO = 0 if this campus is lost.

With ``sync_policy = "degrade"``, when acknowledgements make no progress for
``degrade_after`` seconds while local transactions wait, commits stop
waiting (asynchronous) and an alert is raised (log and status) until a peer
has caught up with everything again. ``"strict"``: commits wait.
"""

from __future__ import annotations

import logging
import time

from node.runtime import NodeRuntime

log = logging.getLogger(__name__)

CHECK_SECONDS = 0.05


def acknowledged_seq(rt: NodeRuntime) -> int:
    """The highest of this campus's transactions that another campus holds."""
    return max((v.get(rt.campus, 0) for c, v in rt.known.items() if c != rt.campus), default=0)


def sync_alert(rt: NodeRuntime) -> str:
    """The degraded-sync alert line for status (empty while synchronous or async)."""
    if not rt.durability.startswith("sync DEGRADED"):
        return ""
    return ("SYNC DEGRADED: " + rt.durability.removeprefix("sync DEGRADED: ")
            + "; RPO > 0 until a peer catches up")


async def syncrep_loop(rt: NodeRuntime) -> None:
    db = rt.config.database
    if db.durability != "sync":
        rt.durability = "async"
        return
    rt.durability = "sync"
    acked, progress_at, released = -1, time.monotonic(), None
    while True:
        ticket = rt.acks_changed.ticket()
        now = time.monotonic()
        head = rt.journal.vector().get(rt.campus, 0)
        seen = acknowledged_seq(rt)
        if seen > acked or seen >= head:
            acked, progress_at = seen, now
        stalled = now - progress_at
        degraded = db.sync_policy == "degrade" and acked < head and stalled > db.degrade_after
        if degraded and not rt.durability.startswith("sync DEGRADED"):
            log.error("SYNC DEGRADED: no campus acknowledged this campus's transactions for "
                      "%.0fs (%d waiting); commits no longer wait for another campus (RPO > 0 "
                      "until a peer catches up)", stalled, head - acked)
        if not degraded and rt.durability != "sync":
            log.warning("synchronous mode restored: a peer holds every local transaction")
        rt.durability = (f"sync DEGRADED: no peer acknowledgement for {stalled:.0f}s, "
                         f"commits do not wait" if degraded else "sync")
        position = None if degraded else await rt.in_journal(rt.journal.acked_position, acked)
        if position != released or position is None:
            # sets two fields: no need for the engine thread
            rt.engine.source.sync_release(position)
            released = position
        await rt.acks_changed.wait(ticket, CHECK_SECONDS)
