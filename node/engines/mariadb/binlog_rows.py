"""Row events of the binary log into changes: the binlog reader's per-row half.

node.engines.mariadb.binlog walks the log's events and transactions; what a
row event of a replicated table becomes is decided here. A row is decoded
into its canonical tuple by the engine's ``RowDecoder``
(node.engines.mariadb.values). With a ``LenientDecoder`` as well, a change
whose new image holds a value that cannot travel (a zero date, an integer
beyond 64 bits) is *rejected*: not sent, kept in ``rejected`` for the
dead-letter queue (node.engines.mariadb.source) with the row as far as it
converts, and capture goes on; without one, the error stops capture.

Two more kinds of row event carry bookkeeping, not data: the stamp tables'
(node.engines.mariadb.stamps: a local transaction's highest stamp is its
chunks' xid) and the applied table's (what apply had applied of each other
campus: the dependency vector).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pymysqlreplication.row_event import DeleteRowsEvent, WriteRowsEvent

from node.engines.mariadb.values import BadValue
from node.model import Change, Op

log = logging.getLogger(__name__)

# A row as python-mysql-replication decoded it -> canonical tuple:
# decode(table, values, none_sources).
RowDecoder = Callable[[str, dict[str, Any], dict[str, str]], tuple[Any, ...]]
# (table, values, none sources) -> (the row with values that cannot travel as
# None, why each could not); see values.RowReader.from_binlog_lenient
LenientDecoder = Callable[[str, dict[str, Any], dict[str, str]],
                          tuple[tuple[Any, ...], list[Any]]]


@dataclass(frozen=True)
class Rejected:
    """A change of this campus that capture could not convert (a zero date, an
    integer beyond 64 bits): not sent, kept for the dead-letter queue
    (node.engines.mariadb.source) with the row as far as it converts."""

    change: Change
    error: str
    at: str  # where in the binary log


class RowEvents:
    """Decodes one campus's row events; keeps the changes it rejected."""

    def __init__(self, decode: RowDecoder, decode_lenient: LenientDecoder | None = None) -> None:
        self.decode = decode
        self.decode_lenient = decode_lenient
        self.rejected: list[Rejected] = []
        self._rejected_lock = threading.Lock()

    def changes(self, event: Any, at: str = "") -> list[Change]:
        """The changes of a row event of a replicated table (``at``: where in the log)."""
        table, decode = event.table, self.decode
        if self.decode_lenient is not None:
            return [c for row in event.rows
                    if (c := self._change_or_reject(event, row, at)) is not None]
        if isinstance(event, WriteRowsEvent):
            return [Change(table, Op.INSERT,
                           new=decode(table, row["values"], row["none_sources"]))
                    for row in event.rows]
        if isinstance(event, DeleteRowsEvent):
            return [Change(table, Op.DELETE,
                           old=decode(table, row["values"], row["none_sources"]))
                    for row in event.rows]
        return [Change(table, Op.UPDATE,
                       new=decode(table, row["after_values"], row["after_none_sources"]),
                       old=decode(table, row["before_values"], row["before_none_sources"]))
                for row in event.rows]

    def _change_or_reject(self, event: Any, row: dict[str, Any], at: str) -> Change | None:
        """One row's change. An image to be written elsewhere (INSERT, UPDATE's
        new image) that cannot be converted rejects the change; an old image
        that cannot only locates the row, so its unconvertible values go as
        None (an UPDATE correcting a zero date still travels)."""
        table = event.table
        if isinstance(event, WriteRowsEvent):
            new, bad = self._image(table, row["values"], row["none_sources"])
            change = Change(table, Op.INSERT, new=new)
        elif isinstance(event, DeleteRowsEvent):
            old, _ = self._image(table, row["values"], row["none_sources"])
            return Change(table, Op.DELETE, old=old)
        else:
            new, bad = self._image(table, row["after_values"], row["after_none_sources"])
            old, _ = self._image(table, row["before_values"], row["before_none_sources"])
            change = Change(table, Op.UPDATE, new=new, old=old)
        if not bad:
            return change
        error = "; ".join(str(b) for b in bad)
        log.error("capture could not convert a change of %s at %s, so it was not sent and is "
                  "kept in the dead-letter queue: %s", table, at, error)
        with self._rejected_lock:
            self.rejected.append(Rejected(change, error, at))
        return None

    def _image(self, table: str, values: dict[str, Any], none_sources: dict[str, str],
               ) -> tuple[tuple[Any, ...], list[Any]]:
        """A row image, and why values of it cannot travel: decoded as usual, and
        only when that refuses a value again leniently (``decode_lenient``)."""
        assert self.decode_lenient is not None
        try:
            return self.decode(table, values, none_sources), []
        except BadValue:
            return self.decode_lenient(table, values, none_sources)

    def take_rejected(self) -> list[Rejected]:
        with self._rejected_lock:
            out, self.rejected = self.rejected, []
        return out

    def keep_rejected(self, rejected: list[Rejected]) -> None:
        """Put back rejections that could not be stored yet, ahead of newer ones."""
        with self._rejected_lock:
            self.rejected[:0] = rejected

    @staticmethod
    def highest_stamp(event: Any) -> int:
        """The highest stamp a stamp table's row event sets."""
        stamps = [(row.get("after_values") or row.get("values") or {}).get("stamp")
                  for row in event.rows]
        return max((s for s in stamps if isinstance(s, int)), default=0)

    @staticmethod
    def applied(event: Any) -> Iterator[tuple[str, int]]:
        """(origin, seq) of each row an applied-table row event writes."""
        for row in event.rows:
            values = row.get("after_values") or row.get("values") or {}
            origin, seq = values.get("origin"), values.get("seq")
            if isinstance(origin, str) and isinstance(seq, int):
                yield origin, seq
