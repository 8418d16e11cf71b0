"""The bounded queue between a log reader thread and capture.

A reader (the pgoutput reader, node.engines.postgres.capture; the binlog
reader, node.engines.mariadb.binlog) puts decoded chunks; the capture loop
takes them for the journal. It is bounded by the row changes the
chunks hold, not by chunks: a stream of one-row transactions is handed over
thousands per journal commit, while a bulk transaction's chunks stay within
bounds.
"""

from __future__ import annotations

import threading
from collections import deque

from node.model import CapturedChunk


class ChunkQueue:
    """Decoded chunks between the reader thread and capture, bounded by the
    row changes they hold."""

    def __init__(self, max_changes: int) -> None:
        self.max_changes = max_changes
        self._items: deque[CapturedChunk] = deque()
        self._changes = 0
        self._cond = threading.Condition()

    @staticmethod
    def _weight(item: CapturedChunk) -> int:
        return item.rows

    def put(self, item: CapturedChunk, timeout: float) -> bool:
        """Queue ``item``, waiting while the queue is full; False on timeout."""
        with self._cond:
            if not self._cond.wait_for(
                    lambda: not self._items or self._changes < self.max_changes, timeout):
                return False
            self._items.append(item)
            self._changes += self._weight(item)
            self._cond.notify_all()
            return True

    def take(self, timeout: float, max_changes: int) -> list[CapturedChunk]:
        """What is queued, up to about ``max_changes``; waits up to ``timeout`` for one."""
        with self._cond:
            if not self._cond.wait_for(lambda: bool(self._items), timeout):
                return []
            out: list[CapturedChunk] = []
            taken = 0
            while self._items and (not out or taken < max_changes):
                item = self._items.popleft()
                out.append(item)
                taken += self._weight(item)
            self._changes -= taken
            self._cond.notify_all()
            return out

    def empty(self) -> bool:
        with self._cond:
            return not self._items
