"""What every part of a drill shares: its log line and its bounded waits."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from ringsync.errors import RingsyncError


def say(msg: str) -> None:
    print(f"[drill] {msg}", file=sys.stderr, flush=True)


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise RingsyncError(f"drill: {what} did not happen within {timeout:.0f}s")
        time.sleep(0.1)
    return time.monotonic() - started
