"""SQLite engine: trigger capture, foreign apply, atomic vector, schema errors."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from node.engines.sqlite.engine import SQLiteEngine
from node.model import Change, Op
from ringsync.commands.demo.lis import create_sqlite_database
from ringsync.errors import EngineError, SchemaError

TABLES = ("patients", "lab_orders", "specimens", "lab_results")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "lis.db"
    create_sqlite_database(path)
    return path


@pytest.fixture
def engine(db: Path) -> SQLiteEngine:
    e = SQLiteEngine(db, TABLES, "a")
    e.open()
    yield e
    e.close()


def app(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(db, isolation_level=None, timeout=10)


def add_patient(conn: sqlite3.Connection, pid: str) -> None:
    conn.execute("INSERT INTO patients VALUES (?, 'm', 'n', NULL, 'F', 'a', 't')", (pid,))


def test_each_captured_transaction_holds_its_rows_in_commit_order(
    engine: SQLiteEngine, db: Path
) -> None:
    conn = app(db)
    conn.execute("BEGIN")
    add_patient(conn, "p1")
    add_patient(conn, "p2")
    conn.execute("COMMIT")
    chunks = engine.source.capture(0, 100)
    assert len(chunks) == 1 and chunks[0].final
    assert [c.new[0] for c in chunks[0].changes] == ["p1", "p2"]
    conn.execute("UPDATE patients SET name = 'x' WHERE patient_id = 'p1'")
    conn.execute("DELETE FROM patients WHERE patient_id = 'p2'")
    later = engine.source.capture(chunks[0].position, 100)
    # both commits landed before this capture: one captured transaction, in order
    assert len(later) == 1
    ops = [(c.op, c.old[0] if c.old else None) for c in later[0].changes]
    assert ops == [(Op.UPDATE, "p1"), (Op.DELETE, "p2")]
    assert later[0].changes[0].new[2] == "x" and later[0].changes[0].old[2] == "n"


def test_transactions_after_a_capture_get_their_own_group(
    engine: SQLiteEngine, db: Path
) -> None:
    conn = app(db)
    add_patient(conn, "p1")
    first = engine.source.capture(0, 100)
    add_patient(conn, "p2")
    add_patient(conn, "p3")
    nothing = engine.source.capture(first[-1].position, 100)
    assert [len(c.changes) for c in nothing] == [2]
    add_patient(conn, "p4")
    again = engine.source.capture(nothing[-1].position, 100)
    assert [c.changes[0].new[0] for c in again] == ["p4"]


def test_large_transaction_is_split_into_chunks(engine: SQLiteEngine, db: Path) -> None:
    conn = app(db)
    conn.execute("BEGIN")
    for i in range(25):
        add_patient(conn, f"p{i}")
    conn.execute("COMMIT")
    seen, pos, finals = [], 0, []
    while True:
        chunks = engine.source.capture(pos, 10)
        if not chunks:
            break
        for c in chunks:
            seen += [ch.new[0] for ch in c.changes]
            finals.append(c.final)
            pos = c.position
    assert seen == [f"p{i}" for i in range(25)]
    assert finals == [False, False, True]


def test_applied_rows_are_not_recaptured_and_vector_is_atomic(
    engine: SQLiteEngine, db: Path
) -> None:
    row = ("p9", "m", "n", None, "F", "b", "t")
    with engine.target.apply_session() as s:
        s.apply([Change("patients", Op.INSERT, new=row)])
        s.advance("b", 1)
    assert engine.source.capture(0, 100) == []
    assert engine.target.applied_vector() == {"b": 1}
    with pytest.raises(RuntimeError), engine.target.apply_session() as s:
        s.apply([Change("patients", Op.DELETE, old=row)])
        s.advance("b", 2)
        raise RuntimeError("crash mid-transaction")
    assert engine.target.applied_vector() == {"b": 1}
    assert engine.inspect.row_counts()["patients"] == 1


def test_update_that_moves_the_key_and_upsert_of_missing_row(engine: SQLiteEngine) -> None:
    old = ("p1", "m", "n", None, "F", "b", "t")
    new = ("p2", "m", "n2", None, "F", "b", "t")
    with engine.target.apply_session() as s:
        s.apply([Change("patients", Op.INSERT, new=old),
                 Change("patients", Op.UPDATE, new=new, old=old)])
        s.advance("b", 1)
    rows = engine.ctx.conn.execute("SELECT patient_id, name FROM patients").fetchall()
    assert rows == [("p2", "n2")]


def test_checksums_match_for_equal_content(tmp_path: Path) -> None:
    engines = []
    for name in ("a", "b"):
        path = tmp_path / f"{name}.db"
        create_sqlite_database(path)
        e = SQLiteEngine(path, TABLES, name)
        e.open()
        engines.append(e)
    rows = [("p1", "m", "n", None, "F", "b", "t"), ("p2", "m", "n", "1990-01-01", "M", "b", "t")]
    for e, order in zip(engines, (rows, rows[::-1]), strict=True):
        with e.target.apply_session() as s:
            s.apply([Change("patients", Op.INSERT, new=r) for r in order])
            s.advance("z", 1)
    a, b = (e.inspect.checksums(list(TABLES))[0] for e in engines)
    assert a == b and a["patients"][0] == 2
    for e in engines:
        e.close()


def test_table_without_primary_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes(body TEXT)")
    conn.close()
    with pytest.raises(SchemaError, match="no primary key"):
        SQLiteEngine(path, ("notes",), "a").open()


def test_missing_table_and_missing_database_are_refused(db: Path, tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="does not exist"):
        SQLiteEngine(db, ("nope",), "a").open()
    with pytest.raises(EngineError, match="does not exist"):
        SQLiteEngine(tmp_path / "missing.db", TABLES, "a").open()


def test_database_of_another_campus_is_refused(db: Path) -> None:
    e = SQLiteEngine(db, TABLES, "a")
    e.open()
    e.close()
    with pytest.raises(EngineError, match="belongs to campus 'a'"):
        SQLiteEngine(db, TABLES, "b").open()


def test_capture_not_journaled_is_handed_out_again(engine: SQLiteEngine, db: Path) -> None:
    add_patient(app(db), "p1")
    first = engine.source.capture(0, 100)
    # the journal write failed: the node asks again from the old position
    again = engine.source.capture(0, 100)
    assert [c.changes[0].new[0] for c in again] == [c.changes[0].new[0] for c in first]
    assert engine.source.capture(first[-1].position, 100) == []
