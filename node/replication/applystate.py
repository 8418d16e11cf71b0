"""The applier's state machine: what to try next after each outcome.

Pure logic (no I/O, no clock of its own): node.replication.applier feeds it
every outcome and does what it says. The states:

* ``idle``: nothing to apply.
* ``batch``: applying up to ``MAX_REMOTE`` foreign transactions at once.
* ``isolating``: a batch failed; the window of foreign transactions halves
  after each failure (and doubles after each success) until the one that
  fails is alone. This campus's own transactions, whose versions are recorded
  first, are never part of the window: however many are pending, the
  failing foreign transaction is found in log2(batch) tries.
* ``retrying``: one foreign transaction fails alone; it is retried with
  exponential backoff and jitter, ``max_attempts`` times in all.
* ``change_by_change``: it still fails; it is applied change by change
  under savepoints and what still fails is parked in the dead-letter queue,
  so the stream moves on.
* ``waiting_capture``: a foreign change meets a row whose local change is
  not recorded yet; apply waits for capture to journal it.
* ``waiting_set_writer``: a single-writer set's change cannot be judged yet.

Transient failures (deadlock, lock timeout, lost connection...: see
node.replication.transient) are retried with jitter and never count
towards parking. Every wait and every retry has an alert threshold: past
it, ``alert`` says what apply waits for and since when (status, log).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

IDLE = "idle"
BATCH = "batch"
ISOLATING = "isolating"
RETRYING = "retrying"
CHANGE_BY_CHANGE = "change_by_change"
WAITING_CAPTURE = "waiting_capture"
WAITING_SET_WRITER = "waiting_set_writer"
STATES = (IDLE, BATCH, ISOLATING, RETRYING, CHANGE_BY_CHANGE, WAITING_CAPTURE,
          WAITING_SET_WRITER)

MAX_REMOTE = 2048
# Tries of a transaction that fails alone before its failing changes are
# dead-lettered: 0.2 + 0.4 + 0.8 + 1.6 s of backoff, a few seconds in all.
MAX_ATTEMPTS = 5
RETRY_MIN_SECONDS = 0.2
RETRY_MAX_SECONDS = 10.0
TRANSIENT_MIN_SECONDS = 0.02
TRANSIENT_MAX_SECONDS = 2.0
PENDING_WAIT_SECONDS = 0.05
SET_WAIT_SECONDS = 0.2
# A state other than idle/batch that lasts longer than this is an alert.
ALERT_AFTER_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class Next:
    """What the loop does before planning again."""

    delay: float               # seconds to wait (0: plan again at once)
    wake_on_journal: bool = False  # a journal change ends the wait early


@dataclass
class ApplyMachine:
    clock: Callable[[], float]
    jitter: Callable[[], float] = random.random  # in [0, 1)
    max_remote: int = MAX_REMOTE
    max_attempts: int = MAX_ATTEMPTS
    alert_after: float = ALERT_AFTER_SECONDS

    state: str = IDLE
    since: float = 0.0
    waiting_for: str = ""
    last_error: str = ""
    window: int = 0               # foreign transactions the next plan may take
    attempts: dict[tuple[str, int], int] = field(default_factory=dict)
    transient_retries: int = 0
    transient_streak: int = 0
    isolations: int = 0
    set_limit: int | None = None  # one plan: stop before a set change that waits

    def __post_init__(self) -> None:
        self.window = self.max_remote
        self.since = self.clock()

    # -- what the next plan may take --------------------------------------

    def remote_limit(self) -> int:
        """Foreign transactions the next plan may take (consumes a set limit)."""
        limit = self.window if self.set_limit is None else min(self.window, self.set_limit)
        self.set_limit = None
        return limit

    def isolate(self, head: tuple[str, int], remote: int) -> bool:
        """Apply this plan change by change (parking what fails)?"""
        return remote == 1 and self.attempts.get(head, 0) >= self.max_attempts

    # -- outcomes ---------------------------------------------------------

    def nothing_to_do(self) -> Next:
        self._enter(IDLE, "")
        return Next(0.5, wake_on_journal=True)

    def started(self, remote: int, head: tuple[str, int]) -> bool:
        """A plan with ``remote`` foreign transactions is being applied;
        return whether it goes change by change (``isolate``)."""
        if self.isolate(head, remote):
            self._enter(CHANGE_BY_CHANGE, f"{head[0]}/{head[1]}")
            return True
        if self.state not in (ISOLATING, RETRYING, WAITING_CAPTURE, WAITING_SET_WRITER):
            self._enter(BATCH, "")
        return False

    def succeeded(self, heads: list[tuple[str, int]]) -> Next:
        for head in heads:
            self.attempts.pop(head, None)
        self.window = min(self.max_remote, self.window * 2)
        self.transient_streak = 0
        self.last_error = ""
        self._enter(BATCH, "")
        return Next(0.0)

    def failed(self, error: str, transient: str | None, remote: int,
               head: tuple[str, int]) -> Next:
        """The plan (``remote`` foreign transactions, the first ``head``) failed."""
        self.last_error = error
        if transient is not None:
            self.transient_retries += 1
            self.transient_streak += 1
            self._enter(RETRYING, f"a transient error to clear ({transient})")
            top = min(TRANSIENT_MAX_SECONDS,
                      TRANSIENT_MIN_SECONDS * 2 ** min(self.transient_streak, 10))
            return Next(top * (0.5 + self.jitter() / 2))
        if remote > 1:
            if self.state != ISOLATING:
                self.isolations += 1
            self.window = max(1, remote // 2)
            self._enter(ISOLATING, f"the failing transaction among {remote}")
            return Next(0.0)
        if remote == 0:
            # Only this campus's own transactions (recording their versions):
            # nothing to park; retry with backoff and alert past the threshold.
            self.transient_streak += 1
            self._enter(RETRYING, "recording this campus's own versions")
            return Next(self._backoff(self.transient_streak))
        self.window = 1
        attempt = self.attempts[head] = self.attempts.get(head, 0) + 1
        self._enter(RETRYING, f"{head[0]}/{head[1]} (attempt {attempt} of "
                    f"{self.max_attempts})")
        # Past max_attempts the next try goes change by change; should even
        # that fail (outside the per-change savepoints), it backs off further.
        return Next(self._backoff(attempt))

    def pending_local(self, what: str) -> Next:
        self._enter(WAITING_CAPTURE, f"capture to journal a local change ({what})")
        return Next(PENDING_WAIT_SECONDS, wake_on_journal=True)

    def set_writer(self, index: int, what: str) -> Next:
        """A set change at plan position ``index`` must wait; those before it go."""
        if index > 0:
            self.set_limit = index
            return Next(0.0)
        self._enter(WAITING_SET_WRITER, what)
        return Next(SET_WAIT_SECONDS, wake_on_journal=True)

    # -- for status ---------------------------------------------------------

    def alert(self) -> str:
        """Set once a wait or retry has lasted past the threshold."""
        if self.state in (IDLE, BATCH):
            return ""
        age = self.clock() - self.since
        if age < self.alert_after:
            return ""
        text = f"apply {self.state.replace('_', ' ')} for {age:.0f}s"
        if self.waiting_for:
            text += f", waiting for {self.waiting_for}"
        if self.last_error:
            text += f"; last error: {self.last_error}"
        return text

    def _enter(self, state: str, waiting_for: str) -> None:
        """``since`` is when the current state began; the stuck states share
        one clock (moving between them is no progress)."""
        if state != self.state and not (_stuck(state) and _stuck(self.state)):
            self.since = self.clock()
        self.state, self.waiting_for = state, waiting_for

    @staticmethod
    def _backoff(attempt: int) -> float:
        return min(RETRY_MAX_SECONDS, RETRY_MIN_SECONDS * 2 ** max(0, attempt - 1))


def _stuck(state: str) -> bool:
    """States in which apply makes no progress: one clock covers them all."""
    return state in (ISOLATING, RETRYING, CHANGE_BY_CHANGE, WAITING_CAPTURE, WAITING_SET_WRITER)
