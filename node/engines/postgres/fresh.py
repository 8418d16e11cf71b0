"""Fresh rows on PostgreSQL: the set-wise half of the fast path (node.conflicts.fresh).

A run of inserts of distinct keys is written with no per-row statement and
no per-row resolution: the rows, each with its transaction's version text
in one extra column, go by COPY into a staging table; one statement asks,
key by key through the primary key (node.engines.postgres.stage.probe),
whether any key already has a version entry or a row; one ``INSERT ... SELECT`` writes the rows and
one writes their version rows. A short run uses parameter lists instead of
a staging table. Anything already there sends the run, untouched, to the
exact path; a row that a local user inserts between the check and the
write is caught by the insert (``ON CONFLICT DO NOTHING`` and a count) and
is a ``PendingLocalChange``, exactly as on the exact path.

This campus's own fresh rows are in the table already: only their version
rows are written, with the transaction's own xid (what the exact path
records for them too, whether or not a later local change holds the row).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import psycopg
from psycopg import sql

from node.conflicts.fresh import FreshRun, RawItem
from node.engines.postgres.stage import Stager, insert_from, probe, probe_match
from node.engines.postgres.values import to_pg
from node.model import TableShape
from node.rawcopy import encode_field

META_COLUMNS = ("xid", "live", "meta")
STAGED_META = "rs_meta"


def _field(text: str) -> bytes:
    return encode_field(text).encode()


def _idents(columns: tuple[str, ...]) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(c) for c in columns)


def meta_ident(table: str) -> sql.Composable:
    return sql.Identifier("ringsync", f"meta_{table}")


def in_keys(shape: TableShape, count: int) -> sql.Composable:
    """``(k1, k2) IN ((%s, %s), ...)`` for ``count`` keys."""
    one = sql.SQL("({})").format(sql.SQL(", ").join(sql.Placeholder() for _ in shape.key_columns))
    return sql.SQL("({}) IN ({})").format(_idents(shape.key_columns),
                                         sql.SQL(", ").join([one] * count))


def pg_values(shape: TableShape) -> Any:
    """A function making a canonical row into COPY/parameter values: the row
    itself unless the table has JSON columns (the only kind that differs)."""
    if "json" in shape.kinds or not shape.kinds:
        return lambda row: tuple(to_pg(v) for v in row)
    return tuple


def _duplicates(shape: TableShape, stage: sql.Identifier) -> sql.Composed:
    """Keys staged twice (two campuses' concurrent inserts of one key)."""
    keys = _idents(shape.key_columns)
    return sql.SQL("SELECT 1 FROM {} GROUP BY {} HAVING count(*) > 1").format(stage, keys)


def _not_holding(shape: TableShape, stage: sql.Identifier,
                 xid_column: str = "xid") -> sql.Composed:
    """Staged (key, xid) pairs whose row is gone or has another xmin, each key
    a primary-key probe (see node.engines.postgres.stage.probe)."""
    return sql.SQL("SELECT 1 FROM {} rs_s LEFT JOIN LATERAL (SELECT rs_t.xmin::text::bigint "
                   "AS x FROM {} rs_t WHERE {} OFFSET 0) t ON true "
                   "WHERE t.x IS DISTINCT FROM rs_s.{}").format(
        stage, sql.Identifier(shape.name), probe_match(shape), sql.Identifier(xid_column))


class PgFreshWrites:
    """The fresh-row writes of a PostgreSQL apply session (PgVersionStore
    mixes this in; it provides the cursor, the stager and the helpers named
    below)."""

    cur: psycopg.Cursor[Any]
    _stager: Stager | None
    _savepoints: int

    @abstractmethod
    def _bulk(self, rows: list[Any]) -> bool: ...
    @abstractmethod
    def _session_xid(self) -> int: ...
    @abstractmethod
    def _insert_new(self, shape: TableShape, rows: list[tuple[Any, ...]]) -> None: ...
    @abstractmethod
    def _check_inserted(self, shape: TableShape, written: int, wanted: int) -> None: ...
    @abstractmethod
    def _xmins(self, shape: TableShape, keys: list[Any]) -> dict[Any, int]: ...

    def insert_fresh(self, shape: TableShape, run: FreshRun) -> bool:
        table, meta = sql.Identifier(shape.name), meta_ident(shape.name)
        values = pg_values(shape)
        if self._bulk(run.rows) and self._stager is not None:
            staged = [(*values(r), m) for r, m in zip(run.rows, run.metas, strict=True)]
            stage = self._stager.load(self.cur, table, shape.name, shape.columns, staged,
                                      extra=((STAGED_META, "text"),))
            return self._write_staged(shape, stage, len(run.rows))
        params = [to_pg(v) for k in run.keys for v in k]
        where = in_keys(shape, len(run.keys))
        if self._taken(sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE {}) OR "
                               "EXISTS (SELECT 1 FROM {} WHERE {})").format(
                                   meta, where, table, where), params + params):
            return False
        self._insert_new(shape, [values(r) for r in run.rows])
        xmins = self._xmins(shape, run.keys) if self._savepoints else {}
        xid = self._session_xid()
        self._insert_versions(shape, [
            (*(to_pg(v) for v in k), xmins.get(k, xid), True, m)
            for k, m in zip(run.keys, run.metas, strict=True)])
        return True

    def record_fresh(self, shape: TableShape, run: FreshRun) -> bool:
        """Only while every row still holds its own transaction's version (its
        xmin is that xid): a row written under a savepoint, or changed or
        deleted since, is for the exact path, which records what the row holds."""
        if any(x is None for x in run.xids):
            return False
        meta = meta_ident(shape.name)
        records = [(*(to_pg(v) for v in k), x, True, m)
                   for k, x, m in zip(run.keys, run.xids, run.metas, strict=True)]
        if self._bulk(records) and self._stager is not None:
            columns = (*shape.key_columns, *META_COLUMNS)
            stage = self._stager.load(self.cur, meta, f"meta_{shape.name}", columns, records)
            if self._taken(sql.SQL("SELECT EXISTS ({}) OR EXISTS ({})").format(
                    probe(shape, stage, meta, sql.SQL("1")),
                    _not_holding(shape, stage)), []):
                return False
            self.cur.execute(insert_from(meta, columns, stage, sql.SQL("")))
            return True
        params = [to_pg(v) for k in run.keys for v in k]
        if self._taken(sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE {})").format(
                meta, in_keys(shape, len(run.keys))), params):
            return False
        if self._xmins(shape, run.keys) != dict(zip(run.keys, run.xids, strict=True)):
            return False
        self._insert_versions(shape, records)
        return True

    def insert_raw(self, shape: TableShape, items: list[RawItem]) -> bool:
        """``insert_fresh`` for rows as COPY text (node.model.RawInserts): the
        text goes to the staging table as it came, each line given its
        transaction's version text as one more column (a byte replace, no
        per-row Python)."""
        if self._stager is None:
            return False
        table = sql.Identifier(shape.name)
        blob = b"".join(text.replace(b"\n", b"\t" + _field(meta) + b"\n")
                        for text, _, meta, _ in items)
        rows = sum(n for _, n, _, _ in items)
        stage = self._stager.load(self.cur, table, shape.name, shape.columns, range(rows),
                                  extra=((STAGED_META, "text"),), text=blob)
        return self._write_staged(shape, stage, rows, distinct_checked=False)

    def record_raw(self, shape: TableShape, items: list[RawItem]) -> bool:
        """``record_fresh`` for this campus's own rows as COPY text."""
        if self._stager is None or any(xid is None for _, _, _, xid in items):
            return False
        meta = meta_ident(shape.name)
        blob = b"".join(text.replace(b"\n", b"\t%d\t" % (xid or 0) + _field(m) + b"\n")
                        for text, _, m, xid in items)  # (no xid is None here)
        rows = sum(n for _, n, _, _ in items)
        stage = self._stager.load(self.cur, sql.Identifier(shape.name), shape.name,
                                  shape.columns, range(rows),
                                  extra=(("rs_xid", "bigint"), (STAGED_META, "text")), text=blob)
        if self._taken(sql.SQL("SELECT EXISTS ({}) OR EXISTS ({}) OR EXISTS ({})").format(
                probe(shape, stage, meta, sql.SQL("1")), _not_holding(shape, stage, "rs_xid"),
                _duplicates(shape, stage)), []):
            return False
        self.cur.execute(sql.SQL("INSERT INTO {} ({}, xid, live, meta) SELECT {}, rs_xid, true, "
                                 "{} FROM {}").format(meta, _idents(shape.key_columns),
                                                      _idents(shape.key_columns),
                                                      sql.Identifier(STAGED_META), stage))
        return True

    def _write_staged(self, shape: TableShape, stage: sql.Identifier, rows: int,
                      distinct_checked: bool = True) -> bool:
        """The staged rows (each with its version text) into the table and the
        version table, unless a key already has a row or versions there, or
        (``distinct_checked`` False: the keys were not compared yet) is staged
        twice; False, with nothing written, then."""
        table, one = sql.Identifier(shape.name), sql.SQL("1")
        checks = [probe(shape, stage, meta_ident(shape.name), one), probe(shape, stage, table, one)]
        if not distinct_checked:
            checks.append(_duplicates(shape, stage))
        if self._taken(sql.SQL("SELECT ") + sql.SQL(" OR ").join(
                sql.SQL("EXISTS ({})").format(c) for c in checks), []):
            return False
        self.cur.execute(insert_from(table, shape.columns, stage,
                                     sql.SQL("ON CONFLICT DO NOTHING")))
        self._check_inserted(shape, self.cur.rowcount, rows)
        self._stage_versions(shape, stage)
        return True

    def _taken(self, query: sql.Composed, params: list[Any]) -> bool:
        row = self.cur.execute(query, params).fetchone()
        return bool(row and row[0])

    def _stage_versions(self, shape: TableShape, stage: sql.Identifier) -> None:
        """Version rows for the staged rows just inserted: this session's xid,
        or under a savepoint the subtransaction's, as the row's xmin says."""
        keys = _idents(shape.key_columns)
        target = sql.SQL("INSERT INTO {} ({}, xid, live, meta) ").format(
            meta_ident(shape.name), keys)
        if self._savepoints:
            inner = sql.SQL(", ").join([
                *(sql.Identifier("rs_t", c) for c in shape.key_columns),
                sql.SQL("rs_t.xmin::text::bigint, true"), sql.Identifier("rs_s", STAGED_META)])
            self.cur.execute(target + probe(shape, stage, sql.Identifier(shape.name), inner))
            return
        self.cur.execute(target + sql.SQL("SELECT {}, %s, true, {} FROM {}").format(
            keys, sql.Identifier(STAGED_META), stage), (self._session_xid(),))

    def _insert_versions(self, shape: TableShape, records: list[tuple[Any, ...]]) -> None:
        marks = sql.SQL(", ").join(sql.Placeholder()
                                   for _ in range(len(shape.key_columns) + len(META_COLUMNS)))
        self.cur.executemany(sql.SQL("INSERT INTO {} ({}, xid, live, meta) VALUES ({})").format(
            meta_ident(shape.name), _idents(shape.key_columns), marks), records)
