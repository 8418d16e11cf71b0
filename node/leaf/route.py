"""A leaf's route applied to a parent's frames: which tables, rows and columns, masked how.

The parent runs every frame it sends a leaf through ``LeafRoute.frame``, and
every row of a leaf's initial load through ``LeafRoute.initial_rows``:

* a frame of tables outside the route becomes an empty frame with the same
  origin, sequence, chunk and stamps, so the leaf's journal stays gapless
  per origin and its applied vector moves on;
* a route that takes its tables whole passes the frame's bytes through
  untouched (no decoding: ``passes_whole``);
* a filtered table's changes go through ``ringsync.rowfilter.transition``,
  as PostgreSQL 15's row filters treat an UPDATE: a row moving into the
  subset arrives whole as an INSERT, one moving out is a DELETE, one outside
  before and after is not sent. Both images are judged at one moment per
  batch (``now``), on the real row;
* then a masked table's images are masked (``ringsync.masking.RowMasker``:
  keyed pseudonyms keep keys joining across tables and repeated loads) and
  a projected table's are cut to its route's columns. This happens here, at
  the parent, before anything is serialized for the leaf: no real value of
  a masked column ever leaves the parent.

A row the filter cannot judge, or a value a mask cannot be applied to, is
not sent; it is counted and its error kept (``RouteCounters``), shown in the
parent's status as an alert, and the rest of the frame flows on.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from node.codec import build_frame, decode_changes
from node.model import Change, Op, TableShape
from ringsync.errors import ConfigError
from ringsync.leaves import LeafSettings
from ringsync.masking import Masker, MaskingError, RowMasker
from ringsync.rowfilter import RowFilter, RowFilterError, transition
from ringsync.v1 import values_pb2 as pb

# The kinds a mask writes text into: the column must hold text.
TEXT_MASKS = {"pseudonym", "name", "mobile", "resident_id", "address"}


@dataclass
class RouteCounters:
    """What a route did with the rows it was given, for status."""

    rows_sent: int = 0
    rows_filtered: int = 0   # outside the subset before and after: not sent
    rows_moved_in: int = 0   # UPDATEs sent as INSERTs
    rows_moved_out: int = 0  # UPDATEs sent as DELETEs
    unjudged: int = 0        # the filter could not judge them, or a mask not apply: not sent
    last_unjudged: str = ""


class LeafRoute:
    """One leaf's route, compiled against the parent's tables. Raises a
    RingsyncError (RowFilterError, ConfigError) naming what to fix."""

    def __init__(self, leaf: LeafSettings, shapes: Mapping[str, TableShape]) -> None:
        self.leaf = leaf
        self.tables = frozenset(leaf.tables)
        self.filters: dict[str, RowFilter] = leaf.compile_filters(
            {t: shapes[t].columns for t in leaf.filters})
        self.maskers = _maskers(leaf, shapes)
        self.projections = {t: _projection(leaf.name, shapes[t], cols)
                            for t, cols in leaf.columns.items()}
        # The tables as the leaf holds them (its Hello is compared against these).
        self.shapes: dict[str, TableShape] = {
            t: self.projections[t][0] if t in self.projections else s
            for t, s in shapes.items() if t in self.tables}
        self.reshaped = self.filters.keys() | self.maskers.keys() | self.projections.keys()
        self.passes_whole = not self.reshaped and self.tables >= frozenset(shapes)
        self.counters = RouteCounters()

    def frame(self, frame: pb.TxnFrame, now: dt.datetime) -> pb.TxnFrame:
        """The leaf's copy of ``frame``: only its tables, rows and columns, masked."""
        names = {t.name for t in frame.tables}
        if names <= self.tables and not (names & self.reshaped):
            self.counters.rows_sent += len(frame.changes) + sum(r.rows for r in frame.raw_inserts)
            return frame
        if not names & self.tables:
            return self._empty(frame)
        shapes, changes = decode_changes(frame)
        by_name = {s.name: s for s in shapes}
        kept = [c for c in (self._change(ch, by_name[ch.table], now) for ch in changes
                            if ch.table in self.tables) if c is not None]
        self.counters.rows_sent += len(kept)
        out_shapes = {**by_name, **{t: self.projections[t][0] for t in self.projections}}
        out = build_frame(frame.origin, frame.seq, frame.chunk, frame.final, frame.commit_time,
                          kept, out_shapes, frame.hlc, dict(frame.deps))
        out.set_epochs.update(frame.set_epochs)
        return out

    def initial_rows(self, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]],
                     now: dt.datetime) -> list[tuple[Any, ...]]:
        """An initial load's batch of ``table`` as the leaf gets it: the rows in
        the subset, masked and projected; a row that cannot be is left out
        and counted, as in ``frame``."""
        rule = self.filters.get(table)
        out = []
        for row in rows:
            try:
                if rule is not None and not rule.select(
                        [dict(zip(columns, row, strict=True))], now)[0]:
                    continue
                out.append(self._shaped(table, row))
            except (RowFilterError, MaskingError) as e:
                self._held_back(e)
        return out

    def _change(self, change: Change, shape: TableShape, now: dt.datetime) -> Change | None:
        rule, table = self.filters.get(change.table), change.table
        try:
            kept = change if rule is None else self._filtered(change, shape, rule, now)
            if kept is None or (table not in self.maskers and table not in self.projections):
                return kept
            return Change(table, kept.op,
                          new=None if kept.new is None else self._shaped(table, kept.new),
                          old=None if kept.old is None else self._shaped(table, kept.old))
        except (RowFilterError, MaskingError) as e:
            self._held_back(e)
            return None

    def _filtered(self, change: Change, shape: TableShape, rule: RowFilter,
                  now: dt.datetime) -> Change | None:
        columns = shape.columns
        old = dict(zip(columns, change.old, strict=True)) if change.old is not None else None
        new = dict(zip(columns, change.new, strict=True)) if change.new is not None else None
        becomes = transition(rule, old, new, now)
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

    def _shaped(self, table: str, row: tuple[Any, ...]) -> tuple[Any, ...]:
        masker = self.maskers.get(table)
        if masker is not None:
            row = masker.mask(row)
        projection = self.projections.get(table)
        if projection is not None:
            row = tuple(row[i] for i in projection[1])
        return row

    def _held_back(self, error: Exception) -> None:
        self.counters.unjudged += 1
        self.counters.last_unjudged = str(error)

    @staticmethod
    def _empty(frame: pb.TxnFrame) -> pb.TxnFrame:
        out = pb.TxnFrame(origin=frame.origin, seq=frame.seq, chunk=frame.chunk,
                          final=frame.final, commit_time=frame.commit_time, hlc=frame.hlc,
                          deps=dict(frame.deps))
        out.set_epochs.update(frame.set_epochs)
        return out


def _maskers(leaf: LeafSettings, shapes: Mapping[str, TableShape]) -> dict[str, RowMasker]:
    if not leaf.masking:
        return {}
    path = leaf.masking_key_file
    try:
        key = path.read_bytes().strip() if path is not None else b""
        masker = Masker(key)
    except OSError as e:
        raise ConfigError(f"leaf {leaf.name}: cannot read its masking key {path} ({e}); put "
                          f"the environment's key there on every one of its parents") from None
    except ValueError as e:
        raise ConfigError(f"leaf {leaf.name}: the masking key in {path}: {e}") from None
    out = {}
    for table, masks in leaf.masking.items():
        shape = shapes[table]
        kinds = dict(zip(shape.columns, shape.kinds, strict=False))
        for m in masks:
            if m.kind in TEXT_MASKS and kinds.get(m.column, "text") != "text":
                raise ConfigError(f"leaf {leaf.name}: {table}.{m.column} is "
                                  f"{kinds[m.column]}, but {m.kind} writes text; mask it as "
                                  f"redact, or leave it out with [leaf.columns]")
        try:
            out[table] = RowMasker(table, shape.columns, list(masks), masker)
        except MaskingError as e:
            raise ConfigError(f"leaf {leaf.name}: {e}") from None
    return out


def _projection(leaf: str, shape: TableShape,
                columns: tuple[str, ...]) -> tuple[TableShape, tuple[int, ...]]:
    """The table as a projected leaf holds it, and where its columns come from."""
    unknown = [c for c in columns if c not in shape.columns]
    if unknown:
        raise ConfigError(f"leaf {leaf}: [leaf.columns] of {shape.name} names "
                          f"{', '.join(unknown)}, not a column of it (its columns: "
                          f"{', '.join(shape.columns)})")
    kept = [c for c in shape.columns if c in columns]  # the table's order
    missing = [c for c in shape.key_columns if c not in kept]
    if missing:
        raise ConfigError(f"leaf {leaf}: [leaf.columns] of {shape.name} leaves out its key "
                          f"{', '.join(missing)}; a leaf must hold every row's key")
    index = tuple(shape.columns.index(c) for c in kept)
    kinds = tuple(shape.kinds[i] for i in index) if shape.kinds else ()
    projected = TableShape(shape.name, tuple(kept),
                           tuple(kept.index(c) for c in shape.key_columns), kinds)
    return projected, index
