"""SQLite campus engine: trigger capture into a change log, batched apply.

Capture. Triggers on every replicated table append to ``_rs_log`` (one row
per changed row, in commit order) and store the old and new images in
``_rs_img_<table>``, inside the application's own transaction. SQLite has no
transaction id, so the triggers number transactions themselves: the first
change after the node's last capture bumps ``_rs_state.tx`` and clears
``claimed``; capture reads under ``BEGIN IMMEDIATE`` (so no writer is half
way through) and sets ``claimed`` again. A captured transaction is therefore
one or more consecutive committed application transactions, never a part of
one. ``AUTOINCREMENT`` keeps log ids from ever being reused after release.

Apply. Foreign changes are applied with ``_rs_state.applying = 1`` set inside
the same transaction, so the triggers skip them: applied rows are never
re-captured as local. The applied vector (``_rs_applied``) is written in the
same transaction as the rows.

Fencing (node.engines.sqlite.fence). BEFORE triggers refuse application
writes once ``_rs_fence.writable_until`` has passed; apply sessions
(``applying = 1``) pass. A single-writer set's tables are guarded by the
set's row in ``_rs_set_fence`` instead: writable only while it is open.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from node.codec import RowSetDigest
from node.engines.base import ApplyTarget, CaptureSource, ConflictStore, Fence, Inspection
from node.engines.runs import batched_writes
from node.engines.snapshot import ReadSnapshot
from node.engines.sqlite.fence import SQLiteFenceOps, install_fence, store_reconciled
from node.engines.sqlite.snapshot import q, sqlite_snapshot
from node.engines.sqlite.values import from_sqlite, to_sqlite
from node.engines.sqlite.versions import SQLiteVersionStore, install_versions
from node.model import CapturedChunk, Change, Op, TableShape
from node.schema import sqlite_kind
from ringsync.errors import EngineError, SchemaError

log = logging.getLogger(__name__)

INTERNAL_DDL = """
CREATE TABLE IF NOT EXISTS _rs_state(
    id INTEGER PRIMARY KEY CHECK (id = 1),
    tx INTEGER NOT NULL,
    claimed INTEGER NOT NULL,
    applying INTEGER NOT NULL,
    fenced INTEGER NOT NULL DEFAULT 0
);
INSERT OR IGNORE INTO _rs_state(id, tx, claimed, applying) VALUES (1, 0, 1, 0);
CREATE TABLE IF NOT EXISTS _rs_log(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tx INTEGER NOT NULL,
    tbl TEXT NOT NULL,
    op TEXT NOT NULL,
    ts REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS _rs_applied(origin TEXT PRIMARY KEY, seq INTEGER NOT NULL,
                                       changes INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS _rs_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_UNIX_NOW = "(julianday('now') - 2440587.5) * 86400.0"


class _SQLiteApplySession(SQLiteVersionStore):
    holds_row_locks = False  # the session holds the database's one write lock

    def __init__(self, engine: SQLiteEngine) -> None:
        super().__init__(engine.conn, engine.recorded_position, engine.upsert_sql,
                         engine.delete_sql)
        self._engine = engine
        self._conn = engine.conn

    def lock_rows(self, shape: TableShape, keys: list[Any]) -> None:
        """Nothing to do: BEGIN IMMEDIATE took the write lock for the session."""

    def apply(self, changes: Iterable[Change]) -> None:
        for shape, deletes, upserts in batched_writes(changes, self._engine.shape_of):
            if deletes:
                self._conn.executemany(self._engine.delete_sql(shape),
                                       [tuple(to_sqlite(v) for v in k) for k in deletes])
            if upserts:
                self._conn.executemany(self._engine.upsert_sql(shape),
                                       [tuple(to_sqlite(v) for v in r) for r in upserts])

    def clear(self, table: str) -> None:
        shape = self._engine.shape_of(table)
        self._conn.execute(f"DELETE FROM {q(shape.name)}")
        self.clear_versions(shape)

    def mark_base_versions(self) -> None:
        """Nothing to do: a row without recorded versions is a base version."""

    def advance(self, origin: str, seq: int, position: int | None = None,
                changes: int = 0) -> None:
        if position is not None:  # a local transaction's versions are now recorded
            self.recorded_position = max(self.recorded_position, position)
        self._conn.execute(
            "INSERT INTO _rs_applied(origin, seq, changes) VALUES (?, ?, ?) "
            "ON CONFLICT(origin) DO UPDATE SET seq = excluded.seq, "
            "changes = _rs_applied.changes + excluded.changes",
            (origin, seq, changes),
        )

    def mark_set_reconciled(self, name: str, epoch: int) -> None:
        store_reconciled(self._conn, name, epoch)


class SQLiteEngine(SQLiteFenceOps):
    name = "sqlite"

    def __init__(self, path: Path, tables: tuple[str, ...], campus: str,
                 sets: Mapping[str, str] | None = None) -> None:
        self.path = path
        self.tables = tables
        self.campus = campus
        self.sets: Mapping[str, str] = dict(sets or {})  # table -> single-writer set
        self._conn: sqlite3.Connection | None = None
        self._capture_conn: sqlite3.Connection | None = None  # capture runs on its own thread
        self._shapes: dict[str, TableShape] = {}
        self._released = 0
        self._seen_version: int | None = None
        self._backlog = False
        self._handed_out = 0  # position of the last chunk capture returned
        self._through = 0  # every change-log id up to this was returned by capture
        self._sql_cache: dict[tuple[str, str], str] = {}
        # Local changes up to this change-log id have their versions recorded;
        # the log keeps the rest, which is how apply sees them as pending.
        self.recorded_position = 0

    # -- roles (node.engines.base): this engine plays each one itself -------

    @property
    def source(self) -> CaptureSource:
        return self

    @property
    def target(self) -> ApplyTarget:
        return self

    @property
    def fence(self) -> Fence:
        return self

    @property
    def store(self) -> ConflictStore:
        return self

    @property
    def inspect(self) -> Inspection:
        return self

    @property
    def description(self) -> str:
        return str(self.path)

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise EngineError("the SQLite engine is not open")
        return self._conn

    # -- lifecycle -------------------------------------------------------

    def open(self) -> None:
        if not self.path.exists():
            raise EngineError(
                f"SQLite database {self.path} does not exist; create it with the application "
                f"schema first (ringsync never creates application tables)"
            )
        self._conn = self._connect()
        self._shapes = {t: self._read_shape(t) for t in self.tables}
        self._install()
        self._capture_conn = self._connect()

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30.0
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=30000")
        except sqlite3.Error as e:
            raise EngineError(f"cannot open SQLite database {self.path}: {e}") from e
        return conn

    def start_capture(self, position: int) -> None:
        """Nothing to set up: the triggers were installed at open."""

    def close(self) -> None:
        for conn in (self._capture_conn, self._conn):
            if conn is not None:
                conn.close()
        self._conn = self._capture_conn = None

    def _read_shape(self, table: str) -> TableShape:
        info = self.conn.execute(f"PRAGMA table_info({q(table)})").fetchall()
        if not info:
            raise SchemaError(
                f"table {table!r} is listed in cluster.tables but does not exist in {self.path}; "
                f"create it with the same schema as the other campuses, or remove it from the list"
            )
        columns = tuple(row[1] for row in info)
        pk = sorted((row[5], i) for i, row in enumerate(info) if row[5] > 0)
        if not pk:
            raise SchemaError(
                f"table {table!r} in {self.path} has no primary key, so its rows cannot be "
                f"matched across campuses; recreate it with a PRIMARY KEY (SQLite cannot add one "
                f"with ALTER TABLE) or remove it from cluster.tables"
            )
        kinds = tuple(sqlite_kind(row[2] or "") for row in info)
        return TableShape(table, columns, tuple(i for _, i in pk), kinds)

    def _install(self) -> None:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in INTERNAL_DDL.split(";"):
                if statement.strip():
                    conn.execute(statement)
            row = conn.execute("SELECT value FROM _rs_meta WHERE key = 'campus'").fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO _rs_meta(key, value) VALUES ('campus', ?)", (self.campus,)
                )
            elif row[0] != self.campus:
                raise EngineError(
                    f"{self.path} belongs to campus {row[0]!r}, not {self.campus!r}; "
                    f"point each node at its own campus database"
                )
            if "changes" not in [r[1] for r in conn.execute("PRAGMA table_info(_rs_applied)")]:
                conn.execute("ALTER TABLE _rs_applied ADD COLUMN changes INTEGER NOT NULL "
                             "DEFAULT 0")
            for shape in self._shapes.values():
                self._install_table(shape)
                install_versions(conn, shape)
            install_fence(conn, self._shapes.values(), self.campus, self.sets)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _install_table(self, shape: TableShape) -> None:
        conn = self.conn
        img = q(f"_rs_img_{shape.name}")
        wanted = ["log_id"] + [f"n_{c}" for c in shape.columns] + [f"o_{c}" for c in shape.columns]
        have = [r[1] for r in conn.execute(f"PRAGMA table_info({img})")]
        if have and have != wanted:
            pending = conn.execute(
                "SELECT count(*) FROM _rs_log WHERE tbl = ?", (shape.name,)
            ).fetchone()[0]
            if pending:
                raise SchemaError(
                    f"table {shape.name!r} changed columns while {pending} captured changes were "
                    f"not yet journaled; start the node once with the old schema to drain them"
                )
            conn.execute(f"DROP TABLE {img}")
            have = []
        if not have:
            cols = ", ".join(q(c) for c in wanted[1:])
            conn.execute(f"CREATE TABLE {img}(log_id INTEGER PRIMARY KEY, {cols})")
        t = q(shape.name)
        new_cols = ", ".join(q(f"n_{c}") for c in shape.columns)
        old_cols = ", ".join(q(f"o_{c}") for c in shape.columns)
        new_vals = ", ".join(f"NEW.{q(c)}" for c in shape.columns)
        old_vals = ", ".join(f"OLD.{q(c)}" for c in shape.columns)
        name_lit = "'" + shape.name.replace("'", "''") + "'"
        bodies = {
            "INSERT": ("I", f"({new_cols}) VALUES (last_insert_rowid(), {new_vals})"),
            "UPDATE": (
                "U",
                f"({new_cols}, {old_cols}) VALUES (last_insert_rowid(), {new_vals}, {old_vals})",
            ),
            "DELETE": ("D", f"({old_cols}) VALUES (last_insert_rowid(), {old_vals})"),
        }
        for event, (op, values) in bodies.items():
            trig = q(f"_rs_{op.lower()}_{shape.name}")
            cols_values = values.replace("(", "(log_id, ", 1)
            conn.execute(f"DROP TRIGGER IF EXISTS {trig}")
            conn.execute(
                f"CREATE TRIGGER {trig} AFTER {event} ON {t} "
                f"WHEN (SELECT applying FROM _rs_state WHERE id = 1) = 0 BEGIN "
                f"UPDATE _rs_state SET tx = tx + 1, claimed = 0 WHERE id = 1 AND claimed = 1; "
                f"INSERT INTO _rs_log(tx, tbl, op, ts) SELECT tx, {name_lit}, '{op}', {_UNIX_NOW} "
                f"FROM _rs_state WHERE id = 1; "
                f"INSERT INTO {img}{cols_values}; "
                f"END"
            )

    # -- metadata --------------------------------------------------------

    def shapes(self) -> Mapping[str, TableShape]:
        return self._shapes

    def shape_of(self, table: str) -> TableShape:
        try:
            return self._shapes[table]
        except KeyError:
            raise EngineError(
                f"a change names table {table!r}, which is not replicated at campus "
                f"{self.campus!r}; make cluster.tables the same everywhere"
            ) from None

    def _key_where(self, shape: TableShape) -> str:
        return " AND ".join(f"{q(c)} = ?" for c in shape.key_columns)

    def delete_sql(self, shape: TableShape) -> str:
        key = (shape.name, "delete")
        if key not in self._sql_cache:
            self._sql_cache[key] = f"DELETE FROM {q(shape.name)} WHERE {self._key_where(shape)}"
        return self._sql_cache[key]

    def upsert_sql(self, shape: TableShape) -> str:
        key = (shape.name, "upsert")
        if key not in self._sql_cache:
            cols = ", ".join(q(c) for c in shape.columns)
            marks = ", ".join("?" for _ in shape.columns)
            keys = ", ".join(q(c) for c in shape.key_columns)
            rest = [c for c in shape.columns if c not in shape.key_columns]
            action = (
                "DO UPDATE SET " + ", ".join(f"{q(c)} = excluded.{q(c)}" for c in rest)
                if rest else "DO NOTHING"
            )
            self._sql_cache[key] = (
                f"INSERT INTO {q(shape.name)}({cols}) VALUES ({marks}) ON CONFLICT({keys}) {action}"
            )
        return self._sql_cache[key]

    # -- capture ---------------------------------------------------------

    def capture(self, position: int, max_changes: int) -> list[CapturedChunk]:
        conn = self._capture_conn_or_fail()
        # data_version moves when another connection commits: a cheap poll
        # that avoids taking the write lock when nothing happened.
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        releasable = min(position, self.recorded_position)
        if (
            version == self._seen_version
            and not self._backlog
            and position >= self._handed_out  # what we handed out was journaled
            and releasable <= self._released
        ):
            return []
        conn.execute("BEGIN IMMEDIATE")
        try:
            if releasable > self._released:
                self._release_locked(releasable)
            rows = conn.execute(
                "SELECT id, tx, tbl, op, ts FROM _rs_log WHERE id > ? ORDER BY id LIMIT ?",
                (position, max_changes + 1),
            ).fetchall()
            self._seen_version = version
            self._backlog = len(rows) > max_changes
            if not self._backlog:
                last = conn.execute(
                    "SELECT seq FROM sqlite_sequence WHERE name = '_rs_log'").fetchone()
                self._through = int(last[0]) if last else 0
            if not rows:
                conn.execute("COMMIT")
                return []
            conn.execute("UPDATE _rs_state SET claimed = 1 WHERE id = 1 AND claimed = 0")
            extra = rows[max_changes] if len(rows) > max_changes else None
            rows = rows[:max_changes]
            images = self._read_images(rows)
            # Read under the write lock: everything applied before these
            # local changes committed is in it (their dependency vector).
            deps = dict(conn.execute("SELECT origin, seq FROM _rs_applied").fetchall())
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        chunks: list[CapturedChunk] = []
        current_tx = None
        for log_id, tx, tbl, op, ts in rows:
            if tx != current_tx:
                chunks.append(CapturedChunk([], True, ts, log_id, deps=deps))
                current_tx = tx
            chunk = chunks[-1]
            shape = self._shapes[tbl]
            width = len(shape.columns)
            image = images[log_id]
            new = from_sqlite(shape.kinds, image[:width])
            old = from_sqlite(shape.kinds, image[width:])
            if op == "I":
                chunk.changes.append(Change(tbl, Op.INSERT, new=new))
            elif op == "U":
                chunk.changes.append(Change(tbl, Op.UPDATE, new=new, old=old))
            else:
                chunk.changes.append(Change(tbl, Op.DELETE, old=old))
            chunk.commit_time = max(chunk.commit_time, ts)
            chunk.position = log_id
        if extra is not None and extra[1] == current_tx:
            chunks[-1].final = False
        self._handed_out = chunks[-1].position
        return chunks

    def sync_release(self, acked_position: int | None) -> None:
        """SQLite campuses are asynchronous only (config refuses sync)."""

    def captured_through(self) -> int:
        return self._through

    @contextmanager
    def snapshot(self) -> Iterator[ReadSnapshot]:
        with sqlite_snapshot(self._connect, self._shapes) as snap:
            yield snap

    def _capture_conn_or_fail(self) -> sqlite3.Connection:
        if self._capture_conn is None:
            raise EngineError("the SQLite engine is not open")
        return self._capture_conn

    def _read_images(self, rows: list[tuple[Any, ...]]) -> dict[int, tuple[Any, ...]]:
        conn = self._capture_conn_or_fail()
        lo, hi = rows[0][0], rows[-1][0]
        images: dict[int, tuple[Any, ...]] = {}
        for tbl in {r[2] for r in rows}:
            shape = self.shape_of(tbl)
            cols = [f"n_{c}" for c in shape.columns] + [f"o_{c}" for c in shape.columns]
            sql = (
                f"SELECT log_id, {', '.join(q(c) for c in cols)} FROM {q('_rs_img_' + tbl)} "
                f"WHERE log_id BETWEEN ? AND ?"
            )
            for rec in conn.execute(sql, (lo, hi)):
                images[rec[0]] = tuple(rec[1:])
        missing = [r[0] for r in rows if r[0] not in images]
        if missing:
            raise EngineError(f"change log rows {missing[:5]} have no row image in {self.path}")
        return images

    def local_recorded(self, position: int) -> None:
        """Local changes up to ``position`` have their versions recorded: the
        change log may forget them once they are journaled too."""
        self.recorded_position = max(self.recorded_position, position)

    def release(self, position: int) -> None:
        position = min(position, self.recorded_position)
        if position <= self._released:
            return
        conn = self._capture_conn_or_fail()
        conn.execute("BEGIN IMMEDIATE")
        try:
            self._release_locked(position)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _release_locked(self, position: int) -> None:
        conn = self._capture_conn_or_fail()
        conn.execute("DELETE FROM _rs_log WHERE id <= ?", (position,))
        for shape in self._shapes.values():
            conn.execute(
                f"DELETE FROM {q('_rs_img_' + shape.name)} WHERE log_id <= ?", (position,)
            )
        self._released = position

    # -- apply -----------------------------------------------------------

    @contextmanager
    def apply_session(self) -> Iterator[_SQLiteApplySession]:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("UPDATE _rs_state SET applying = 1 WHERE id = 1")
            yield _SQLiteApplySession(self)
            conn.execute("UPDATE _rs_state SET applying = 0 WHERE id = 1")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def applied_vector(self) -> dict[str, int]:
        return dict(self.conn.execute("SELECT origin, seq FROM _rs_applied").fetchall())

    def apply_accounting(self) -> tuple[dict[str, int], int, dict[str, int]]:
        """The applied vector, foreign row changes applied, and dead letters by
        state, from one read."""
        conn = self.conn
        conn.execute("BEGIN")
        try:
            rows = conn.execute("SELECT origin, seq, changes FROM _rs_applied").fetchall()
            dead = self.dead_letter_counts()
        finally:
            conn.execute("COMMIT")
        return ({o: s for o, s, _ in rows}, sum(n for o, _, n in rows if o != self.campus),
                dead)

    # -- inspection ------------------------------------------------------

    def check_health(self) -> None:
        try:
            self.conn.execute("SELECT count(*) FROM _rs_state").fetchone()
        except sqlite3.Error as e:
            raise EngineError(f"SQLite database {self.path} is not readable: {e}") from e

    def rows(self, table: str) -> list[tuple[Any, ...]]:
        """Every row of a table as canonical values (tests and verification)."""
        shape = self.shape_of(table)
        cols = ", ".join(q(c) for c in shape.columns)
        return [from_sqlite(shape.kinds, r)
                for r in self.conn.execute(f"SELECT {cols} FROM {q(table)}")]

    def row_counts(self) -> dict[str, int]:
        return {
            t: self.conn.execute(f"SELECT count(*) FROM {q(t)}").fetchone()[0]
            for t in self.tables
        }

    def checksums(self, tables: list[str]) -> tuple[dict[str, tuple[int, str]], dict[str, int]]:
        conn = self.conn
        conn.execute("BEGIN")  # one read snapshot across every table
        try:
            out = {}
            for table in tables:
                shape = self.shape_of(table)
                cols = ", ".join(q(c) for c in shape.columns)
                digest = RowSetDigest()
                for row in conn.execute(f"SELECT {cols} FROM {q(table)}"):
                    digest.add(from_sqlite(shape.kinds, row))
                out[table] = (digest.rows, digest.hexdigest())
            applied = self.applied_vector()
        finally:
            conn.execute("COMMIT")
        return out, applied
