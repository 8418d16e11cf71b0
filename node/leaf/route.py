"""A leaf's route applied to a parent's frames: which tables, which rows.

The parent runs every frame it sends a leaf through ``LeafRoute.frame``:

* a frame of tables outside the route becomes an empty frame with the same
  origin, sequence, chunk and stamps, so the leaf's journal stays gapless
  per origin and its applied vector moves on;
* a route that takes its tables whole passes the frame's bytes through
  untouched (no decoding: ``passes_whole``);
* a filtered table's changes go through ``ringsync.rowfilter.transition``,
  as PostgreSQL 15's row filters treat an UPDATE: a row moving into the
  subset arrives whole as an INSERT, one moving out is a DELETE, one outside
  before and after is not sent. Both images are judged at one moment per
  batch (``now``).

A row the filter cannot judge (a value of the wrong kind for the
expression) is not sent; it is counted and its error kept
(``RouteCounters``), shown in the parent's status as an alert, and the rest
of the frame flows on.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from node.codec import build_frame, decode_changes
from node.model import Change, Op, TableShape
from ringsync.leaves import LeafSettings
from ringsync.rowfilter import RowFilter, RowFilterError, transition
from ringsync.v1 import values_pb2 as pb


@dataclass
class RouteCounters:
    """What a route did with the rows it was given, for status."""

    rows_sent: int = 0
    rows_filtered: int = 0   # outside the subset before and after: not sent
    rows_moved_in: int = 0   # UPDATEs sent as INSERTs
    rows_moved_out: int = 0  # UPDATEs sent as DELETEs
    unjudged: int = 0        # the filter could not judge them: not sent, alerted
    last_unjudged: str = ""


class LeafRoute:
    """One leaf's route, compiled against the parent's tables."""

    def __init__(self, leaf: LeafSettings, shapes: Mapping[str, TableShape]) -> None:
        self.leaf = leaf
        self.tables = frozenset(leaf.tables)
        self.filters: dict[str, RowFilter] = leaf.compile_filters(
            {t: shapes[t].columns for t in leaf.filters})
        self.passes_whole = not self.filters and self.tables >= frozenset(shapes)
        self.counters = RouteCounters()

    def frame(self, frame: pb.TxnFrame, now: dt.datetime) -> pb.TxnFrame:
        """The leaf's copy of ``frame``: only its tables, only its rows."""
        names = {t.name for t in frame.tables}
        if names <= self.tables and not (names & self.filters.keys()):
            self.counters.rows_sent += len(frame.changes) + sum(r.rows for r in frame.raw_inserts)
            return frame
        if not names & self.tables:
            return self._empty(frame)
        shapes, changes = decode_changes(frame)
        by_name = {s.name: s for s in shapes}
        kept = [c for c in (self._change(ch, by_name[ch.table], now) for ch in changes
                            if ch.table in self.tables) if c is not None]
        self.counters.rows_sent += len(kept)
        out = build_frame(frame.origin, frame.seq, frame.chunk, frame.final, frame.commit_time,
                          kept, by_name, frame.hlc, dict(frame.deps))
        out.set_epochs.update(frame.set_epochs)
        return out

    def _change(self, change: Change, shape: TableShape, now: dt.datetime) -> Change | None:
        rule = self.filters.get(change.table)
        if rule is None:
            return change
        columns = shape.columns
        old = dict(zip(columns, change.old, strict=True)) if change.old is not None else None
        new = dict(zip(columns, change.new, strict=True)) if change.new is not None else None
        try:
            becomes = transition(rule, old, new, now)
        except RowFilterError as e:
            self.counters.unjudged += 1
            self.counters.last_unjudged = str(e)
            return None
        if becomes is None:
            self.counters.rows_filtered += 1
            return None
        if becomes == "insert" and change.op is Op.UPDATE:
            self.counters.rows_moved_in += 1
            return Change(change.table, Op.INSERT, new=change.new)
        if becomes == "delete" and change.op is Op.UPDATE:
            self.counters.rows_moved_out += 1
            return Change(change.table, Op.DELETE, old=change.old)
        return change

    def select(self, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]],
               now: dt.datetime) -> list[tuple[Any, ...]]:
        """The rows of ``table`` in the subset (an initial load's batch); a row
        the filter cannot judge is left out and counted, as in ``frame``."""
        rule = self.filters.get(table)
        if rule is None:
            return rows
        kept = []
        for row in rows:
            try:
                if rule.select([dict(zip(columns, row, strict=True))], now)[0]:
                    kept.append(row)
            except RowFilterError as e:
                self.counters.unjudged += 1
                self.counters.last_unjudged = str(e)
        return kept

    @staticmethod
    def _empty(frame: pb.TxnFrame) -> pb.TxnFrame:
        out = pb.TxnFrame(origin=frame.origin, seq=frame.seq, chunk=frame.chunk,
                          final=frame.final, commit_time=frame.commit_time, hlc=frame.hlc,
                          deps=dict(frame.deps))
        out.set_epochs.update(frame.set_epochs)
        return out
