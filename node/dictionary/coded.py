"""The campus engine seen through its code maps: the edge where codes translate.

``CodedEngine`` wraps a node's engine (node.engines.base.Engine) when the
cluster has [dictionaries], so the rest of the node sees canonical codes
only and never knows a map exists:

* capture: each captured chunk's rows are translated to canonical codes
  before the journal stores them (COPY text of a translated table is
  decoded first), following this campus's own map edits in commit order;
* apply: sessions are node.dictionary.session's (canonical to local);
  one that wrote map rows makes the node read the map table again once it
  has committed;
* inspection and the donor's snapshot: rows leave in canonical codes, and
  checksums of translated tables are computed over them;
* verification: the verifier hashes translated tables' rows through the
  same view (engines take ``views``), so campuses compare canonical codes;
* the conflict store: an operator's resolution or a repair, written as a
  local transaction, is written in local codes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from node.codec import RowSetDigest
from node.dictionary.session import TranslatingSession
from node.dictionary.translate import Dictionaries, Row
from node.engines.base import Engine
from node.engines.snapshot import ReadSnapshot
from node.model import CapturedChunk, Change, Op, TableShape
from node.rawcopy import decode_rows


class _Delegate:
    def __init__(self, inner: Any, dictionaries: Dictionaries) -> None:
        self.inner, self.dictionaries = inner, dictionaries

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class CodedSource(_Delegate):
    def __init__(self, inner: Any, dictionaries: Dictionaries,
                 shapes: Mapping[str, TableShape]) -> None:
        super().__init__(inner, dictionaries)
        self.shapes = shapes

    def capture(self, position: int, max_changes: int) -> list[CapturedChunk]:
        chunks = self.inner.capture(position, max_changes)
        d = self.dictionaries
        codes = d.codes
        seen: list[tuple[Row | None, Row | None]] = []  # this campus's map edits, in order
        for chunk in chunks:
            if chunk.raw and any(d.touches(t) for t, _, _ in chunk.raw):
                chunk.changes = [Change(t, Op.INSERT, row) for t, n, text in chunk.raw
                                 for row in decode_rows(text, self.shapes[t].kinds, n)]
                chunk.raw = None
            if not any(d.touches(c.table) for c in chunk.changes):
                continue
            out = []
            for c in chunk.changes:
                if c.table == d.map_table:
                    codes = d.observe(codes, [(c.old, c.new)])
                    seen.append((c.old, c.new))
                out.append(d.canonical_change(c, codes, count=True))
            chunk.changes = out
        if seen:
            d.follow_captured(seen)
        return chunks


class CodedTarget(_Delegate):
    def __init__(self, inner: Any, dictionaries: Dictionaries, reload: Any) -> None:
        super().__init__(inner, dictionaries)
        self._reload = reload

    @contextmanager
    def apply_session(self) -> Iterator[TranslatingSession]:
        with self.inner.apply_session() as inner:
            session = TranslatingSession(inner, self.dictionaries)
            yield session
        if session.map_written:
            self._reload()


class CodedStore(_Delegate):
    def read_version(self, table: str, key: tuple[Any, ...]) -> tuple[Row | None, str | None]:
        row, meta = self.inner.read_version(table, key)
        if row is not None:
            row = self.dictionaries.canonical_row(table, row, self.dictionaries.codes)
        return row, meta

    def write_local(self, table: str, key: tuple[Any, ...], row: Row | None,
                    prior: Row | None = None) -> None:
        d = self.dictionaries
        if table in d.columns:
            held, _ = self.inner.read_version(table, key)
            if row is not None:
                row = d.local_row(table, row, d.campus, d.codes, held)
            if prior is not None:
                prior = d.local_row(table, prior, d.campus, d.codes, held)
        self.inner.write_local(table, key, row, prior)


class CodedInspection(_Delegate):
    def rows(self, table: str) -> list[Row]:
        return self.dictionaries.canonical_rows(table, self.inner.rows(table))

    def checksums(self, tables: list[str]) -> tuple[dict[str, tuple[int, str]], dict[str, int]]:
        sums, applied = self.inner.checksums(tables)
        for table in tables:
            if table in self.dictionaries.columns:
                digest = RowSetDigest()
                for row in self.rows(table):
                    digest.add(row)
                sums[table] = (digest.rows, digest.hexdigest())
        return sums, applied

    @contextmanager
    def snapshot(self) -> Iterator[ReadSnapshot]:
        with self.inner.snapshot() as snap:
            yield snap.viewed(self.dictionaries.canonical_rows)


def _view(dictionaries: Dictionaries, table: str) -> Callable[[Row], Row]:
    def view(row: Row) -> Row:
        return dictionaries.canonical_row(table, row, dictionaries.codes)
    return view


class CodedEngine:
    """An engine whose rows the rest of the node sees in canonical codes."""

    def __init__(self, inner: Engine, dictionaries: Dictionaries) -> None:
        self.inner, self.dictionaries = inner, dictionaries
        self.name = inner.name
        self._parts: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @property
    def description(self) -> str:
        return self.inner.description

    def open(self) -> None:
        self.inner.open()
        d = self.dictionaries
        shapes = self.inner.shapes()
        d.bind(shapes)
        self.reload()
        self._parts = {
            "source": CodedSource(self.inner.source, d, shapes),
            "target": CodedTarget(self.inner.target, d, self.reload),
            "store": CodedStore(self.inner.store, d),
            "inspect": CodedInspection(self.inner.inspect, d),
        }
        self.inner.verifier.views = {t: _view(d, t) for t in d.columns}

    def reload(self) -> None:
        """Read the map table again (after a session that wrote to it committed)."""
        self.dictionaries.load(self.inner.inspect.rows(self.dictionaries.map_table))

    def close(self) -> None:
        self.inner.close()

    def shapes(self) -> Mapping[str, TableShape]:
        return self.inner.shapes()

    def _part(self, name: str) -> Any:
        part = self._parts.get(name)
        return part if part is not None else getattr(self.inner, name)

    @property
    def source(self) -> Any:
        return self._part("source")

    @property
    def target(self) -> Any:
        return self._part("target")

    @property
    def store(self) -> Any:
        return self._part("store")

    @property
    def inspect(self) -> Any:
        return self._part("inspect")

    @property
    def fence(self) -> Any:
        return self.inner.fence

    @property
    def verifier(self) -> Any:
        return self.inner.verifier
