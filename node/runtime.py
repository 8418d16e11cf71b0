"""The node's shared state and worker threads, used by every loop.

NodeRuntime owns the engine and the journal, runs each on its own single
worker thread (both are blocking SQLite/psycopg code), and keeps the
in-memory view the loops share: the applied vector, what is known of every
campus's journal, link states, and counters. The loops themselves live in
node.replication.*; status assembly lives in node.status.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from node.conflicts.driver import Resolver
from node.dr.sets import SetGuard
from node.engines.base import Engine
from node.hlc import HybridClock
from node.replication.applystate import ApplyMachine
from node.replication.framecheck import Refusals
from node.replication.journal import Journal
from node.replication.vectors import Vector, merge_max
from ringsync.config import NodeConfig

log = logging.getLogger(__name__)
T = TypeVar("T")

# A foreign transaction whose final frame has not arrived after this long is an alert.
INCOMPLETE_ALERT_SECONDS = 30.0


class Notifier:
    """Wakes every waiter when something changed.

    Take ``ticket()`` before checking for work, then ``wait(ticket)``: a
    change between the check and the wait is never missed.
    """

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    def ticket(self) -> asyncio.Event:
        return self._event

    async def wait(self, ticket: asyncio.Event, timeout: float) -> None:
        try:
            await asyncio.wait_for(ticket.wait(), timeout)
        except TimeoutError:
            pass


class RateMeter:
    """Events per second over a sliding window of about two seconds."""

    def __init__(self, window: float = 2.0) -> None:
        self.window = window
        self._samples: list[tuple[float, int]] = []

    def add(self, n: int) -> None:
        now = time.monotonic()
        self._samples.append((now, n))
        self._trim(now)

    def _trim(self, now: float) -> None:
        cutoff = now - self.window
        while self._samples and self._samples[0][0] < cutoff:
            self._samples.pop(0)

    def rate(self) -> float:
        now = time.monotonic()
        self._trim(now)
        return sum(n for _, n in self._samples) / self.window


@dataclass
class LinkState:
    """What the sender knows of one outbound link."""

    to: str
    successor: bool
    state: str = "idle"
    error: str = ""
    down_since: float | None = None
    peer_journal: Vector = field(default_factory=dict)
    peer_applied: Vector = field(default_factory=dict)
    txns: RateMeter = field(default_factory=RateMeter)
    rows: RateMeter = field(default_factory=RateMeter)
    last_ack: float = 0.0


@dataclass
class JoinProgress:
    """Where this campus is in joining the ring, for status and the console."""

    state: str = "waiting"  # waiting | comparing | copying | in-ring
    donor: str = ""
    table: str = ""
    rows_copied: int = 0
    rows_total: int = 0
    detail: str = ""
    copy_started: float = 0.0  # time.monotonic() when the copy began
    rows: RateMeter = field(default_factory=lambda: RateMeter(window=5.0))

    def rate(self) -> float:
        """Rows per second: over the last few seconds, or since the start if sooner."""
        elapsed = time.monotonic() - self.copy_started
        if elapsed < self.rows.window:
            return self.rows_copied / elapsed if elapsed > 0 else 0.0
        return self.rows.rate()


class NodeRuntime:
    resolver: Resolver  # set once the engine is open and knows its tables

    def __init__(self, config: NodeConfig, engine: Engine, journal: Journal) -> None:
        self.config = config
        self.campus = config.campus
        self.engine = engine
        self.journal = journal
        self._engine_exec = ThreadPoolExecutor(1, thread_name_prefix=f"engine-{self.campus}")
        self._journal_exec = ThreadPoolExecutor(1, thread_name_prefix=f"journal-{self.campus}")
        self._capture_exec = ThreadPoolExecutor(1, thread_name_prefix=f"capture-{self.campus}")
        # DR fence writes (node.dr.agent): never queued behind apply or a waiting commit
        self._fence_exec = ThreadPoolExecutor(1, thread_name_prefix=f"fence-{self.campus}")
        self.journal_changed = Notifier()
        self.applied_changed = Notifier()
        self.acks_changed = Notifier()  # a peer acknowledged (node.replication.syncrep)
        self.durability = "async"  # or "sync", "sync DEGRADED: ..."
        self.applied: Vector = {}
        self.known: dict[str, Vector] = {}
        self.links: dict[str, LinkState] = {}
        self.captured_txns = 0
        self.applied_txns = 0
        self.database_error = ""
        self.apply_error = ""
        self.started_at = time.time()
        self.join = JoinProgress()
        self.initialized = asyncio.Event()
        # Capture has journaled every local transaction at or before this
        # engine position (a donor waits for it to date its snapshot).
        self.journaled_through = 0
        self.clock = HybridClock(config.cluster.conflicts.max_clock_skew_ms)
        self.conflicts_logged = 0
        self.pending_waits = 0
        self.dead_lettered = 0
        # The applier's state machine (node.replication.applystate), for status.
        self.apply_machine = ApplyMachine(clock=time.time)
        # Foreign transactions whose final frame has not arrived: (origin, seq)
        # -> when their first frame was journaled (Unix s).
        self.incomplete: dict[tuple[str, int], float] = {}
        # Single-writer sets: epochs, verdicts, stale tails (the DR agent keeps it).
        self.sets = SetGuard(config.cluster.sets, config.campus)
        # Frames and messages refused from peers (node.replication.framecheck).
        self.refused = Refusals()

    async def in_engine(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._engine_exec, fn, *args)

    async def in_capture(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._capture_exec, fn, *args)

    async def in_fence(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._fence_exec, fn, *args)

    async def in_journal(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._journal_exec, fn, *args)

    def incomplete_alert(self) -> str:
        """An alert when a foreign transaction has stayed incomplete too long."""
        if not self.incomplete:
            return ""
        (origin, seq), since = min(self.incomplete.items(), key=lambda kv: kv[1])
        age = time.time() - since
        if age < INCOMPLETE_ALERT_SECONDS:
            return ""
        return (f"transaction {origin}/{seq} incomplete for {age:.0f}s (its first frames "
                f"arrived, its final one did not); {origin}'s later transactions wait behind it")

    def learn(self, campus: str, journal_vector: Vector) -> None:
        """Record what a campus is known to hold (vectors only grow)."""
        if campus in self.config.cluster.ring:
            self.known[campus] = merge_max(self.known.get(campus, {}), journal_vector)

    def applied_vector(self) -> Vector:
        """What this campus's database holds: applied foreign txns plus its own."""
        out = dict(self.applied)
        out[self.campus] = self.journal.vector().get(self.campus, 0)
        return out

    def known_snapshot(self) -> dict[str, Vector]:
        self.known[self.campus] = self.journal.vector()
        return {c: dict(v) for c, v in self.known.items()}

    def shutdown_threads(self) -> None:
        self._engine_exec.shutdown(wait=True, cancel_futures=True)
        self._journal_exec.shutdown(wait=True, cancel_futures=True)
        self._capture_exec.shutdown(wait=True, cancel_futures=True)
        self._fence_exec.shutdown(wait=True, cancel_futures=True)
