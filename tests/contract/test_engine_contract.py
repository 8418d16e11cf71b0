"""One contract, every engine: capture, apply, vectors, checksums and every type.

Each engine's class only says how to make a database with the contract's
tables and how an application writes to it. PostgreSQL runs on a real server
made with initdb; SQLite on a file.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from node.codec import build_frame, decode_changes
from node.engines.postgres.engine import PostgresEngine
from node.engines.sqlite.engine import SQLiteEngine
from node.model import Change, Json, Op
from ringsync.commands.demo.cluster import free_port
from ringsync.commands.demo.postgres import LocalPostgres
from ringsync.v1 import values_pb2 as pb

TYPED_ROWS: list[tuple[Any, ...]] = [
    (1, None, None, None, None, None, None, None, None, None, None),
    (2, True, -(2**63), Decimal("12345678901234567890.123456789"), 1.7976931348623157e308,
     "检验科 ✓ — Ω \U0001F9EA", b"\x00\xff\x10", dt.datetime(1900, 1, 1, tzinfo=dt.UTC),
     dt.date(1, 1, 1), uuid.UUID(int=0), Json('{"a":[1,2,{"b":null}],"z":"ü"}')),
    (3, False, 2**63 - 1, Decimal("-0.000000001"), float("-inf"), "x" * 200_000,
     bytes(range(256)) * 4096, dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC),
     dt.date(9999, 12, 31), uuid.UUID("12345678-1234-5678-1234-567812345678"), Json("[]")),
    (4, True, 0, Decimal("0"), 5e-324, "", b"", dt.datetime(2026, 11, 22, 5, 6, 7, 123456,
     tzinfo=dt.UTC), dt.date(2026, 11, 22), uuid.uuid4(), Json('"text"')),
]
COLUMNS = ("id", "b", "i", "d", "f", "t", "by", "ts", "dt", "u", "j")

SQLITE_DDL = """CREATE TABLE typed(id INTEGER PRIMARY KEY, b BOOLEAN, i INTEGER,
  d DECIMAL_TEXT, f REAL, t TEXT, "by" BLOB, ts TIMESTAMPTZ, dt DATE, u UUID, j JSON);
CREATE TABLE kv(k TEXT PRIMARY KEY, v INTEGER)"""
POSTGRES_DDL = """CREATE TABLE typed(id bigint PRIMARY KEY, b boolean, i bigint, d numeric,
  f double precision, t text, "by" bytea, ts timestamptz, dt date, u uuid, j jsonb);
CREATE TABLE kv(k text PRIMARY KEY, v bigint)"""
TABLES = ("typed", "kv")


@pytest.fixture(scope="module")
def pg_server() -> Iterator[LocalPostgres]:
    pg = LocalPostgres.create(None, free_port())
    pg.start()
    yield pg
    pg.remove()


class EngineContract:
    """Subclasses provide ``engine`` (opened, capture started) and ``app_write``."""

    def apply(self, engine: Any, changes: list[Change], origin: str = "x", seq: int = 1) -> None:
        with engine.target.apply_session() as s:
            s.apply(changes)
            s.advance(origin, seq)

    def wire(self, engine: Any, changes: list[Change]) -> list[Change]:
        """Changes through the wire model: encode to a frame, parse, decode."""
        frame = build_frame("o", 1, 0, True, 0.0, changes, dict(engine.shapes()))
        return decode_changes(pb.TxnFrame.FromString(frame.SerializeToString()))[1]

    def test_every_type_round_trips_through_apply_and_the_wire(self, engine: Any) -> None:
        changes = [Change("typed", Op.INSERT, new=r) for r in TYPED_ROWS]
        self.apply(engine, self.wire(engine, changes))
        assert sorted(engine.inspect.rows("typed"), key=lambda r: r[0]) == TYPED_ROWS

    def test_every_type_round_trips_through_capture(self, engine: Any) -> None:
        self.app_insert_typed(TYPED_ROWS)
        changes = [c for chunk in self.capture_all(engine) for c in chunk.changes]
        assert [c.new for c in self.wire(engine, changes)] == TYPED_ROWS

    def test_capture_sees_inserts_updates_deletes_with_full_images(self, engine: Any) -> None:
        self.app_write("INSERT INTO kv VALUES ('a', 1)", "INSERT INTO kv VALUES ('b', 2)")
        self.app_write("UPDATE kv SET v = 10 WHERE k = 'a'", "DELETE FROM kv WHERE k = 'b'")
        changes = [c for chunk in self.capture_all(engine) for c in chunk.changes]
        assert [(c.op, c.new, c.old) for c in changes] == [
            (Op.INSERT, ("a", 1), None), (Op.INSERT, ("b", 2), None),
            (Op.UPDATE, ("a", 10), ("a", 1)), (Op.DELETE, None, ("b", 2)),
        ]

    def test_applied_rows_are_not_captured(self, engine: Any) -> None:
        self.apply(engine, [Change("kv", Op.INSERT, new=("z", 1))])
        self.app_write("INSERT INTO kv VALUES ('local', 2)")
        changes = [c for chunk in self.capture_all(engine) for c in chunk.changes]
        assert [c.new for c in changes] == [("local", 2)]

    def test_vector_commits_with_the_rows_or_not_at_all(self, engine: Any) -> None:
        self.apply(engine, [Change("kv", Op.INSERT, new=("k1", 1))], "x", 1)
        with pytest.raises(RuntimeError), engine.target.apply_session() as s:
            s.apply([Change("kv", Op.INSERT, new=("k2", 2))])
            s.advance("x", 2)
            raise RuntimeError("crash")
        assert engine.target.applied_vector() == {"x": 1}
        assert engine.inspect.rows("kv") == [("k1", 1)]

    def test_key_change_and_delete_apply(self, engine: Any) -> None:
        self.apply(engine, [Change("kv", Op.INSERT, new=("a", 1)),
                            Change("kv", Op.UPDATE, new=("b", 1), old=("a", 1)),
                            Change("kv", Op.INSERT, new=("c", 3)),
                            Change("kv", Op.DELETE, old=("c", 3))])
        assert engine.inspect.rows("kv") == [("b", 1)]

    def test_checksum_depends_on_content_only(self, engine: Any) -> None:
        self.apply(engine, [Change("typed", Op.INSERT, new=r) for r in TYPED_ROWS])
        sums, applied = engine.inspect.checksums(list(TABLES))
        assert sums["typed"][0] == len(TYPED_ROWS) and applied == {"x": 1}
        other = SQLiteContractTarget.fresh_sqlite_sums(TYPED_ROWS)
        assert sums["typed"] == other

    def test_snapshot_splits_local_transactions_exactly_at_its_position(
            self, engine: Any) -> None:
        self.app_write("INSERT INTO kv VALUES ('before', 1)")
        self.apply(engine, [Change("kv", Op.INSERT, new=("foreign", 9))], "x", 4)
        with engine.inspect.snapshot() as snap:
            self.app_write("INSERT INTO kv VALUES ('after', 2)")
            rows = sorted(r for batch in snap.batches("kv", 1) for r in batch)
            assert rows == [("before", 1), ("foreign", 9)]
            assert snap.applied == {"x": 4}
            assert snap.row_counts() == {"typed": 0, "kv": 2}
            assert snap.digest("kv") == SQLiteContractTarget.fresh_sqlite_sums(
                [("before", 1), ("foreign", 9)], "kv")
            position = snap.position
        positions = {c.changes[0].new[0]: c.position for c in self.capture_all(engine)}
        assert set(positions) == {"before", "after"}
        assert positions["before"] <= position < positions["after"]
        assert engine.source.captured_through() >= positions["after"]


class SQLiteContractTarget:
    @staticmethod
    def fresh_sqlite_sums(rows: list[tuple[Any, ...]], table: str = "typed") -> tuple[int, str]:
        import tempfile

        path = Path(tempfile.mkdtemp()) / "ref.db"
        conn = sqlite3.connect(path)
        conn.executescript(SQLITE_DDL)
        conn.close()
        ref = SQLiteEngine(path, TABLES, "ref")
        ref.open()
        try:
            with ref.target.apply_session() as s:
                s.apply([Change(table, Op.INSERT, new=r) for r in rows])
                s.advance("x", 1)
            return ref.inspect.checksums([table])[0][table]
        finally:
            ref.close()


class TestSQLiteEngine(EngineContract):
    @pytest.fixture
    def engine(self, tmp_path: Path) -> Iterator[SQLiteEngine]:
        self.path = tmp_path / "c.db"
        conn = sqlite3.connect(self.path)
        conn.executescript(SQLITE_DDL)
        conn.close()
        engine = SQLiteEngine(self.path, TABLES, "c")
        engine.open()
        engine.source.start_capture(0)
        yield engine
        engine.close()

    def app_write(self, *statements: str) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None)
        conn.execute("BEGIN")
        for s in statements:
            conn.execute(s)
        conn.execute("COMMIT")
        conn.close()

    def capture_all(self, engine: SQLiteEngine) -> list[Any]:
        return engine.source.capture(0, 1000)

    def app_insert_typed(self, rows: list[tuple[Any, ...]]) -> None:
        from node.engines.sqlite.values import to_sqlite

        conn = sqlite3.connect(self.path)
        marks = ", ".join("?" for _ in COLUMNS)
        conn.executemany(f"INSERT INTO typed VALUES ({marks})",
                         [tuple(to_sqlite(v) for v in r) for r in rows])
        conn.commit()
        conn.close()


class TestPostgresEngine(EngineContract):
    @pytest.fixture
    def engine(self, pg_server: LocalPostgres, request: Any) -> Iterator[PostgresEngine]:
        db = f"c_{request.node.name.lower().replace('test_', '')[:40]}"
        with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}"')
            conn.execute(f'CREATE DATABASE "{db}"')
        self.dsn = pg_server.dsn.replace("dbname=postgres", f"dbname={db}")
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            for statement in POSTGRES_DDL.split(";"):
                conn.execute(statement)
        engine = PostgresEngine(self.dsn, TABLES, db.replace("_", "-"))
        engine.open()
        engine.source.start_capture(0)
        yield engine
        engine.close()
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                         "WHERE database = current_database()")

    def app_write(self, *statements: str) -> None:
        with psycopg.connect(self.dsn) as conn:
            for s in statements:
                conn.execute(s)

    def app_insert_typed(self, rows: list[tuple[Any, ...]]) -> None:
        from node.engines.postgres.values import to_pg

        marks = ", ".join("%s" for _ in COLUMNS)
        with psycopg.connect(self.dsn) as conn:
            conn.cursor().executemany(f"INSERT INTO typed VALUES ({marks})",
                                      [tuple(to_pg(v) for v in r) for r in rows])

    def capture_all(self, engine: PostgresEngine) -> list[Any]:
        import time

        out: list[Any] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            got = engine.source.capture(0, 1000)
            out += got
            if got == [] and out:
                break
        return out
