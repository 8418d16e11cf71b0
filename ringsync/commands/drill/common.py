"""What every part of a drill shares: its log line and its bounded waits."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from ringsync.errors import RingsyncError

# How long a drill lets the ring run steadily between moves, and how long a
# campus's users (or the set's writer) may take to write again after one.
STEADY_SECONDS = 2.0
RECOVERY_TIMEOUT_SECONDS = 90.0


def say(msg: str) -> None:
    print(f"[drill] {msg}", file=sys.stderr, flush=True)


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise RingsyncError(f"drill: {what} did not happen within {timeout:.0f}s")
        time.sleep(0.1)
    return time.monotonic() - started
