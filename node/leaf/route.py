"""A leaf's route applied to a parent's frames: which tables, rows and columns, masked how.

The parent runs every frame it sends a leaf through ``LeafRoute.frame``, and
every row of a leaf's initial load through ``LeafRoute.initial_rows``:

* a frame of tables outside the route becomes an empty frame with the same
  origin, sequence, chunk and stamps, so the leaf's journal stays gapless
  per origin and its applied vector moves on;
* a route that takes its tables whole passes the frame's bytes through
  untouched (no decoding: ``passes_whole``);
* a filtered table's changes are judged as PostgreSQL 15's row filters
  treat an UPDATE (``ringsync.rowfilter.becomes``): a row moving into the
  subset arrives whole as an INSERT, one moving out is a DELETE, one outside
  before and after is not sent. Both images are judged at one moment per
  batch (``now``), on the real row;
* a following table's row ([leaf.follows]) is in the subset only if its
  parent row is, found through node.leaf.parents (the same snapshot in a
  copy, the frame or this campus's database in a stream); a parent row
  moving into or out of the subset raises ``ParentMoved``: its children
  move with it, and the leaf copies its subset again;
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
from node.leaf.parents import (
    CopyParents,
    ParentMoved,
    ParentSource,
    RowLookup,
    StreamParents,
    compile_links,
)
from node.model import Change, Op, TableShape
from ringsync.errors import ConfigError
from ringsync.follows import ancestors, parents_first
from ringsync.leaves import LeafSettings
from ringsync.masking import Masker, MaskingError, RowMasker
from ringsync.rowfilter import RowFilter, RowFilterError, becomes
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
        self.links = compile_links(leaf.name, leaf.follows, shapes)
        self.followed = frozenset(link.parent for link in self.links.values())
        self.source_shapes = dict(shapes)
        # The tables as the leaf holds them (its Hello is compared against these),
        # parents before the tables that follow them (the order a copy is read in).
        order = parents_first([t for t in shapes if t in self.tables], leaf.follows)
        self.shapes: dict[str, TableShape] = {
            t: self.projections[t][0] if t in self.projections else shapes[t] for t in order}
        self.judged = self.filters.keys() | self.links.keys()
        self.reshaped = self.judged | self.maskers.keys() | self.projections.keys()
        self.passes_whole = not self.reshaped and self.tables >= frozenset(shapes)
        self.counters = RouteCounters()
        self.copy_parents = CopyParents()  # initial_rows: parents' kept keys

    def ancestors(self, table: str) -> list[str]:
        """The tables ``table`` follows, the first parent of the chain first:
        a route view of ``table`` reads them first (``initial_rows``)."""
        return ancestors(table, self.leaf.follows)[::-1]

    def frame(self, frame: pb.TxnFrame, now: dt.datetime,
              lookup: RowLookup | None = None) -> pb.TxnFrame:
        """The leaf's copy of ``frame``: only its tables, rows and columns,
        masked. ``lookup`` reads a parent row from this campus's database (a
        route with [leaf.follows] needs it). Raises ParentMoved."""
        names = {t.name for t in frame.tables}
        if names <= self.tables and not (names & self.reshaped):
            self.counters.rows_sent += len(frame.changes) + sum(r.rows for r in frame.raw_inserts)
            return frame
        if not names & self.tables:
            return self._empty(frame)
        shapes, changes = decode_changes(frame)
        by_name = {s.name: s for s in shapes}
        parents = None if not self.links else self._stream_parents(changes, by_name, now, lookup)
        kept = [c for c in (self._change(ch, now, parents) for ch in changes
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
        judged, keyed = table in self.judged, table in self.followed
        key_at = self.source_shapes[table].key_indexes
        out = []
        for row in rows:
            try:
                if judged and not self.selects(table, row, now, self.copy_parents):
                    continue
                if keyed:
                    self.copy_parents.keep(table, tuple(row[i] for i in key_at))
                out.append(self._shaped(table, row))
            except (RowFilterError, MaskingError) as e:
                self._held_back(e)
        return out

    def selects(self, table: str, row: tuple[Any, ...], now: dt.datetime,
                parents: ParentSource, missing_in: bool = False) -> bool:
        """Is ``row`` of ``table`` in the subset: its filter selects it and, for
        a following table, its parent row (through ``parents``) is in it."""
        rule = self.filters.get(table)
        if rule is not None and not rule.select(
                [dict(zip(self.source_shapes[table].columns, row, strict=True))], now)[0]:
            return False
        link = self.links.get(table)
        if link is None:
            return True
        key = link.key(row)
        return key is not None and parents.parent_in(link.parent, key, missing_in)

    def _stream_parents(self, changes: list[Change], shapes: Mapping[str, TableShape],
                        now: dt.datetime, lookup: RowLookup | None) -> StreamParents:
        if lookup is None:
            raise ValueError("a route with [leaf.follows] judges frames with a lookup")
        images: dict[tuple[str, tuple[Any, ...]], tuple[Any, ...] | None] = {}
        for ch in changes:  # parent rows as this frame leaves them
            if ch.table in self.followed:
                at = shapes[ch.table].key_indexes
                if ch.old is not None:
                    images[(ch.table, tuple(ch.old[i] for i in at))] = None
                if ch.new is not None:
                    images[(ch.table, tuple(ch.new[i] for i in at))] = ch.new
        return StreamParents(self, lookup, now, images)

    def _change(self, change: Change, now: dt.datetime,
                parents: ParentSource | None) -> Change | None:
        table = change.table
        try:
            kept = change if table not in self.judged else self._judged(
                change, now, parents or self.copy_parents)
            if kept is None or (table not in self.maskers and table not in self.projections):
                return kept
            return Change(table, kept.op,
                          new=None if kept.new is None else self._shaped(table, kept.new),
                          old=None if kept.old is None else self._shaped(table, kept.old))
        except (RowFilterError, MaskingError) as e:
            self._held_back(e)
            return None

    def _judged(self, change: Change, now: dt.datetime, parents: ParentSource) -> Change | None:
        table = change.table
        # A DELETE whose parent row is gone is sent: the leaf may hold the row.
        was = change.old is not None and self.selects(table, change.old, now, parents,
                                                      missing_in=change.op is Op.DELETE)
        is_in = change.new is not None and self.selects(table, change.new, now, parents)
        result = becomes(was, is_in)
        if result is None:
            self.counters.rows_filtered += 1
            return None
        if result != "update" and change.op is Op.UPDATE and table in self.followed:
            shape = self.source_shapes[table]
            key = {shape.columns[i]: change.old[i] for i in shape.key_indexes}  # type: ignore[index]
            raise ParentMoved(f"a row of {table} ({key}) that [leaf.follows] rows follow moved "
                              f"{'into' if result == 'insert' else 'out of'} the subset of "
                              f"leaf {self.leaf.name}; its rows move with it")
        if result == "insert" and change.op is Op.UPDATE:
            self.counters.rows_moved_in += 1
            return Change(change.table, Op.INSERT, new=change.new)
        if result == "delete" and change.op is Op.UPDATE:
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
