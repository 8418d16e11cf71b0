"""Hybrid logical clock: the timestamp every replicated transaction carries.

A stamp packs wall-clock milliseconds (upper 48 bits) and a logical counter
(lower 16 bits) into one integer, so stamps compare as integers, stay close
to real time, and still order a transaction after everything its campus had
received when it was captured (``observe`` moves the clock past remote stamps).

A remote stamp further in the future than ``max_skew_ms`` is *not* adopted:
one campus with a wrong clock must not drag every other clock forward. The
caller records such a stamp in the conflict log as clock skew. Causality
never depends on the clock (transactions carry their dependency vector);
the clock only orders truly concurrent edits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

LOGICAL_BITS = 16
LOGICAL_MASK = (1 << LOGICAL_BITS) - 1


def pack(millis: int, logical: int = 0) -> int:
    return (millis << LOGICAL_BITS) | logical


def wall_millis(stamp: int) -> int:
    """The wall-clock part of a stamp, in Unix milliseconds."""
    return stamp >> LOGICAL_BITS


def stamp_seconds(stamp: int) -> float:
    return wall_millis(stamp) / 1000.0


class HybridClock:
    def __init__(self, max_skew_ms: int = 60_000,
                 wall: Callable[[], float] = time.time) -> None:
        self.max_skew_ms = max_skew_ms
        self._wall = wall
        self._last = 0
        self._lock = threading.Lock()

    def _now_millis(self) -> int:
        return int(self._wall() * 1000)

    def now(self) -> int:
        """A stamp greater than every stamp this clock issued or observed."""
        with self._lock:
            candidate = pack(self._now_millis())
            self._last = candidate if candidate > self._last else self._last + 1
            return self._last

    def observe(self, remote: int) -> bool:
        """Move past a received stamp. Returns False, without adopting it, when
        the stamp is beyond the skew bound (the caller flags it)."""
        with self._lock:
            if wall_millis(remote) - self._now_millis() > self.max_skew_ms:
                return False
            if remote > self._last:
                self._last = remote
            return True

    def skew_ms(self, remote: int) -> int:
        """How far ahead of this clock's wall time a stamp is (negative: behind)."""
        return wall_millis(remote) - self._now_millis()
