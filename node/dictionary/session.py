"""An apply session that speaks canonical codes to the driver and local codes
to the database.

Wraps an engine's apply session (node.engines.base.ApplySession) for a ring
with [dictionaries]. The resolver (node.conflicts.driver) works in canonical
space: the rows it reads are translated to canonical codes, and the rows it
writes back to this campus's local codes, keeping a row's own local code
when it still means the same canonical code. Everything else passes through.

The session follows map rows it writes (and, ahead of them, those the batch
shows it in ``untranslatable``) in a map of its own, so a map row and a row
that needs it may come in one batch; the node publishes the map table's
state once the session has committed (node.dictionary.coded).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from node.conflicts.driver import Key, StoredRow, TxnInfo
from node.conflicts.fresh import FreshRun
from node.dictionary.codes import Unmapped
from node.dictionary.translate import Dictionaries, Row
from node.model import Change, TableShape
from ringsync.errors import RingsyncError


class JoinUnmapped(RingsyncError):
    """An initial load's row with a code the joiner cannot translate: the copy
    is refused whole (and retried), saying which map row to add."""


class TranslatingSession:
    def __init__(self, inner: Any, dictionaries: Dictionaries) -> None:
        self.inner = inner
        self.dictionaries = dictionaries
        self.codes = dictionaries.codes
        self.map_written = False
        # (table, key) -> the row as read (local codes), for ``keep``
        self._held: dict[tuple[str, Key], Row] = {}
        self._origin: dict[tuple[str, Key], str] = {}

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.inner, name)
        if name in ("insert_raw", "record_raw"):
            # COPY text of a translated table cannot be copied in as it came
            def raw(shape: TableShape, items: Any) -> bool:
                if self.dictionaries.touches(shape.name):
                    return False
                return bool(value(shape, items))
            return raw
        return value

    # -- reads: to canonical ---------------------------------------------------

    def read_versions(self, shape: TableShape,
                      keys: Mapping[Key, TxnInfo]) -> dict[Key, StoredRow]:
        stored = self.inner.read_versions(shape, keys)
        table = shape.name
        if table not in self.dictionaries.columns:
            return dict(stored)
        out: dict[Key, StoredRow] = {}
        for key, s in stored.items():
            self._origin[(table, key)] = keys[key].origin if key in keys else ""
            if s.row is None:
                out[key] = s
                continue
            self._held[(table, key)] = s.row
            out[key] = StoredRow(self.dictionaries.canonical_row(table, s.row, self.codes),
                                 s.meta, s.pending, s.tag)
        return out

    # -- writes: to local --------------------------------------------------------

    def _local(self, table: str, key: Key, row: Row, origin: str = "") -> Row:
        origin = origin or self._origin.get((table, key), "") or "another campus"
        return self.dictionaries.local_row(table, row, origin, self.codes,
                                           self._held.get((table, key)))

    def _follow(self, table: str, pairs: Iterable[tuple[Row | None, Row | None]]) -> None:
        if table == self.dictionaries.map_table:
            self.codes = self.dictionaries.observe(self.codes, pairs)
            self.map_written = True

    def write_rows(self, shape: TableShape, rows: Mapping[Key, Row | None],
                   absent: frozenset[Key] = frozenset()) -> None:
        table = shape.name
        if table == self.dictionaries.map_table:
            self._follow(table, [(self._key_row(shape, k), r) for k, r in rows.items()])
        elif table in self.dictionaries.columns:
            rows = {k: (self._local(table, k, r) if r is not None else None)
                    for k, r in rows.items()}
        self.inner.write_rows(shape, rows, absent)

    @staticmethod
    def _key_row(shape: TableShape, key: Key) -> Row:
        """A row holding only ``key`` (enough for the map to drop its entry)."""
        row: list[Any] = [None] * len(shape.columns)
        for i, v in zip(shape.key_indexes, key, strict=True):
            row[i] = v
        return tuple(row)

    def insert_fresh(self, shape: TableShape, run: FreshRun) -> bool:
        table = shape.name
        if table == self.dictionaries.map_table:
            self._follow(table, [(None, r) for r in run.rows])
        elif table in self.dictionaries.columns:
            run = FreshRun([self.dictionaries.local_row(table, r, "another campus", self.codes)
                            for r in run.rows], run.keys, run.metas, run.xids)
        return bool(self.inner.insert_fresh(shape, run))

    def apply(self, changes: Iterable[Change]) -> None:
        """An initial load's rows (canonical codes: the donor translated them)."""
        out: list[Change] = []
        for c in changes:
            if c.table == self.dictionaries.map_table:
                self._follow(c.table, [(c.old, c.new)])
            elif c.table in self.dictionaries.columns and c.new is not None:
                try:
                    new = self.dictionaries.local_row(c.table, c.new, "the donor", self.codes)
                except Unmapped as e:
                    why = str(e).split(", then retry this dead letter")[0]
                    raise JoinUnmapped(
                        f"the initial load cannot translate a row of {c.table}: {why}. Add the "
                        f"map row at any campus of the ring; the join tries again and copies "
                        f"it then (nothing of this copy is kept)") from None
                c = Change(c.table, c.op, new, c.old)
            out.append(c)
        self.inner.apply(out)

    # -- what the batch parks ahead of applying ----------------------------------

    def untranslatable(self, txn: TxnInfo, changes: list[Change],
                       waiting: Callable[[Change], bool]) -> list[tuple[Change, str]]:
        """The changes of a foreign transaction whose codes this campus cannot
        translate, with why; map rows among them are followed first. A change
        for which ``waiting`` is true parks behind its row's earlier one anyway."""
        found: list[tuple[Change, str]] = []
        d = self.dictionaries
        for c in changes:
            if c.table == d.map_table:
                self._follow(c.table, [(c.old, c.new)])
            elif c.table in d.columns and c.new is not None and not waiting(c):
                try:
                    d.local_row(c.table, c.new, txn.origin, self.codes)
                except Unmapped as e:
                    found.append((c, str(e)))
                    d.note_parked(str(e))
        return found
