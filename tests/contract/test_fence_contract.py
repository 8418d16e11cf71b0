"""Database-enforced fencing, on every engine.

Each test writes through a plain application connection (``sqlite3`` on the
file, ``psycopg`` on the DSN, ``pymysql`` on the MariaDB database), never
through the engine, so what is asserted is what the database itself enforces
(tests/contract/campuses.py). PostgreSQL and MariaDB run on real servers of
the session's own; SQLite on a file. The Fence role's contract;
``end_app_sessions`` and what differs by engine (TRUNCATE, privileges,
waiting out a set's writers, a commit after a set's close) are tested per
engine.
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pymysql
import pytest
from psycopg import errors
from pymysqlreplication import BinLogStreamReader

from node.conflicts.driver import Resolver, TxnInfo
from node.engines.base import SetFence, fence_message, set_fence_message
from node.engines.mariadb.engine import MariaEngine
from node.engines.postgres.engine import PostgresEngine
from node.engines.sqlite.engine import SQLiteEngine
from node.hlc import HybridClock
from node.model import Change, Op
from ringsync.commands.demo import mariadb
from ringsync.conflict_policy import ConflictSettings
from ringsync.errors import EngineError
from tests.contract.campuses import Campus, MariaDBCampus, PostgresCampus, SQLiteCampus
from tests.mariadb_fixtures import connect as mariadb_connect

TABLES = ("kv", "other")
SQLITE_DDL = """CREATE TABLE kv(k TEXT PRIMARY KEY, v INTEGER);
CREATE TABLE other(id INTEGER PRIMARY KEY, note TEXT)"""
POSTGRES_DDL = """CREATE TABLE kv(k text PRIMARY KEY, v bigint);
CREATE TABLE other(id bigint PRIMARY KEY, note text)"""
MARIADB_DDL = """CREATE TABLE kv(k VARCHAR(255) PRIMARY KEY, v BIGINT) ENGINE=InnoDB;
CREATE TABLE other(id BIGINT PRIMARY KEY, note TEXT) ENGINE=InnoDB"""
WRITES = {
    "insert": "INSERT INTO kv VALUES ('new', 2)",
    "update": "UPDATE kv SET v = 10 WHERE k = 'a'",
    "delete": "DELETE FROM kv WHERE k = 'a'",
}
SETS = {"kv": "beds"}  # "other" is in no set


class FenceContract(Campus):
    """Each test class mixes this with an engine's campus (tests/contract/campuses.py);
    ``engine`` (opened, capture started) comes from there, ``set_engine`` (the
    same with ``SETS``) is built here."""

    TABLES = TABLES
    SQLITE_DDL = SQLITE_DDL
    POSTGRES_DDL = POSTGRES_DDL
    MARIADB_DDL = MARIADB_DDL

    @pytest.fixture
    def set_engine(self, db: None) -> Iterator[Any]:
        yield from self._opened(SETS)

    def assert_refused(self, *statements: str, set_name: str | None = None) -> None:
        message = (fence_message(self.campus) if set_name is None
                   else set_fence_message(self.campus, set_name))
        with pytest.raises(Exception) as caught:
            self.app_write(*statements)
        self.assert_refused_error(caught.value, message)
        assert message in str(caught.value)

    def apply(self, engine: Any, changes: list[Change], seq: int = 1) -> None:
        with engine.target.apply_session() as s:
            s.apply(changes)
            s.advance("x", seq)

    def test_unfenced_by_default(self, engine: Any) -> None:
        assert engine.fence.fence_state() == math.inf
        self.app_write("INSERT INTO kv VALUES ('a', 1)")
        assert self.app_rows() == [("a", 1)]

    def test_fenced_refuses_app_writes_but_not_apply(self, engine: Any) -> None:
        self.app_write("INSERT INTO kv VALUES ('a', 1)")
        until = time.time() - 1
        engine.fence.set_fence(until)
        assert engine.fence.fence_state() == until
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
        engine.fence.set_fence(time.time() - 1)
        resolver = Resolver(dict(engine.shapes()), ConflictSettings(), HybridClock())
        rows = [(f"k{i:03}", i) for i in range(100)]
        with engine.target.apply_session() as s:
            resolver.apply_many(s, [(TxnInfo("x", 1, 5, {}, False),
                                     [Change("kv", Op.INSERT, new=r) for r in rows])])
            s.advance("x", 1)
        assert len(self.app_rows()) == 101
        with engine.target.apply_session() as s:
            resolver.apply_many(s, [(TxnInfo("x", 2, 6, {"x": 1}, False),
                                     [Change("kv", Op.DELETE, old=r) for r in rows[:70]])])
            s.advance("x", 2)
        assert len(self.app_rows()) == 31
        with engine.target.apply_session() as s:  # a joining campus replacing its data
            s.clear("other")
            s.apply([Change("other", Op.INSERT, new=(2, "copied"))])
            s.mark_base_versions()
        assert self.app_rows("other") == [(2, "copied")]
        self.assert_refused("DELETE FROM other")

    def test_an_operators_local_write_is_refused_while_fenced(self, engine: Any) -> None:
        engine.fence.set_fence(time.time() - 1)
        with pytest.raises(EngineError, match="is fenced"):
            engine.store.write_local("kv", ("op",), ("op", 1))
        assert self.app_rows() == []

    def test_unfencing_reopens_writes(self, engine: Any) -> None:
        engine.fence.set_fence(time.time() - 1)
        self.assert_refused(WRITES["insert"])
        engine.fence.set_fence(math.inf)
        assert engine.fence.fence_state() == math.inf
        self.app_write(WRITES["insert"])
        assert self.app_rows() == [("new", 2)]

    def test_the_fence_closes_by_itself_when_its_time_comes(self, engine: Any) -> None:
        until = time.time() + 1.5
        engine.fence.set_fence(until)
        self.app_write("INSERT INTO kv VALUES ('a', 1)")
        while time.time() < until + 0.5:
            time.sleep(0.1)
        self.assert_refused("INSERT INTO kv VALUES ('b', 2)")
        assert self.app_rows() == [("a", 1)]

    def test_the_fence_is_kept_across_a_restart(self, engine: Any) -> None:
        until = time.time() - 1
        engine.fence.set_fence(until)
        engine.close()
        engine.open()
        assert engine.fence.fence_state() == until
        self.assert_refused(WRITES["insert"])

    # -- single-writer sets --------------------------------------------------

    def test_a_set_table_is_closed_at_a_fresh_install(self, set_engine: Any) -> None:
        assert set_engine.fence.fence_state() == math.inf
        assert set_engine.fence.set_fence_states() == {"beds": SetFence(0.0, 0, 0)}
        self.apply(set_engine, [Change("kv", Op.INSERT, new=("a", 1))])  # SQLite: rows to hit
        for statement in WRITES.values():
            self.assert_refused(statement, set_name="beds")
        self.app_write("INSERT INTO other VALUES (1, 'x')")  # in no set: the campus fence
        assert self.app_rows() == [("a", 1)]
        assert self.app_rows("other") == [(1, "x")]
        with pytest.raises(EngineError, match="not the writer of single-writer set beds"):
            set_engine.store.write_local("kv", ("op",), ("op", 1))
        assert self.app_rows() == [("a", 1)]

    def test_an_open_set_takes_writes_whatever_the_campus_fence_says(
            self, set_engine: Any) -> None:
        until = time.time() + 60
        set_engine.fence.set_set_fence("beds", until, 7)
        assert set_engine.fence.set_fence_states() == {"beds": SetFence(until, 7, 0)}
        self.app_write("INSERT INTO kv VALUES ('a', 1)")
        set_engine.store.write_local("kv", ("op",), ("op", 1))
        set_engine.fence.set_fence(0)  # the campus is fenced: not the set's tables
        self.app_write("UPDATE kv SET v = 2 WHERE k = 'a'")
        self.assert_refused("INSERT INTO other VALUES (1, 'x')")
        assert sorted(self.app_rows()) == [("a", 2), ("op", 1)]
        set_engine.fence.set_set_fence("beds", 0, 8)
        assert set_engine.fence.set_fence_states() == {"beds": SetFence(0.0, 8, 0)}
        for statement in WRITES.values():
            self.assert_refused(statement, set_name="beds")
        set_engine.fence.set_fence(math.inf)  # unfencing the campus does not open the set
        self.assert_refused(WRITES["insert"], set_name="beds")
        self.app_write("INSERT INTO other VALUES (1, 'x')")
        assert sorted(self.app_rows()) == [("a", 2), ("op", 1)]

    def test_an_open_set_closes_by_itself_when_its_time_comes(self, set_engine: Any) -> None:
        until = time.time() + 1.5
        set_engine.fence.set_set_fence("beds", until, 1)
        self.app_write("INSERT INTO kv VALUES ('a', 1)")
        while time.time() < until + 0.5:
            time.sleep(0.1)
        self.assert_refused("INSERT INTO kv VALUES ('b', 2)", set_name="beds")

    def test_a_set_fence_time_is_a_number(self, set_engine: Any) -> None:
        with pytest.raises(EngineError, match="NaN"):
            set_engine.fence.set_set_fence("beds", math.nan, 1)
        assert set_engine.fence.set_fence_states() == {"beds": SetFence(0.0, 0, 0)}

    def test_apply_writes_a_closed_set_and_marks_it_reconciled_on_commit(
            self, set_engine: Any) -> None:
        set_engine.fence.set_set_fence("beds", 0, 4)
        with pytest.raises(RuntimeError), set_engine.target.apply_session() as s:
            s.apply([Change("kv", Op.INSERT, new=("lost", 1))])
            s.mark_set_reconciled("beds", 4)
            raise RuntimeError("the session fails before commit")
        assert set_engine.fence.set_fence_states()["beds"] == SetFence(0.0, 4, 0)
        assert self.app_rows() == []
        with set_engine.target.apply_session() as s:
            s.apply([Change("kv", Op.INSERT, new=("applied", 1))])
            s.mark_set_reconciled("beds", 4)
            s.advance("x", 1)
        assert set_engine.fence.set_fence_states()["beds"] == SetFence(0.0, 4, 4)
        assert self.app_rows() == [("applied", 1)]
        self.assert_refused("DELETE FROM kv", set_name="beds")

    def test_set_fence_rows_survive_a_restart(self, set_engine: Any) -> None:
        until = time.time() + 60
        set_engine.fence.set_set_fence("beds", until, 5)
        with set_engine.target.apply_session() as s:
            s.mark_set_reconciled("beds", 3)
        set_engine.close()
        set_engine.open()
        assert set_engine.fence.set_fence_states() == {"beds": SetFence(until, 5, 3)}
        self.app_write("INSERT INTO kv VALUES ('a', 1)")
        set_engine.fence.set_set_fence("beds", 0, 6)
        set_engine.close()
        set_engine.open()
        assert set_engine.fence.set_fence_states() == {"beds": SetFence(0.0, 6, 3)}
        self.assert_refused(WRITES["update"], set_name="beds")

    def test_a_table_moving_between_sets_changes_guard(self, set_engine: Any) -> None:
        set_engine.close()
        for sets, refused_by in (({}, None), ({"kv": "rooms"}, "rooms"),
                                 ({"kv": "beds", "other": "beds"}, "beds"), ({}, None)):
            engine = self.new_engine(sets)
            engine.open()
            try:
                engine.fence.set_fence(time.time() + 60)  # the campus fence is open
                if refused_by is None:
                    self.app_write("INSERT INTO kv VALUES ('a', 1)", "DELETE FROM kv")
                    self.app_write("INSERT INTO other VALUES (1, 'x')", "DELETE FROM other")
                    engine.fence.set_fence(0)
                    self.assert_refused("INSERT INTO kv VALUES ('a', 1)")
                    self.assert_refused("INSERT INTO other VALUES (1, 'x')")
                else:
                    self.assert_refused("INSERT INTO kv VALUES ('a', 1)", set_name=refused_by)
                    if "other" in sets:
                        self.assert_refused("INSERT INTO other VALUES (1, 'x')",
                                            set_name=refused_by)
                    engine.fence.set_set_fence(refused_by, time.time() + 60, 1)
                    engine.fence.set_fence(0)  # the campus fence does not reach set tables
                    self.app_write("INSERT INTO kv VALUES ('a', 1)", "DELETE FROM kv")
            finally:
                engine.fence.set_fence(math.inf)
                engine.close()
        states = self.new_engine({})
        states.open()
        try:  # rows of sets no longer configured are kept (their epochs too)
            assert set(states.fence.set_fence_states()) == {"beds", "rooms"}
        finally:
            states.close()
        assert self.app_rows() == [] and self.app_rows("other") == []


class TestSQLiteFence(SQLiteCampus, FenceContract):
    def test_end_app_sessions_has_nothing_to_end(self, engine: SQLiteEngine) -> None:
        assert engine.fence.end_app_sessions() == 0

    def test_an_open_connection_is_refused_on_its_next_write(
            self, engine: SQLiteEngine) -> None:
        """No session to end: a connection that wrote before the fence is
        refused on its next write, inside a transaction too (only the statement
        is undone). Setting the fence needs the write lock, so it waits for a
        writing transaction to end."""
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            conn.execute("INSERT INTO kv VALUES ('before', 1)")
            engine.fence.set_fence(time.time() - 1)
            conn.execute("BEGIN")
            with pytest.raises(sqlite3.IntegrityError, match="is fenced"):
                conn.execute("INSERT INTO kv VALUES ('after', 2)")
            assert conn.in_transaction
            conn.execute("COMMIT")
        finally:
            conn.close()
        assert self.app_rows() == [("before", 1)]


class TestPostgresFence(PostgresCampus, FenceContract):
    def test_truncate_is_refused_too(self, engine: PostgresEngine) -> None:
        self.app_write("INSERT INTO kv VALUES ('a', 1)")
        engine.fence.set_fence(time.time() - 1)
        self.assert_refused("TRUNCATE kv")
        assert self.app_rows() == [("a", 1)]

    @contextmanager
    def app_role(self, role: str) -> Iterator[str]:
        """An application role that may write kv and nothing of ringsync's; its DSN."""
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f"DROP ROLE IF EXISTS {role}")
            conn.execute(f"CREATE ROLE {role} LOGIN")
            conn.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON kv TO {role}")
        try:
            yield self.dsn.replace("user=ringsync", f"user={role}")
        finally:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                conn.execute(f"DROP OWNED BY {role}")
                conn.execute(f"DROP ROLE {role}")

    def test_an_unprivileged_application_role_is_told_it_is_fenced(
            self, engine: PostgresEngine) -> None:
        """The guard reads ringsync.fence as the node's role (SECURITY DEFINER):
        an application role needs no access to the ringsync schema."""
        with self.app_role("fence_app") as app_dsn:
            with psycopg.connect(app_dsn) as conn:
                conn.execute("INSERT INTO kv VALUES ('a', 1)")
            engine.fence.set_fence(time.time() - 1)
            with pytest.raises(errors.ReadOnlySqlTransaction) as caught, \
                    psycopg.connect(app_dsn) as conn:
                conn.execute("UPDATE kv SET v = 2")
            assert caught.value.diag.message_primary == fence_message(self.campus)

    def test_end_app_sessions_terminates_application_connections(
            self, engine: PostgresEngine) -> None:
        idle = psycopg.connect(self.dsn, autocommit=True)
        try:
            idle.execute("SELECT 1")
            ended = engine.fence.end_app_sessions()
            assert ended >= 1
            with pytest.raises(psycopg.OperationalError):
                idle.execute("SELECT 1")
        finally:
            idle.close()
        assert engine.inspect.row_counts() == {"kv": 0, "other": 0}
        self.apply(engine, [Change("kv", Op.INSERT, new=("applied", 7))])
        assert engine.inspect.rows("kv") == [("applied", 7)]
        assert engine.fence.end_app_sessions() == 0

    def test_truncate_of_a_closed_set_table_is_refused(self, set_engine: PostgresEngine) -> None:
        self.assert_refused("TRUNCATE kv", set_name="beds")
        set_engine.fence.set_set_fence("beds", time.time() + 60, 1)
        self.app_write("INSERT INTO kv VALUES ('a', 1)")
        # Its own transaction: PostgreSQL refuses TRUNCATE after writes in the same
        # one while their deferred (commit-time) checks are pending.
        self.app_write("TRUNCATE kv")

    def test_closing_a_set_waits_out_a_transaction_that_already_wrote(
            self, set_engine: PostgresEngine) -> None:
        """A drain's close must not leave a writer that passed the guard able to
        commit after the move: wait_set_writers blocks until it ends."""
        set_engine.fence.set_set_fence("beds", time.time() + 60, 1)
        with psycopg.connect(self.dsn) as app:
            app.execute("INSERT INTO kv VALUES ('open', 1)")  # the transaction stays open
            set_engine.fence.set_set_fence("beds", 0.0, 1)
            with pytest.raises(EngineError, match="still open"):
                set_engine.fence.wait_set_writers("beds", timeout=0.3)
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                app.commit()  # and its commit is refused: the set closed meanwhile
        set_engine.fence.wait_set_writers("beds", timeout=0.3)
        set_engine.fence.wait_set_writers("no-such-set")
        assert ("open", 1) not in self.app_rows()

    def test_a_set_write_cannot_commit_after_the_set_closed(
            self, set_engine: PostgresEngine) -> None:
        """The statement guard let the insert in; the commit-time check refuses
        the commit once the set has closed (a killed writer's open transaction)."""
        set_engine.fence.set_set_fence("beds", time.time() + 60, 1)
        with psycopg.connect(self.dsn) as app:
            app.execute("INSERT INTO kv VALUES ('late', 1)")
            set_engine.fence.set_set_fence("beds", 0.0, 1)
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction,
                               match="not the writer of single-writer set beds"):
                app.commit()
        assert ("late", 1) not in self.app_rows()
        with set_engine.target.apply_session() as s:  # apply still passes at commit
            s.apply([Change("kv", Op.INSERT, new=("applied", 2))])
        assert ("applied", 2) in self.app_rows()

    def test_a_normal_start_leaves_the_guards_in_place(self, set_engine: PostgresEngine) -> None:
        """No DROP/CREATE TRIGGER (and so no table lock) when nothing changed;
        one guard per table, of the kind it needs."""
        query = ("SELECT tgrelid::regclass::text, tgname, oid FROM pg_trigger "
                 "WHERE tgname IN ('ringsync_fence', 'ringsync_set_fence') ORDER BY 1")
        with psycopg.connect(self.dsn) as conn:
            before = conn.execute(query).fetchall()
        assert [(t, n) for t, n, _ in before] == [("kv", "ringsync_set_fence"),
                                                 ("other", "ringsync_fence")]
        set_engine.close()
        set_engine.open()
        with psycopg.connect(self.dsn) as conn:
            assert conn.execute(query).fetchall() == before

    def test_the_apply_sessions_reconciled_mark_is_invisible_until_commit(
            self, set_engine: PostgresEngine) -> None:
        with set_engine.target.apply_session() as s:
            s.mark_set_reconciled("beds", 9)
            assert set_engine.fence.set_fence_states()["beds"].reconciled == 0
        assert set_engine.fence.set_fence_states()["beds"].reconciled == 9

    def test_an_unprivileged_application_role_is_told_the_set_is_closed(
            self, set_engine: PostgresEngine) -> None:
        with self.app_role("set_app") as app_dsn:
            with pytest.raises(errors.ReadOnlySqlTransaction) as caught, \
                    psycopg.connect(app_dsn) as conn:
                conn.execute("INSERT INTO kv VALUES ('a', 1)")
            assert caught.value.diag.message_primary == set_fence_message(self.campus, "beds")


def run(conn: pymysql.Connection, *statements: str) -> None:
    with conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)


class TestMariaDBFence(MariaDBCampus, FenceContract):
    @contextmanager
    def app_account(self, name: str) -> Iterator[Callable[[], pymysql.Connection]]:
        """An application account that may write kv and nothing of ringsync's;
        a function opening a connection as it."""
        user = f"{name}_{uuid.uuid4().hex[:6]}"
        self.server.admin(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY 'app'",
                          f"GRANT SELECT, INSERT, UPDATE, DELETE ON {self.database}.kv "
                          f"TO '{user}'@'127.0.0.1'")
        try:
            yield lambda: pymysql.connect(host="127.0.0.1", port=self.server.port, user=user,
                                          password="app", database=self.database,
                                          autocommit=True)
        finally:
            self.server.admin(f"DROP USER '{user}'@'127.0.0.1'")

    def test_an_unprivileged_application_account_is_told_it_is_fenced(
            self, engine: MariaEngine) -> None:
        """The guard runs as its definer (the node's account): the application
        needs no privilege on ringsync's tables. Setting @rs_apply does not
        make it the node's apply session: that also writes under ringsync's
        GTID domain, which takes BINLOG REPLAY (or SUPER)."""
        message = fence_message(self.campus)
        with self.app_account("fence_app") as connect:
            conn = connect()
            try:
                run(conn, "INSERT INTO kv VALUES ('a', 1)")
                engine.fence.set_fence(time.time() - 1)
                with pytest.raises(pymysql.err.OperationalError) as caught:
                    run(conn, "UPDATE kv SET v = 2")
                self.assert_refused_error(caught.value, message)
                run(conn, "SET @rs_apply = 1")
                with pytest.raises(pymysql.err.OperationalError) as caught:
                    run(conn, "DELETE FROM kv")
                self.assert_refused_error(caught.value, message)
                with pytest.raises(pymysql.err.OperationalError, match="BINLOG REPLAY"):
                    run(conn, f"SET SESSION gtid_domain_id = {engine.ctx.apply_domain}")
                with pytest.raises(pymysql.err.OperationalError) as caught:
                    run(conn, "SELECT * FROM _rs_fence")
                assert caught.value.args[0] == 1142  # no access to ringsync's tables
            finally:
                conn.close()
        assert self.app_rows() == [("a", 1)]

    def test_an_unprivileged_application_account_is_told_the_set_is_closed(
            self, set_engine: MariaEngine) -> None:
        with self.app_account("set_app") as connect:
            conn = connect()
            try:
                with pytest.raises(pymysql.err.OperationalError) as caught:
                    run(conn, "INSERT INTO kv VALUES ('a', 1)")
            finally:
                conn.close()
        self.assert_refused_error(caught.value, set_fence_message(self.campus, "beds"))

    def test_a_session_that_sets_its_clock_back_is_still_fenced(
            self, engine: MariaEngine) -> None:
        """SET TIMESTAMP (what a binlog replayed through the client does) moves
        the statement's time, not the real clock the guard reads too."""
        until = time.time() - 1
        engine.fence.set_fence(until)
        self.assert_refused(f"SET TIMESTAMP = {until - 3600:.0f}", WRITES["insert"])
        assert self.app_rows() == []

    def test_end_app_sessions_terminates_application_connections(
            self, engine: MariaEngine) -> None:
        """Sessions of the campus database end; the node's own connections, its
        binlog dump (capture), a replica's dump and sessions of another
        database on the same server do not."""
        idle = mariadb_connect(self.server, self.database)
        elsewhere = mariadb_connect(self.server, "campus")
        replica = BinLogStreamReader(
            connection_settings={"host": "127.0.0.1", "port": self.server.port,
                                 "user": mariadb.USER, "password": mariadb.PASSWORD,
                                 "db": self.database}, server_id=4242, blocking=True,
            pymysql_wrapper=lambda db, **settings: pymysql.connect(database=db, **settings))
        dumps = ("SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND LIKE "
                 "'Binlog Dump%%' AND DB = %s")
        try:
            run(idle, "SELECT 1")
            replica.fetchone()  # its dump runs, with the campus database as its own
            with elsewhere.cursor() as cur:
                cur.execute(dumps, (self.database,))
                dumping = cur.fetchall()
            assert len(dumping) == 1
            assert engine.fence.end_app_sessions() >= 1
            with pytest.raises(pymysql.err.OperationalError):
                run(idle, "SELECT 1")
            with elsewhere.cursor() as cur:
                cur.execute(dumps, (self.database,))
                assert cur.fetchall() == dumping
        finally:
            replica.close()
            for conn in (idle, elsewhere):
                if conn.open:
                    conn.close()
        self.apply(engine, [Change("kv", Op.INSERT, new=("applied", 7))])
        assert engine.inspect.rows("kv") == [("applied", 7)]
        self.app_write("INSERT INTO kv VALUES ('local', 1)")
        captured = [c.new for chunk in self.capture_all(engine) for c in chunk.changes]
        assert ("local", 1) in captured  # the binlog reader never reconnects: it was kept
        assert engine.fence.end_app_sessions() == 0

    def test_truncate_is_not_refused_but_stops_capture(self, engine: MariaEngine) -> None:
        """MariaDB fires no trigger on TRUNCATE, so the fence cannot refuse it.
        It takes the DROP privilege (an application account without it is
        refused), and capture stops at it with an error naming the statement
        rather than miss the rows it removed."""
        self.app_write("INSERT INTO kv VALUES ('a', 1)")
        engine.fence.set_fence(time.time() - 1)
        self.assert_refused("DELETE FROM kv")
        with self.app_account("truncate_app") as connect:
            conn = connect()
            try:
                with pytest.raises(pymysql.err.OperationalError) as caught:
                    run(conn, "TRUNCATE kv")
            finally:
                conn.close()
        assert caught.value.args[0] == 1142  # DROP command denied
        assert self.app_rows() == [("a", 1)]
        self.app_write("TRUNCATE kv")  # the campus account has DROP: not refused
        assert self.app_rows() == []
        deadline = time.monotonic() + 30
        with pytest.raises(EngineError, match="without row events"):
            while time.monotonic() < deadline:
                engine.source.capture(0, 1000)

    def test_closing_a_set_waits_out_a_transaction_that_already_wrote(
            self, set_engine: MariaEngine) -> None:
        """wait_set_writers blocks until a transaction that wrote while the set
        was open ends (EngineError after the timeout, in whole seconds); the
        close refuses that transaction's next write."""
        set_engine.fence.set_set_fence("beds", time.time() + 60, 1)
        app = mariadb_connect(self.server, self.database, autocommit=False)
        try:
            run(app, "INSERT INTO kv VALUES ('open', 1)")  # the transaction stays open
            set_engine.fence.set_set_fence("beds", 0.0, 1)
            started = time.monotonic()
            with pytest.raises(EngineError, match="still open after 1s"):
                set_engine.fence.wait_set_writers("beds", timeout=0.3)
            assert time.monotonic() - started >= 0.9
            with pytest.raises(pymysql.err.OperationalError) as caught:
                run(app, "INSERT INTO kv VALUES ('after', 2)")
            self.assert_refused_error(caught.value, set_fence_message(self.campus, "beds"))
            commit = threading.Timer(0.5, app.commit)
            commit.start()
            started = time.monotonic()
            set_engine.fence.wait_set_writers("beds", timeout=5)
            waited = time.monotonic() - started
            commit.join()
            assert 0.4 <= waited < 4
        finally:
            app.close()
        started = time.monotonic()
        set_engine.fence.wait_set_writers("beds", timeout=5)  # nobody left: at once
        set_engine.fence.wait_set_writers("no-such-set")
        assert time.monotonic() - started < 0.5
        assert self.app_rows() == [("open", 1)]

    def test_a_write_let_in_before_the_close_can_still_commit(
            self, set_engine: MariaEngine) -> None:
        """What MariaDB cannot do: no trigger runs at COMMIT (PostgreSQL refuses
        this commit), so a write made while the set was open commits after the
        close; a drain's wait_set_writers is what keeps it before the head."""
        set_engine.fence.set_set_fence("beds", time.time() + 60, 1)
        app = mariadb_connect(self.server, self.database, autocommit=False)
        try:
            run(app, "INSERT INTO kv VALUES ('late', 1)")
            set_engine.fence.set_set_fence("beds", 0.0, 1)
            app.commit()
        finally:
            app.close()
        assert self.app_rows() == [("late", 1)]
        self.assert_refused("DELETE FROM kv", set_name="beds")
        self.apply(set_engine, [Change("kv", Op.INSERT, new=("applied", 2))])
        assert self.app_rows() == [("applied", 2), ("late", 1)]

    def test_an_open_transaction_does_not_hold_up_the_fence(
            self, set_engine: MariaEngine) -> None:
        """The guards read MyISAM tables, locked for a statement only: an
        application transaction left open after writing a guarded table does
        not hold up the fence's writes (an InnoDB row the guards read would be
        share-locked until it ends, and the next extension would time out)."""
        set_engine.fence.set_set_fence("beds", time.time() + 60, 1)
        app = mariadb_connect(self.server, self.database, autocommit=False)
        try:
            run(app, "INSERT INTO kv VALUES ('a', 1)", "INSERT INTO other VALUES (1, 'x')")
            started = time.monotonic()
            set_engine.fence.set_fence(time.time() + 60)
            set_engine.fence.set_set_fence("beds", time.time() + 120, 2)
            set_engine.fence.set_fence(0)
            set_engine.fence.set_set_fence("beds", 0, 3)
            assert time.monotonic() - started < 0.5
            assert set_engine.fence.set_fence_states()["beds"] == SetFence(0.0, 3, 0)
            app.rollback()
        finally:
            app.close()
        self.assert_refused("INSERT INTO other VALUES (2, 'y')")
        self.assert_refused("INSERT INTO kv VALUES ('b', 2)", set_name="beds")

    def test_savepoints_work_after_a_guarded_write(self, engine: MariaEngine) -> None:
        """The guard tables join no transaction (Aria's crash-safe tables would,
        and then refuse SAVEPOINT)."""
        self.app_write("INSERT INTO kv VALUES ('a', 1)", "SAVEPOINT s",
                       "INSERT INTO kv VALUES ('b', 2)", "ROLLBACK TO SAVEPOINT s",
                       "INSERT INTO other VALUES (1, 'x')", "SAVEPOINT t", "RELEASE SAVEPOINT t")
        assert self.app_rows() == [("a", 1)] and self.app_rows("other") == [(1, "x")]

    def test_a_set_guard_left_open_by_a_cut_short_write_is_closed_at_open(
            self, set_engine: MariaEngine) -> None:
        """set_set_fence writes the set's row, then its guard: a node that died
        between the two leaves the guard behind the row, and the next open
        copies the row into the guard."""
        set_engine.fence.set_set_fence("beds", time.time() + 60, 1)
        self.server.admin(f"UPDATE {self.database}._rs_set_fence SET writable_until = 0, "
                          f"epoch = 2 WHERE name = 'beds'")  # the row closed, not the guard
        self.app_write("INSERT INTO kv VALUES ('a', 1)")
        set_engine.close()
        set_engine.open()
        self.assert_refused("INSERT INTO kv VALUES ('b', 2)", set_name="beds")
        assert set_engine.fence.set_fence_states() == {"beds": SetFence(0.0, 2, 0)}

    def test_a_normal_start_leaves_the_guards_in_place(self, set_engine: MariaEngine) -> None:
        """No CREATE or DROP TRIGGER (so no table's metadata lock) when nothing
        changed; one guard per table and event, of the kind it needs."""
        query = ("SELECT TRIGGER_NAME, EVENT_OBJECT_TABLE, ACTION_TIMING, CREATED, "
                 "LOCATE('_rs_set_guard', ACTION_STATEMENT) > 0 FROM information_schema.TRIGGERS "
                 "WHERE TRIGGER_SCHEMA = %s AND TRIGGER_NAME LIKE '\\_rs\\_fence\\_%%' "
                 "ORDER BY 1")
        conn = mariadb_connect(self.server, self.database)
        try:
            with conn.cursor() as cur:
                cur.execute(query, (self.database,))
                before = cur.fetchall()
                assert [(n, t, w, s) for n, t, w, _, s in before] == [
                    (f"_rs_fence_{table}_{op}", table, "BEFORE", table == "kv")
                    for table in ("kv", "other") for op in "diu"]
                set_engine.close()
                set_engine.open()
                cur.execute(query, (self.database,))
                assert cur.fetchall() == before
        finally:
            conn.close()

    def test_the_apply_sessions_reconciled_mark_is_invisible_until_commit(
            self, set_engine: MariaEngine) -> None:
        with set_engine.target.apply_session() as s:
            s.mark_set_reconciled("beds", 9)
            assert set_engine.fence.set_fence_states()["beds"].reconciled == 0
        assert set_engine.fence.set_fence_states()["beds"].reconciled == 9
