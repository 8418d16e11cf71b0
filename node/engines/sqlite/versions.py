"""Row versions and the conflict log in a SQLite campus database.

SQLiteVersionStore is the version-store half of an apply session
(node.engines.sqlite.apply); SQLiteConflictStore is the engine's
ConflictStore role (the conflict log and dead letters as the servicers ask
for them, and an operator's local write).

``_rs_meta_<table>`` holds each row's recorded versions (node/conflicts),
keyed like the table; a row without an entry predates ringsync (a base
version every later write supersedes). ``_rs_conflicts`` is the conflict
log. Both are written inside the apply transaction, with the rows.

A local change is *pending* while its change-log rows are newer than the
last local transaction whose versions are recorded: the apply transaction
holds the write lock, so no change can slip in between this check and the
write.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from typing import Any

from node.conflicts.deadletter import DeadLetterQuery, DeadLetterTable
from node.conflicts.driver import (
    Key,
    Row,
    StoredRow,
    TxnInfo,
)
from node.conflicts.entries import ConflictEntry, DeadLetterEntry
from node.conflicts.log import ConflictLog, ConflictQuery
from node.engines.base import fence_message, set_fence_message
from node.engines.dialect import Dialect, write_local_rows
from node.engines.sessionbase import ApplySessionBase
from node.engines.sqlite.connections import SQLiteContext
from node.engines.sqlite.fresh import SQLiteFreshWrites, meta_table
from node.engines.sqlite.snapshot import q
from node.engines.sqlite.values import from_sqlite, to_sqlite
from node.model import TableShape
from node.spelling import Spelling
from ringsync.errors import EngineError

CONFLICTS_DDL = """
CREATE TABLE IF NOT EXISTS _rs_conflicts(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    tbl TEXT NOT NULL,
    key TEXT NOT NULL,
    kind TEXT NOT NULL,
    rule TEXT NOT NULL,
    winner TEXT NOT NULL,
    local_origin TEXT NOT NULL,
    local_hlc INTEGER NOT NULL,
    remote_origin TEXT NOT NULL,
    remote_seq INTEGER NOT NULL,
    remote_hlc INTEGER NOT NULL,
    local_row TEXT,
    remote_row TEXT,
    skew_ms INTEGER NOT NULL,
    state TEXT NOT NULL,
    resolution TEXT
)
"""

SQLITE_SPELLING = Spelling("?")
CONFLICT_LOG = ConflictLog("_rs_conflicts", SQLITE_SPELLING, "_rs_conflict_tally")
DLQ = DeadLetterTable("_rs_dlq", SQLITE_SPELLING)
SQLITE = Dialect(spelling=SQLITE_SPELLING, applied="_rs_applied", set_fence="_rs_set_fence",
                 log=CONFLICT_LOG, dlq=DLQ, native=to_sqlite)


def install_versions(conn: sqlite3.Connection, shape: TableShape) -> None:
    info = {r[1]: r[2] for r in conn.execute(f"PRAGMA table_info({q(shape.name)})")}
    keys = ", ".join(f"{q(c)} {info.get(c) or ''}".strip() for c in shape.key_columns)
    pk = ", ".join(q(c) for c in shape.key_columns)
    conn.execute(f"CREATE TABLE IF NOT EXISTS {meta_table(shape.name)}"
                 f"({keys}, meta TEXT NOT NULL, PRIMARY KEY({pk}))")
    conn.execute(CONFLICTS_DDL)
    conn.execute(CONFLICT_LOG.tally_ddl())
    conn.execute(DLQ.ddl("INTEGER PRIMARY KEY AUTOINCREMENT", "BLOB"))


def _key_where(shape: TableShape, prefix: str = "") -> str:
    return " AND ".join(f"{q(prefix + c)} = ?" for c in shape.key_columns)


class SQLiteVersionStore(SQLiteFreshWrites, ApplySessionBase):
    """The version-store half of a SQLite apply session (see node.conflicts.driver)."""

    def __init__(self, conn: sqlite3.Connection, recorded_position: int,
                 shape_of: Callable[[str], TableShape],
                 upsert_sql: Callable[[TableShape], str],
                 delete_sql: Callable[[TableShape], str]) -> None:
        super().__init__(conn, SQLITE, shape_of, upsert_sql, delete_sql)
        self.conn = conn
        self.recorded_position = recorded_position

    def read_versions(self, shape: TableShape,
                      keys: Mapping[Key, TxnInfo]) -> dict[Key, StoredRow]:
        conn = self.conn
        cols = ", ".join(q(c) for c in shape.columns)
        row_sql = f"SELECT {cols} FROM {q(shape.name)} WHERE {_key_where(shape)}"
        meta_sql = f"SELECT meta FROM {meta_table(shape.name)} WHERE {_key_where(shape)}"
        pending_sql = (
            f"SELECT 1 FROM {q('_rs_img_' + shape.name)} WHERE log_id > ? AND "
            f"(({_key_where(shape, 'n_')}) OR ({_key_where(shape, 'o_')})) LIMIT 1"
        )
        out: dict[Key, StoredRow] = {}
        for key, txn in keys.items():
            # a local key is pending when a later local change to it is logged
            after = txn.position if txn.local and txn.position is not None else (
                self.recorded_position)
            native = tuple(to_sqlite(v) for v in key)
            found = conn.execute(row_sql, native).fetchone()
            meta = conn.execute(meta_sql, native).fetchone()
            pending = conn.execute(pending_sql, (after, *native, *native)).fetchone()
            out[key] = StoredRow(from_sqlite(shape.kinds, found) if found else None,
                                 meta[0] if meta else None, pending is not None)
        return out

    def write_rows(self, shape: TableShape, rows: Mapping[Key, Row | None],
                   absent: frozenset[Key] = frozenset()) -> None:
        """``absent`` needs no care here: apply holds the write lock throughout."""
        deletes = [tuple(to_sqlite(v) for v in k) for k, r in rows.items() if r is None]
        upserts = [tuple(to_sqlite(v) for v in r) for r in rows.values() if r is not None]
        if deletes:
            self.conn.executemany(self._delete_sql(shape), deletes)
        if upserts:
            self.conn.executemany(self._upsert_sql(shape), upserts)

    def write_versions(self, shape: TableShape, metas: Mapping[Key, tuple[str | None, bool]],
                       stored: Mapping[Key, StoredRow], written: set[Key],
                       owners: Mapping[Key, TxnInfo]) -> None:
        keys = ", ".join(q(c) for c in shape.key_columns)
        marks = ", ".join("?" for _ in shape.key_columns)
        self.conn.executemany(
            f"INSERT INTO {meta_table(shape.name)}({keys}, meta) VALUES ({marks}, ?) "
            f"ON CONFLICT({keys}) DO UPDATE SET meta = excluded.meta",
            [(*(to_sqlite(v) for v in k), text) for k, (text, _) in metas.items()
             if text is not None],
        )

    def dead_letters(self, query: DeadLetterQuery) -> list[DeadLetterEntry]:
        return DLQ.query(self.conn, query)

    def savepoint(self) -> None:
        self.conn.execute("SAVEPOINT rs_change")

    def release_savepoint(self) -> None:
        self.conn.execute("RELEASE SAVEPOINT rs_change")

    def rollback_to_savepoint(self) -> None:
        self.conn.execute("ROLLBACK TO SAVEPOINT rs_change")
        self.conn.execute("RELEASE SAVEPOINT rs_change")

    def reset_versions(self, shape: TableShape, rows: Mapping[Key, bool]) -> None:
        self.conn.executemany(
            f"DELETE FROM {meta_table(shape.name)} WHERE {_key_where(shape)}",
            [tuple(to_sqlite(v) for v in k) for k in rows])

    def clear_versions(self, shape: TableShape) -> None:
        self.conn.execute(f"DELETE FROM {meta_table(shape.name)}")


class SQLiteConflictStore:
    """The ConflictStore role of SQLiteEngine: the conflict log and dead-letter
    queries and an operator's local write, on the engine's main connection
    (from the shared context, with the shapes and the SQL builders)."""

    def __init__(self, ctx: SQLiteContext) -> None:
        self.ctx = ctx

    def conflicts(self, query: ConflictQuery) -> list[ConflictEntry]:
        return CONFLICT_LOG.query(self.ctx.conn, query)

    def read_version(self, table: str, key: tuple[Any, ...]) -> tuple[tuple[Any, ...] | None,
                                                                     str | None]:
        shape = self.ctx.shape_of(table)
        native = tuple(to_sqlite(v) for v in key)
        where = _key_where(shape)
        cols = ", ".join(q(c) for c in shape.columns)
        conn = self.ctx.conn
        row = conn.execute(f"SELECT {cols} FROM {q(table)} WHERE {where}", native).fetchone()
        meta = conn.execute(f"SELECT meta FROM {q('_rs_meta_' + table)} WHERE {where}",
                            native).fetchone()
        return (from_sqlite(shape.kinds, row) if row else None), (meta[0] if meta else None)

    def write_local(self, table: str, key: tuple[Any, ...], row: tuple[Any, ...] | None,
                    prior: tuple[Any, ...] | None = None) -> None:
        """An ordinary local write (captured and replicated like a user's). An
        operator's resolution, so while fenced (or, for a table of a
        single-writer set, while the set is closed here) the database refuses
        it like an application's (as EngineError)."""
        try:
            self._write_local(table, key, row, prior)
        except sqlite3.IntegrityError as e:
            refusals = {fence_message(self.ctx.campus)}
            if table in self.ctx.sets:
                refusals.add(set_fence_message(self.ctx.campus, self.ctx.sets[table]))
            if str(e) in refusals:
                raise EngineError(str(e)) from e
            raise

    def _write_local(self, table: str, key: tuple[Any, ...], row: tuple[Any, ...] | None,
                     prior: tuple[Any, ...] | None) -> None:
        shape = self.ctx.shape_of(table)
        conn = self.ctx.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            write_local_rows(conn, SQLITE, self.ctx.upsert_sql(shape), self.ctx.delete_sql(shape),
                             key, row, prior)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def mark_conflict(self, conflict_id: int, state: str, resolution: str) -> None:
        self.ctx.conn.execute(SQLITE.mark_conflict_sql(), (state, resolution, conflict_id))

    def dead_letter_list(self, query: DeadLetterQuery) -> list[DeadLetterEntry]:
        return DLQ.query(self.ctx.conn, query)

    def dead_letter_counts(self) -> dict[str, int]:
        return DLQ.counts(self.ctx.conn, self.ctx.campus)

    def conflict_counts(self) -> dict[str, int]:
        return CONFLICT_LOG.counts(self.ctx.conn)

    def prune_conflicts(self, keep_rows: int, keep_days: int) -> None:
        CONFLICT_LOG.prune(self.ctx.conn, keep_rows, keep_days)

