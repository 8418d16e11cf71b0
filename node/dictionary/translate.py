"""Rows and changes translated between a campus's local codes and canonical ones.

``Dictionaries`` knows which columns of which tables are mapped
(ringsync.dictionaries), holds the current CodeMap (node.dictionary.codes)
and translates in both directions:

* to canonical (capture, the donor side of a join, verification, a row an
  operator reads): a local code the campus has not mapped becomes an
  unmapped marker, counted, so the change still leaves and nothing is lost;
* to local (apply): a code this campus cannot translate raises Unmapped,
  and the change is parked (node.replication.batch).

It also follows the map table's own changes: capture sees this campus's map
edits in commit order (``observe``), and an apply session that wrote map
rows makes the node read the table again once it commits.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from node.codec import escape_peer_text
from node.dictionary.codes import (
    MAP_COLUMNS,
    PREFERRED,
    CodeMap,
    MapRow,
    map_row,
    unmapped_marker,
)
from node.model import Change, TableShape
from ringsync.dictionaries import DictionarySettings
from ringsync.errors import SchemaError

log = logging.getLogger(__name__)

Row = tuple[Any, ...]
TEXT_KINDS = ("text", "")  # "": an engine that does not say (the row's values are checked)


class Dictionaries:
    """One node's dictionaries: which columns, the current map, the counters."""

    def __init__(self, settings: DictionarySettings, campus: str) -> None:
        self.settings, self.campus = settings, campus
        self.map_table = settings.table
        # table -> ((column index, dictionary name), ...); filled by ``bind``
        self.columns: dict[str, tuple[tuple[int, str], ...]] = {}
        self.map_shape: TableShape | None = None
        self._codes = CodeMap(settings.lossy, settings.table)
        self._lock = threading.Lock()
        self.unmapped_captured = 0   # local codes that left as unmapped markers
        self.last_unmapped = ""
        self.parked = 0              # changes parked here for a code this campus lacks
        self.last_parked = ""

    # -- setup ---------------------------------------------------------------

    def bind(self, shapes: Mapping[str, TableShape]) -> None:
        """Check the tables against [dictionaries]; SchemaError says what to fix."""
        shape = shapes.get(self.map_table)
        if shape is None:
            raise SchemaError(f"dictionaries.table {self.map_table!r} is not a replicated table")
        missing = [c for c in MAP_COLUMNS if c not in shape.columns]
        if missing:
            raise SchemaError(
                f"the code map table {self.map_table!r} lacks columns {missing}; it needs "
                f"{', '.join(MAP_COLUMNS)} (text) and optionally {PREFERRED} (boolean)")
        if set(shape.key_columns) != {"campus", "dictionary", "local_code"}:
            raise SchemaError(
                f"the code map table {self.map_table!r} must have the primary key (campus, "
                f"dictionary, local_code), not {shape.key_columns}")
        self.map_shape = shape
        columns: dict[str, tuple[tuple[int, str], ...]] = {}
        for table, names in self.settings.columns.items():
            target = shapes[table]
            found = []
            for name in names:
                if name not in target.columns:
                    raise SchemaError(f"dictionaries.columns names {table}.{name}, but table "
                                      f"{table!r} has no column {name!r}")
                index = target.columns.index(name)
                if index in target.key_indexes:
                    raise SchemaError(
                        f"dictionaries.columns names {table}.{name}, a primary key column; "
                        f"a key must be the same at every campus, so it cannot be mapped")
                kind = target.kinds[index] if len(target.kinds) == len(target.columns) else ""
                if kind not in TEXT_KINDS:
                    raise SchemaError(f"dictionaries.columns names {table}.{name}, a {kind} "
                                      f"column; codes are text: map a text column")
                found.append((index, f"{table}.{name}"))
            columns[table] = tuple(found)
        self.columns = columns

    def touches(self, table: str) -> bool:
        """Does translation see this table's changes (mapped, or the map itself)?"""
        return table in self.columns or table == self.map_table

    @property
    def codes(self) -> CodeMap:
        with self._lock:
            return self._codes

    def publish(self, codes: CodeMap) -> None:
        with self._lock:
            self._codes = codes

    def follow_captured(self, edits: list[tuple[Row | None, Row | None]]) -> None:
        """This campus's map edits, as capture saw them, applied to the map
        now held: a map the engine thread read meanwhile (after applying map
        rows) is built on, never replaced by capture's older copy."""
        with self._lock:
            self._codes = self.observe(self._codes, edits)

    def load(self, rows: Iterable[Row]) -> CodeMap:
        """Replace the map with the map table's rows as the database holds them."""
        assert self.map_shape is not None
        columns = self.map_shape.columns
        codes = CodeMap.build((map_row(columns, r) for r in rows), self.settings.lossy,
                              self.map_table)
        for error in codes.errors[:5]:
            log.warning("code map: %s", error)
        self.publish(codes)
        return codes

    # -- the map table's own changes -----------------------------------------

    def observe(self, codes: CodeMap, rows: Iterable[tuple[Row | None, Row | None]]) -> CodeMap:
        """``codes`` after these map-table changes, as (old image, new image)."""
        assert self.map_shape is not None
        columns = self.map_shape.columns
        at = [columns.index(c) for c in ("campus", "dictionary", "local_code")]
        steps: list[tuple[tuple[str, str, str] | None, MapRow | str | None]] = []
        for old, new in rows:
            gone = (str(old[at[0]]), str(old[at[1]]), str(old[at[2]])) if old is not None else None
            steps.append((gone, map_row(columns, new) if new is not None else None))
        return codes.changed(steps) if steps else codes

    def observe_changes(self, codes: CodeMap, changes: Iterable[Change]) -> CodeMap:
        return self.observe(codes, [(c.old, c.new) for c in changes
                                    if c.table == self.map_table])

    # -- to canonical ----------------------------------------------------------

    def canonical_row(self, table: str, row: Row, codes: CodeMap, count: bool = False) -> Row:
        """A row of this campus as the ring carries it. ``count``: a local code
        without a canonical one is counted and logged (capture)."""
        def to_canonical(index: int, dictionary: str, code: str) -> str:
            canonical = codes.canonical(self.campus, dictionary, code)
            if canonical is None:
                canonical = unmapped_marker(self.campus, code)
                if count:
                    self._unmapped_left(dictionary, code)
            return canonical
        return self._each_code(table, row, to_canonical)

    def _each_code(self, table: str, row: Row,
                   translate: Callable[[int, str, str], str]) -> Row:
        """``row`` with each mapped column's text value replaced by
        ``translate(column index, dictionary, value)``; NULLs stay."""
        mapped = self.columns.get(table)
        if not mapped:
            return row
        out = list(row)
        for index, dictionary in mapped:
            value = row[index]
            if isinstance(value, str):
                out[index] = translate(index, dictionary, value)
        return tuple(out)

    def _unmapped_left(self, dictionary: str, code: str) -> None:
        self.unmapped_captured += 1
        shown = escape_peer_text(code, 60)
        text = (f"local code {shown!r} of {dictionary} has no canonical code at "
                f"{self.campus}: the change left unmapped and other campuses park it; add "
                f"({self.campus}, {dictionary}, {shown}, <canonical>) to {self.map_table}")
        if text != self.last_unmapped:
            log.warning("%s", text)
        self.last_unmapped = text

    def canonical_change(self, change: Change, codes: CodeMap, count: bool = False) -> Change:
        if change.table not in self.columns:
            return change
        new = (self.canonical_row(change.table, change.new, codes, count)
               if change.new is not None else None)
        old = (self.canonical_row(change.table, change.old, codes)
               if change.old is not None else None)
        return Change(change.table, change.op, new, old)

    def canonical_rows(self, table: str, rows: Sequence[Row]) -> list[Row]:
        codes = self.codes
        return [self.canonical_row(table, r, codes) for r in rows]

    # -- to local --------------------------------------------------------------

    def local_row(self, table: str, row: Row, origin: str, codes: CodeMap,
                  keep: Row | None = None) -> Row:
        """A row that arrived, in this campus's codes (Unmapped when it cannot
        be). ``keep``: the row as the table holds it now."""
        def to_local(index: int, dictionary: str, value: str) -> str:
            held = keep[index] if keep is not None else None
            return codes.local(self.campus, dictionary, value, origin,
                               held if isinstance(held, str) else None)
        return self._each_code(table, row, to_local)

    def note_parked(self, error: str) -> None:
        self.parked += 1
        self.last_parked = error
