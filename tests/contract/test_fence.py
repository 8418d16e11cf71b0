"""Database-enforced fencing, on every engine.

Each test writes through a plain application connection (``sqlite3`` on the
file, ``psycopg`` on the DSN), never through the engine, so what is asserted
is what the database itself enforces. PostgreSQL runs on a real server made
with initdb; SQLite on a file.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors

from node.conflicts.driver import Resolver, TxnInfo
from node.engines.base import fence_message
from node.engines.postgres import PostgresEngine
from node.engines.sqlite import SQLiteEngine
from node.hlc import HybridClock
from node.model import Change, Op
from ringsync.conflict_policy import ConflictSettings
from ringsync.demo.cluster import free_port
from ringsync.demo.postgres import LocalPostgres
from ringsync.errors import EngineError

TABLES = ("kv", "other")
SQLITE_DDL = """CREATE TABLE kv(k TEXT PRIMARY KEY, v INTEGER);
CREATE TABLE other(id INTEGER PRIMARY KEY, note TEXT)"""
POSTGRES_DDL = """CREATE TABLE kv(k text PRIMARY KEY, v bigint);
CREATE TABLE other(id bigint PRIMARY KEY, note text)"""
WRITES = {
    "insert": "INSERT INTO kv VALUES ('new', 2)",
    "update": "UPDATE kv SET v = 10 WHERE k = 'a'",
    "delete": "DELETE FROM kv WHERE k = 'a'",
}


@pytest.fixture(scope="module")
def pg_server() -> Iterator[LocalPostgres]:
    pg = LocalPostgres.create(None, free_port())
    pg.start()
    yield pg
    pg.remove()


class FenceContract:
    """Subclasses provide ``engine`` (opened, capture started), ``campus``,
    ``app_write``, ``app_rows``, ``capture_all`` and ``assert_refused_error``."""

    campus: str

    def app_write(self, *statements: str) -> None:
        raise NotImplementedError

    def app_rows(self, table: str = "kv") -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def capture_all(self, engine: Any) -> list[Any]:
        raise NotImplementedError

    def assert_refused_error(self, error: BaseException) -> None:
        raise NotImplementedError

    def assert_refused(self, *statements: str) -> None:
        with pytest.raises(Exception) as caught:
            self.app_write(*statements)
        self.assert_refused_error(caught.value)
        assert fence_message(self.campus) in str(caught.value)

    def apply(self, engine: Any, changes: list[Change], seq: int = 1) -> None:
        with engine.apply_session() as s:
            s.apply(changes)
            s.advance("x", seq)

    def test_unfenced_by_default(self, engine: Any) -> None:
        assert engine.fence_state() == math.inf
        self.app_write("INSERT INTO kv VALUES ('a', 1)")
        assert self.app_rows() == [("a", 1)]

    def test_fenced_refuses_app_writes_but_not_apply(self, engine: Any) -> None:
        self.app_write("INSERT INTO kv VALUES ('a', 1)")
        until = time.time() - 1
        engine.set_fence(until)
        assert engine.fence_state() == until
        for statement in WRITES.values():
            self.assert_refused(statement)
        assert self.app_rows() == [("a", 1)]
        self.apply(engine, [Change("kv", Op.INSERT, new=("applied", 7))])
        assert sorted(self.app_rows()) == [("a", 1), ("applied", 7)]

    def test_every_node_write_path_passes_while_fenced(self, engine: Any) -> None:
        """Conflict-driven apply of a long run (PostgreSQL: COPY into a staging
        table, then INSERT ... SELECT), deletes, and an initial load's clear and
        copy, all through apply sessions."""
        self.app_write("INSERT INTO kv VALUES ('a', 1)", "INSERT INTO other VALUES (1, 'x')")
        engine.set_fence(time.time() - 1)
        resolver = Resolver(dict(engine.shapes()), ConflictSettings(), HybridClock())
        rows = [(f"k{i:03}", i) for i in range(100)]
        with engine.apply_session() as s:
            resolver.apply_many(s, [(TxnInfo("x", 1, 5, {}, False),
                                     [Change("kv", Op.INSERT, new=r) for r in rows])])
            s.advance("x", 1)
        assert len(self.app_rows()) == 101
        with engine.apply_session() as s:
            resolver.apply_many(s, [(TxnInfo("x", 2, 6, {"x": 1}, False),
                                     [Change("kv", Op.DELETE, old=r) for r in rows[:70]])])
            s.advance("x", 2)
        assert len(self.app_rows()) == 31
        with engine.apply_session() as s:  # a joining campus replacing its data
            s.clear("other")
            s.apply([Change("other", Op.INSERT, new=(2, "copied"))])
            s.mark_base_versions()
        assert self.app_rows("other") == [(2, "copied")]
        self.assert_refused("DELETE FROM other")

    def test_an_operators_local_write_is_refused_while_fenced(self, engine: Any) -> None:
        engine.set_fence(time.time() - 1)
        with pytest.raises(EngineError, match="is fenced"):
            engine.write_local("kv", ("op",), ("op", 1))
        assert self.app_rows() == []

    def test_unfencing_reopens_writes(self, engine: Any) -> None:
        engine.set_fence(time.time() - 1)
        self.assert_refused(WRITES["insert"])
        engine.set_fence(math.inf)
        assert engine.fence_state() == math.inf
        self.app_write(WRITES["insert"])
        assert self.app_rows() == [("new", 2)]

    def test_the_fence_closes_by_itself_when_its_time_comes(self, engine: Any) -> None:
        until = time.time() + 1.5
        engine.set_fence(until)
        self.app_write("INSERT INTO kv VALUES ('a', 1)")
        while time.time() < until + 0.5:
            time.sleep(0.1)
        self.assert_refused("INSERT INTO kv VALUES ('b', 2)")
        assert self.app_rows() == [("a", 1)]

    def test_the_fence_is_kept_across_a_restart(self, engine: Any) -> None:
        until = time.time() - 1
        engine.set_fence(until)
        engine.close()
        engine.open()
        assert engine.fence_state() == until
        self.assert_refused(WRITES["insert"])

    def test_commit_position_covers_every_committed_transaction(self, engine: Any) -> None:
        self.app_write("INSERT INTO kv VALUES ('a', 1)")
        self.app_write("UPDATE kv SET v = 2 WHERE k = 'a'")
        chunks = self.capture_all(engine)
        assert len(chunks) >= 1
        last = max(c.position for c in chunks)
        position = engine.commit_position()
        assert position >= last
        # capture confirms it has passed the position with nothing more to capture
        deadline = time.monotonic() + 10
        while engine.captured_through() < position and time.monotonic() < deadline:
            assert engine.capture(last, 1000) == []
        assert engine.captured_through() >= position


class TestSQLiteFence(FenceContract):
    @pytest.fixture
    def engine(self, tmp_path: Path) -> Iterator[SQLiteEngine]:
        self.path = tmp_path / "c.db"
        self.campus = "c"
        conn = sqlite3.connect(self.path)
        conn.executescript(SQLITE_DDL)
        conn.close()
        engine = SQLiteEngine(self.path, TABLES, self.campus)
        engine.open()
        engine.start_capture(0)
        yield engine
        engine.close()

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

    def capture_all(self, engine: SQLiteEngine) -> list[Any]:
        return engine.capture(0, 1000)

    def assert_refused_error(self, error: BaseException) -> None:
        assert isinstance(error, sqlite3.IntegrityError)
        assert str(error) == fence_message(self.campus)

    def test_end_app_sessions_has_nothing_to_end(self, engine: SQLiteEngine) -> None:
        assert engine.end_app_sessions() == 0

    def test_an_open_connection_is_refused_on_its_next_write(
            self, engine: SQLiteEngine) -> None:
        """No session to end: a connection that wrote before the fence is
        refused on its next write, inside a transaction too (only the statement
        is undone). Setting the fence needs the write lock, so it waits for a
        writing transaction to end."""
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            conn.execute("INSERT INTO kv VALUES ('before', 1)")
            engine.set_fence(time.time() - 1)
            conn.execute("BEGIN")
            with pytest.raises(sqlite3.IntegrityError, match="is fenced"):
                conn.execute("INSERT INTO kv VALUES ('after', 2)")
            assert conn.in_transaction
            conn.execute("COMMIT")
        finally:
            conn.close()
        assert self.app_rows() == [("before", 1)]


class TestPostgresFence(FenceContract):
    @pytest.fixture
    def engine(self, pg_server: LocalPostgres, request: Any) -> Iterator[PostgresEngine]:
        db = f"f_{request.node.name.lower().replace('test_', '')[:40]}"
        with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}"')
            conn.execute(f'CREATE DATABASE "{db}"')
        self.dsn = pg_server.dsn.replace("dbname=postgres", f"dbname={db}")
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            for statement in POSTGRES_DDL.split(";"):
                conn.execute(statement)
        self.campus = db.replace("_", "-")
        engine = PostgresEngine(self.dsn, TABLES, self.campus)
        engine.open()
        engine.start_capture(0)
        yield engine
        engine.close()
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                         "WHERE database = current_database()")

    def app_write(self, *statements: str) -> None:
        with psycopg.connect(self.dsn) as conn:
            for s in statements:
                conn.execute(s)

    def app_rows(self, table: str = "kv") -> list[tuple[Any, ...]]:
        with psycopg.connect(self.dsn) as conn:
            return sorted(conn.execute(f"SELECT * FROM {table}").fetchall())

    def capture_all(self, engine: PostgresEngine) -> list[Any]:
        out: list[Any] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            got = engine.capture(0, 1000)
            out += got
            if got == [] and out:
                break
        return out

    def assert_refused_error(self, error: BaseException) -> None:
        assert isinstance(error, errors.ReadOnlySqlTransaction)
        assert error.sqlstate == "25006"
        assert error.diag.message_primary == fence_message(self.campus)

    def test_truncate_is_refused_too(self, engine: PostgresEngine) -> None:
        self.app_write("INSERT INTO kv VALUES ('a', 1)")
        engine.set_fence(time.time() - 1)
        self.assert_refused("TRUNCATE kv")
        assert self.app_rows() == [("a", 1)]

    def test_an_unprivileged_application_role_is_told_it_is_fenced(
            self, engine: PostgresEngine) -> None:
        """The guard reads ringsync.fence as the node's role (SECURITY DEFINER):
        an application role needs no access to the ringsync schema."""
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("DROP ROLE IF EXISTS fence_app")
            conn.execute("CREATE ROLE fence_app LOGIN")
            conn.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON kv TO fence_app")
        try:
            app_dsn = self.dsn.replace("user=ringsync", "user=fence_app")
            with psycopg.connect(app_dsn) as conn:
                conn.execute("INSERT INTO kv VALUES ('a', 1)")
            engine.set_fence(time.time() - 1)
            with pytest.raises(errors.ReadOnlySqlTransaction) as caught, \
                    psycopg.connect(app_dsn) as conn:
                conn.execute("UPDATE kv SET v = 2")
            assert caught.value.diag.message_primary == fence_message(self.campus)
        finally:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                conn.execute("DROP OWNED BY fence_app")
                conn.execute("DROP ROLE fence_app")

    def test_end_app_sessions_terminates_application_connections(
            self, engine: PostgresEngine) -> None:
        idle = psycopg.connect(self.dsn, autocommit=True)
        try:
            idle.execute("SELECT 1")
            ended = engine.end_app_sessions()
            assert ended >= 1
            with pytest.raises(psycopg.OperationalError):
                idle.execute("SELECT 1")
        finally:
            idle.close()
        assert engine.row_counts() == {"kv": 0, "other": 0}
        self.apply(engine, [Change("kv", Op.INSERT, new=("applied", 7))])
        assert engine.rows("kv") == [("applied", 7)]
        assert engine.end_app_sessions() == 0
