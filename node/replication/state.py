"""The node's replication state: what the loops know and count, in memory.

One ``ReplicationState`` per node. Each field has one writer (named below)
and any number of readers (status, the console through status, the DR
agent): the applied vector and the applier's books (node.replication.applier),
what is known of every campus's journal and the outbound links
(node.replication.sender), the signs that a campus is back (the receiver
and the sender's probe), capture's progress (node.replication.capture),
join progress (node.replication.join), refusals (node.replication.receiver
through node.servicers) and the durability mode (node.replication.syncrep).
``Redial`` is the sender's own bookkeeping of when to dial again. Nothing
here touches the engine or the journal: methods that need the journal's
vector take it as an argument.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from node.leaf.state import LeafLink
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
class PeerReturn:
    """The signs that a campus is back (its Hello reached this node, or the
    sender's probe found it serving): how many so far, and the latest."""

    count: int = 0
    sign: str = ""


class Redial:
    """When the sender dials again after a failed attempt: its backoff, and
    the signs of a campus's return (``PeerReturn``) that cut the wait short.

    Pure bookkeeping (no clock, no I/O); node.replication.sender does the
    waiting. The backoff doubles with each failed attempt up to ``maximum``
    and is back at ``minimum`` after a good stream or a wake. A sign wakes
    the sender once: ``attempt`` spends the signs seen before an attempt
    starts, ``wake_for`` the one it returns. A campus that gives signs but
    fails the stream at once (before it acknowledged anything) cannot make
    the sender spin: after such a woken attempt, waking is disarmed until a
    wait has run its course, and later wakes no longer reset the backoff
    (it keeps growing) until a stream takes hold; so at most one extra
    attempt per wait.
    """

    def __init__(self, minimum: float, maximum: float,
                 jitter: Callable[[], float] = random.random) -> None:
        self.minimum, self.maximum, self._jitter = minimum, maximum, jitter
        self.backoff = minimum
        self.armed = True
        self._seen: dict[str, int] = {}
        self._woken = False
        self._wake_failed = False  # a woken attempt failed at once since the last good stream

    def attempt(self, returns: Mapping[str, PeerReturn]) -> None:
        """An attempt starts: the signs seen so far are spent."""
        self._seen = {campus: back.count for campus, back in returns.items()}

    def streamed(self) -> None:
        """The stream ended well (the sender left it for another campus)."""
        self.backoff, self.armed, self._woken, self._wake_failed = self.minimum, True, False, False

    def failed(self, took_hold: bool) -> float:
        """The attempt failed (``took_hold``: after the campus acknowledged
        something): how long to wait before the next one."""
        delay = self.backoff * (0.5 + self._jitter())
        self.backoff = min(self.backoff * 2, self.maximum)
        if took_hold:
            self._wake_failed = False
        elif self._woken:
            self.armed, self._wake_failed = False, True
        self._woken = False
        return delay

    def ran_out(self) -> None:
        """A wait ended on its own: signs wake the sender again."""
        self.armed = True

    def wake_for(self, returns: Mapping[str, PeerReturn],
                 wanted: Sequence[str]) -> tuple[str, str] | None:
        """The first of ``wanted`` (ring order) with a sign not yet spent, and
        the sign; None when there is none or waking is disarmed."""
        if not self.armed:
            return None
        for campus in wanted:
            back = returns.get(campus)
            if back is not None and back.count > self._seen.get(campus, 0):
                self._seen[campus] = back.count
                self._woken = True
                if not self._wake_failed:
                    self.backoff = self.minimum
                return campus, back.sign
        return None


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

    def __init__(self, campus: str, ring: Sequence[str], leaves: Sequence[str] = ()) -> None:
        self.campus = campus
        self.ring = tuple(ring)
        # Every origin the ring carries: its members and its leaves (node.leaf).
        self.origins = self.ring + tuple(leaves)
        # On a parent, the leaves following it (or that did); on a leaf, its link up.
        self.leaves: dict[str, LeafLink] = {}
        self.started_at = time.time()
        # The applier: the foreign transactions the database holds (and, for
        # this campus, how far its own versions are recorded), its state
        # machine, the foreign transactions whose final frame has not
        # arrived ((origin, seq) -> when their first frame was journaled,
        # Unix s), and its counters.
        self.applied: Vector = {}
        # Set by a leaf's re-seed: the applier reads the applied vector again.
        self.restart_apply = False
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
        # Campus -> its signs of return; written by the receiver (a Hello) and
        # the sender's probe, read by the sender to redial without waiting
        # out its backoff (node.replication.sender.Redial).
        self.returns: dict[str, PeerReturn] = {}
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
        if campus in self.origins:
            self.known[campus] = merge_max(self.known.get(campus, {}), journal_vector)

    def peer_back(self, campus: str, sign: str) -> None:
        """Record a sign that ``campus`` is back (``sign`` says which, for the log)."""
        if campus in self.ring and campus != self.campus:
            back = self.returns.setdefault(campus, PeerReturn())
            back.count += 1
            back.sign = sign

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
