"""The node's replication state: what the loops know and count, in memory.

One ``ReplicationState`` per node. Each field has one writer (named below)
and any number of readers (status, the console through status, the DR
agent): the applied vector and the applier's books (node.replication.applier),
what is known of every campus's journal and the outbound links
(node.replication.sender), capture's progress (node.replication.capture),
join progress (node.replication.join), refusals (node.replication.receiver
through node.servicers) and the durability mode (node.replication.syncrep).
Nothing here touches the engine or the journal: methods that need the
journal's vector take it as an argument.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from node.replication.applystate import ApplyMachine
from node.replication.framecheck import Refusals
from node.replication.vectors import Vector, merge_max

# A foreign transaction whose final frame has not arrived after this long is an alert.
INCOMPLETE_ALERT_SECONDS = 30.0


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


class ReplicationState:
    """Vectors, links, counters, errors and the applier's machine of one campus."""

    def __init__(self, campus: str, ring: Sequence[str]) -> None:
        self.campus = campus
        self.ring = tuple(ring)
        self.started_at = time.time()
        # The applier: the foreign transactions the database holds (and, for
        # this campus, how far its own versions are recorded), its state
        # machine, the foreign transactions whose final frame has not
        # arrived ((origin, seq) -> when their first frame was journaled,
        # Unix s), and its counters.
        self.applied: Vector = {}
        self.apply_machine = ApplyMachine(clock=time.time)
        self.incomplete: dict[tuple[str, int], float] = {}
        self.apply_error = ""
        self.applied_txns = 0
        self.conflicts_logged = 0
        self.pending_waits = 0
        self.dead_lettered = 0
        # The sender: what every campus's journal is known to hold, the links.
        self.known: dict[str, Vector] = {}
        self.links: dict[str, LinkState] = {}
        # Capture: it has journaled every local transaction at or before this
        # engine position (a donor waits for it to date its snapshot).
        self.journaled_through = 0
        self.captured_txns = 0
        self.database_error = ""
        # The joiner: its progress; set once the journal is initialized.
        self.join = JoinProgress()
        self.initialized = asyncio.Event()
        # Frames and messages refused from peers (node.replication.framecheck).
        self.refused = Refusals()
        # Synchronous mode: "async", "sync", or "sync DEGRADED: ..."
        self.durability = "async"

    def learn(self, campus: str, journal_vector: Vector) -> None:
        """Record what a campus is known to hold (vectors only grow)."""
        if campus in self.ring:
            self.known[campus] = merge_max(self.known.get(campus, {}), journal_vector)

    def applied_vector(self, journal_vector: Vector) -> Vector:
        """What this campus's database holds: applied foreign txns plus its own
        (``journal_vector``: this campus's journal's)."""
        out = dict(self.applied)
        out[self.campus] = journal_vector.get(self.campus, 0)
        return out

    def known_snapshot(self, journal_vector: Vector) -> dict[str, Vector]:
        """A copy of what every campus is known to hold, this one's own journal
        (``journal_vector``) included."""
        self.known[self.campus] = journal_vector
        return {c: dict(v) for c, v in self.known.items()}

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
