"""Telling a local change capture has not journaled yet from a change made
outside replication (the applier's way out of ``waiting_capture``).

A foreign change that meets a row whose state its recorded versions do not
explain waits for capture: usually a local transaction committed moments
ago, which capture journals and apply records, and the row stops being
pending. But a row changed where capture never looks (a DBA's fix under
the replication origin or with replication off, a restored backup) stays
pending for ever, and apply of that row would wait for ever.

OutsideWatch ends that wait without guessing: when a wait begins it takes
the database's commit position (every local transaction committed so far is
at or before it); once capture has passed that position and every local
transaction the journal holds has been recorded by apply, continuously for
GRACE_SECONDS (capture hands a chunk over before the journal holds it), the
applier takes the commit position again and checks that capture has passed
that one too (``confirm``): then no local transaction committed before the
wait's last try is still unreported, and a row still pending was changed
outside replication. (If capture has not passed it, local writes go on: the
watch starts again from the new position.) The next try takes such rows as
they stand, as rows with no history (Resolver.adopt_outside), logs each
one, and counts it (status: apply.outside_changes). The commit position is
read once when a wait begins and once per grace period, not on every try.
"""

from __future__ import annotations

import time
from collections.abc import Callable

GRACE_SECONDS = 2.0


class OutsideWatch:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.mark: int | None = None        # commit position when the wait began
        self.caught_up_since: float | None = None

    def began(self, commit_position: int) -> None:
        self.mark, self.caught_up_since = commit_position, None

    @property
    def waiting(self) -> bool:
        return self.mark is not None

    def outside(self, captured_through: int, own_recorded: int, own_journaled: int) -> bool:
        """Has capture shown that the pending rows were changed outside replication?"""
        if self.mark is None:
            return False
        if captured_through < self.mark or own_recorded < own_journaled:
            self.caught_up_since = None
            return False
        now = self.clock()
        if self.caught_up_since is None:
            self.caught_up_since = now
        return now - self.caught_up_since >= GRACE_SECONDS

    def confirm(self, captured_through: int, commit_position: int, own_recorded: int,
                own_journaled: int) -> bool:
        """After ``outside``: does capture also cover the commit position read
        now? If not, the watch starts again from it."""
        if captured_through >= commit_position and own_recorded >= own_journaled:
            return True
        self.began(commit_position)
        return False

    def ended(self) -> None:
        self.mark, self.caught_up_since = None, None
