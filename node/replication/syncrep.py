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
from typing import Protocol

from node.replication.resources import NodeResources
from node.replication.state import ReplicationState
from ringsync.config import DatabaseConfig, NodeConfig

log = logging.getLogger(__name__)

CHECK_SECONDS = 0.05


class HasDurability(Protocol):
    """Anything that says the durability mode (the state, or the node's runtime)."""

    @property
    def durability(self) -> str: ...


def acknowledged_seq(state: ReplicationState) -> int:
    """The highest of this campus's transactions that another campus holds."""
    return max((v.get(state.campus, 0) for c, v in state.known.items() if c != state.campus),
               default=0)


def sync_alert(node: HasDurability) -> str:
    """The degraded-sync alert line for status (empty while synchronous or async)."""
    if not node.durability.startswith("sync DEGRADED"):
        return ""
    return ("SYNC DEGRADED: " + node.durability.removeprefix("sync DEGRADED: ")
            + "; RPO > 0 until a peer catches up")


class SyncRelease:
    """Synchronous mode's rounds: what the engine may release, and whether
    the campus runs degraded. ``step(now)`` is one round (the loop's clock is
    passed in)."""

    def __init__(self, db: DatabaseConfig, res: NodeResources, state: ReplicationState,
                 now: float) -> None:
        self.db, self.res, self.state = db, res, state
        self.acked = -1             # the highest own seq another campus holds, as last seen
        self.progress_at = now      # when that last moved (or caught up)
        self.released: int | None = None  # the capture position last handed to the engine

    async def step(self, now: float) -> None:
        db, res, state = self.db, self.res, self.state
        head = res.journal.vector().get(state.campus, 0)
        seen = acknowledged_seq(state)
        if seen > self.acked or seen >= head:
            self.acked, self.progress_at = seen, now
        stalled = now - self.progress_at
        degraded = (db.sync_policy == "degrade" and self.acked < head
                    and stalled > db.degrade_after)
        if degraded and not state.durability.startswith("sync DEGRADED"):
            log.error("SYNC DEGRADED: no campus acknowledged this campus's transactions for "
                      "%.0fs (%d waiting); commits no longer wait for another campus (RPO > 0 "
                      "until a peer catches up)", stalled, head - self.acked)
        if not degraded and state.durability != "sync":
            log.warning("synchronous mode restored: a peer holds every local transaction")
        state.durability = (f"sync DEGRADED: no peer acknowledgement for {stalled:.0f}s, "
                            f"commits do not wait" if degraded else "sync")
        position = None if degraded else await res.in_journal(res.journal.acked_position,
                                                              self.acked)
        if position != self.released or position is None:
            # sets two fields: no need for the engine thread
            res.engine.source.sync_release(position)
            self.released = position


async def syncrep_loop(config: NodeConfig, res: NodeResources, state: ReplicationState) -> None:
    """Release waiting commits as peers acknowledge them; degrade per the policy."""
    db = config.database
    if db.durability != "sync":
        state.durability = "async"
        return
    state.durability = "sync"
    release = SyncRelease(db, res, state, time.monotonic())
    while True:
        ticket = res.acks_changed.ticket()
        await release.step(time.monotonic())
        await res.acks_changed.wait(ticket, CHECK_SECONDS)
