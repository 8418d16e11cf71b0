"""Campus databases for the role contracts: one class per engine.

A contract (capture, apply, fence, inspection...) is a class of tests that
uses only what these classes offer: ``db`` (a fresh database with the test
class's ``SQLITE_DDL``/``POSTGRES_DDL`` and ``TABLES``), ``new_engine``,
``engine`` (opened, capture started) and how an application writes and
reads through a plain connection of its own (``sqlite3`` on the file,
``psycopg`` on the DSN), never through the engine. A test class is a
contract mixed with one of these, so every role's contract runs on every
engine. PostgreSQL runs on a real server made with initdb (the session's
``pg_server``, tests/contract/conftest.py); SQLite on a file.
"""

from __future__ import annotations

import dataclasses
import math
import sqlite3
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest
from psycopg import errors

from node.conflicts.fresh import raw_changes
from node.engines.mariadb.engine import MariaEngine
from node.engines.mariadb.values import to_mariadb
from node.engines.postgres.engine import PostgresEngine
from node.engines.postgres.values import to_pg
from node.engines.sqlite.engine import SQLiteEngine
from node.engines.sqlite.values import to_sqlite
from node.model import CapturedChunk, RawInserts
from ringsync.commands.demo.mariadb import LocalMariaDB
from ringsync.commands.demo.postgres import LocalPostgres
from tests.mariadb_fixtures import connect as mariadb_connect

TYPED_COLUMNS = ("id", "b", "i", "d", "f", "t", "by", "ts", "dt", "u", "j")
TYPED_SQLITE_DDL = """CREATE TABLE typed(id INTEGER PRIMARY KEY, b BOOLEAN, i INTEGER,
  d DECIMAL_TEXT, f REAL, t TEXT, "by" BLOB, ts TIMESTAMPTZ, dt DATE, u UUID, j JSON);
CREATE TABLE kv(k TEXT PRIMARY KEY, v INTEGER)"""
TYPED_POSTGRES_DDL = """CREATE TABLE typed(id bigint PRIMARY KEY, b boolean, i bigint, d numeric,
  f double precision, t text, "by" bytea, ts timestamptz, dt date, u uuid, j jsonb);
CREATE TABLE kv(k text PRIMARY KEY, v bigint)"""
TYPED_MARIADB_DDL = """CREATE TABLE typed(id BIGINT PRIMARY KEY, b BOOLEAN, i BIGINT,
  d DECIMAL(65, 30), f DOUBLE, t LONGTEXT, `by` LONGBLOB, ts DATETIME(6), dt DATE, u UUID,
  j JSON) ENGINE=InnoDB;
CREATE TABLE kv(k VARCHAR(255) PRIMARY KEY, v BIGINT) ENGINE=InnoDB"""
TYPED_TABLES = ("typed", "kv")


class Campus:
    """What every engine's campus class offers a contract."""

    TABLES: tuple[str, ...] = TYPED_TABLES
    SQLITE_DDL: str = TYPED_SQLITE_DDL
    POSTGRES_DDL: str = TYPED_POSTGRES_DDL
    MARIADB_DDL: str = TYPED_MARIADB_DDL
    campus: str

    def new_engine(self, sets: dict[str, str] | None = None) -> Any:
        """Another engine on the same database (not opened)."""
        raise NotImplementedError

    def typed_rows(self) -> list[tuple[Any, ...]]:
        """Rows of every canonical type at their edges (tests/contract/typed.py)."""
        from tests.contract.typed import TYPED_ROWS

        return TYPED_ROWS

    def _opened(self, sets: dict[str, str] | None) -> Iterator[Any]:
        engine = self.new_engine(sets)
        engine.open()
        engine.source.start_capture(0)
        yield engine
        engine.close()

    @pytest.fixture
    def engine(self, db: None) -> Iterator[Any]:
        yield from self._opened(None)

    def app_write(self, *statements: str) -> None:
        raise NotImplementedError

    def app_rows(self, table: str = "kv") -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def app_insert(self, table: str, width: int, rows: list[tuple[Any, ...]]) -> None:
        """Canonical rows inserted by an application, in one transaction."""
        raise NotImplementedError

    def capture_all(self, engine: Any) -> list[Any]:
        raise NotImplementedError

    def assert_refused_error(self, error: BaseException, message: str) -> None:
        raise NotImplementedError


class SQLiteCampus(Campus):
    @pytest.fixture
    def db(self, tmp_path: Path) -> None:
        self.path = tmp_path / "c.db"
        self.campus = "c"
        conn = sqlite3.connect(self.path)
        conn.executescript(self.SQLITE_DDL)
        conn.close()

    def new_engine(self, sets: dict[str, str] | None = None) -> SQLiteEngine:
        return SQLiteEngine(self.path, self.TABLES, self.campus, sets=sets)

    def app_write(self, *statements: str) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            conn.execute("BEGIN")
            for s in statements:
                conn.execute(s)
            conn.execute("COMMIT")
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            conn.close()

    def app_rows(self, table: str = "kv") -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(self.path)
        try:
            return sorted(conn.execute(f"SELECT * FROM {table}").fetchall())
        finally:
            conn.close()

    def app_insert(self, table: str, width: int, rows: list[tuple[Any, ...]]) -> None:
        conn = sqlite3.connect(self.path)
        marks = ", ".join("?" for _ in range(width))
        conn.executemany(f"INSERT INTO {table} VALUES ({marks})",
                         [tuple(to_sqlite(v) for v in r) for r in rows])
        conn.commit()
        conn.close()

    def capture_all(self, engine: SQLiteEngine) -> list[Any]:
        return engine.source.capture(0, 1000)

    def assert_refused_error(self, error: BaseException, message: str) -> None:
        assert isinstance(error, sqlite3.IntegrityError)
        assert str(error) == message


def drop_slots(dsn: str, timeout: float = 30.0) -> None:
    """Drop the test database's replication slots. On a loaded machine a
    closed engine's walsender may still hold its slot for a moment: end it
    (this test server's own backend) and try again, within ``timeout``."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            try:
                conn.execute("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                             "WHERE database = current_database() AND active_pid IS NOT NULL")
                conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM "
                             "pg_replication_slots WHERE database = current_database()")
                return
            except errors.ObjectInUse:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


def as_changes(chunk: CapturedChunk, engine: Any) -> CapturedChunk:
    """A captured chunk with its COPY text runs (if any) as INSERT changes."""
    if not chunk.raw:
        return chunk
    shapes = engine.shapes()
    changes = [c for table, rows, text in chunk.raw
               for c in raw_changes(RawInserts(table, rows, text), shapes[table])]
    return dataclasses.replace(chunk, changes=changes, raw=None)


class PostgresCampus(Campus):
    @pytest.fixture
    def db(self, pg_server: LocalPostgres) -> Iterator[None]:
        # Slots are the server's, not a database's: every test gets a campus
        # (and so a slot name) of its own.
        db = f"c_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{db}"')
        self.dsn = pg_server.dsn.replace("dbname=postgres", f"dbname={db}")
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            for statement in self.POSTGRES_DDL.split(";"):
                conn.execute(statement)
        self.campus = db.replace("_", "-")
        yield
        drop_slots(self.dsn)

    def new_engine(self, sets: dict[str, str] | None = None) -> PostgresEngine:
        return PostgresEngine(self.dsn, self.TABLES, self.campus, sets=sets)

    def app_write(self, *statements: str) -> None:
        with psycopg.connect(self.dsn) as conn:
            for s in statements:
                conn.execute(s)

    def app_rows(self, table: str = "kv") -> list[tuple[Any, ...]]:
        with psycopg.connect(self.dsn) as conn:
            return sorted(conn.execute(f"SELECT * FROM {table}").fetchall())

    def app_insert(self, table: str, width: int, rows: list[tuple[Any, ...]]) -> None:
        marks = ", ".join("%s" for _ in range(width))
        with psycopg.connect(self.dsn) as conn:
            conn.cursor().executemany(f"INSERT INTO {table} VALUES ({marks})",
                                      [tuple(to_pg(v) for v in r) for r in rows])

    def capture_all(self, engine: PostgresEngine) -> list[Any]:
        """Chunks as capture hands them over, rows sent as COPY text decoded
        (node.rawcopy) so that contracts compare canonical values."""
        out: list[Any] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            got = engine.source.capture(0, 1000)
            out += got
            if got == [] and out:
                break
        return [as_changes(c, engine) for c in out]

    def assert_refused_error(self, error: BaseException, message: str) -> None:
        assert isinstance(error, errors.ReadOnlySqlTransaction)
        assert error.sqlstate == "25006"
        assert error.diag.message_primary == message


class MariaDBCampus(Campus):
    """A campus database on the session's MariaDB server (a database of its
    own per test: ``mariadb_db``); the application writes through pymysql."""

    @pytest.fixture
    def db(self, mariadb_server: LocalMariaDB, mariadb_db: str) -> None:
        self.server, self.database = mariadb_server, mariadb_db
        self.campus = mariadb_db.replace("_", "-")
        conn = mariadb_connect(mariadb_server, mariadb_db)
        try:
            with conn.cursor() as cur:
                for statement in self.MARIADB_DDL.split(";"):
                    cur.execute(statement)
        finally:
            conn.close()

    def typed_rows(self) -> list[tuple[Any, ...]]:
        """MariaDB's DOUBLE holds no infinity: the largest finite double of the
        same sign stands in (a change carrying one is refused, see
        tests/integration/mariadb)."""
        return [tuple(math.copysign(sys.float_info.max, v)
                      if isinstance(v, float) and math.isinf(v) else v for v in row)
                for row in super().typed_rows()]

    def new_engine(self, sets: dict[str, str] | None = None) -> MariaEngine:
        return MariaEngine(self.server.url(database=self.database), self.TABLES, self.campus,
                           sets=sets)

    def app_write(self, *statements: str) -> None:
        conn = mariadb_connect(self.server, self.database)
        try:
            with conn.cursor() as cur:
                cur.execute("BEGIN")
                for s in statements:
                    cur.execute(s)
                cur.execute("COMMIT")
        finally:
            conn.close()

    def app_rows(self, table: str = "kv") -> list[tuple[Any, ...]]:
        conn = mariadb_connect(self.server, self.database)
        try:
            with conn.cursor() as cur:
                cur.execute(f"SELECT * FROM {table}")
                return sorted(tuple(r) for r in cur.fetchall())
        finally:
            conn.close()

    def app_insert(self, table: str, width: int, rows: list[tuple[Any, ...]]) -> None:
        conn = mariadb_connect(self.server, self.database, autocommit=False)
        marks = ", ".join("%s" for _ in range(width))
        try:
            with conn.cursor() as cur:
                cur.executemany(f"INSERT INTO {table} VALUES ({marks})",
                                [tuple(to_mariadb(v) for v in r) for r in rows])
            conn.commit()
        finally:
            conn.close()

    def capture_all(self, engine: MariaEngine) -> list[Any]:
        """Chunks the binlog reader hands over until it has read the whole log."""
        end = engine.source.commit_position()
        out: list[Any] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            out += engine.source.capture(0, 1000)
            if engine.source.captured_through() >= end:
                return out + engine.source.capture(0, 1000)
        raise AssertionError(f"capture did not reach {end} within 30 s: {out}")

    def assert_refused_error(self, error: BaseException, message: str) -> None:
        """A fence guard's SIGNAL: SQLSTATE 45000, error 1644, the message as is."""
        assert isinstance(error, pymysql.err.OperationalError)
        assert error.args == (1644, message)
