"""The fast path for fresh rows decides exactly what the exact path decides.

One random history (seeded) runs twice on the same engine: into one
database with ``Resolver(fast=False)``, into another with ``fast=True``.
A history mixes foreign transactions from two campuses (fresh inserts, some
as COPY text the way a PostgreSQL campus sends them, runs long enough to be
staged, inserts of existing keys (some concurrent, of one key from both
campuses in one batch), updates, deletes,
re-inserts over tombstones, stamps and dependency vectors that make some
of them concurrent) with this campus's own writes: recorded at once, or
left unrecorded while a foreign transaction reaches the same key (apply
must wait: ``PendingLocalChange``), some written under a savepoint
(PostgreSQL gives those rows the subtransaction's xid). Afterwards the
tables, the version tables and the conflict logs of the two databases are
compared, and so is what every step raised. The fast path must also have
done something (this test can fail when it never runs).
"""

from __future__ import annotations

import random
import sqlite3
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from node.conflicts.driver import PendingLocalChange, Resolver, TxnInfo
from node.engines.postgres.engine import PostgresEngine
from node.engines.sqlite.engine import SQLiteEngine
from node.hlc import HybridClock, pack
from node.model import Change, Json, Op, RawInserts
from node.rawcopy import encode_rows
from ringsync.commands.demo.postgres import LocalPostgres
from ringsync.conflict_policy import ConflictSettings

SQLITE_DDL = """CREATE TABLE kv(k TEXT PRIMARY KEY, v INTEGER, note TEXT);
CREATE TABLE doc(id INTEGER PRIMARY KEY, amount DECIMAL_TEXT, body JSON, tag UUID)"""
POSTGRES_DDL = """CREATE TABLE kv(k text PRIMARY KEY, v bigint, note text);
CREATE TABLE doc(id bigint PRIMARY KEY, amount numeric, body jsonb, tag uuid)"""
TABLES = ("kv", "doc")
CAMPUS = "here"
SEEDS = range(6)


class Database:
    """One campus database and its engine; ``user`` writes like an application."""

    def __init__(self, engine: Any, user: Any) -> None:
        self.engine, self.user = engine, user
        self.position = 0  # what this campus's own recording has reached

    def dump(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for table in TABLES:
            out[table] = sorted(self.engine.inspect.rows(table), key=repr)
        out["meta"] = self.metas()
        out["conflicts"] = [
            (c.table, c.key, c.kind, c.rule, c.winner, c.local_origin, c.remote_origin,
             c.remote_seq, c.local_row, c.remote_row, c.state)
            for c in sorted(self.engine.store.conflicts(_all_conflicts()), key=lambda c: c.id)]
        return out

    def metas(self) -> list[tuple[Any, ...]]:
        raise NotImplementedError


class PgDatabase(Database):
    def metas(self) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.engine.ctx.dsn) as conn:
            # xids differ between two databases; whether a row's entry names
            # the xid the row holds is what matters
            return sorted((t, *r) for t in TABLES for r in conn.execute(
                f"SELECT m.{_key(t)}::text, m.live, m.meta, m.xid = t.xmin::text::bigint "
                f"FROM ringsync.meta_{t} m LEFT JOIN {t} t USING ({_key(t)})").fetchall())


class SQLiteDatabase(Database):
    def metas(self) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(self.engine.ctx.path)
        try:
            return sorted((t, *r) for t in TABLES for r in conn.execute(
                f"SELECT CAST({_key(t)} AS TEXT), meta FROM _rs_meta_{t}").fetchall())
        finally:
            conn.close()


def _key(table: str) -> str:
    return "k" if table == "kv" else "id"


def _all_conflicts() -> Any:
    from node.conflicts.log import ConflictQuery
    return ConflictQuery(limit=100_000)


def open_database(kind: str, tmp: Path, name: str, pg: LocalPostgres | None) -> Database:
    if kind == "sqlite":
        path = tmp / f"{name}.db"
        conn = sqlite3.connect(path)
        conn.executescript(SQLITE_DDL)
        conn.close()
        engine: Any = SQLiteEngine(path, TABLES, CAMPUS)
        db: Database = SQLiteDatabase(engine, lambda: sqlite3.connect(path, isolation_level=None))
    else:
        assert pg is not None
        dbname = f"f_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{dbname}"')
        dsn = pg.dsn.replace("dbname=postgres", f"dbname={dbname}")
        with psycopg.connect(dsn, autocommit=True) as conn:
            for statement in POSTGRES_DDL.split(";"):
                conn.execute(statement)
        engine = PostgresEngine(dsn, TABLES, f"here-{dbname[2:]}")
        db = PgDatabase(engine, lambda: psycopg.connect(dsn, autocommit=True))
    engine.open()
    engine.source.start_capture(0)
    return db


class History:
    """A seeded random history, replayed identically against any database."""

    def __init__(self, seed: int) -> None:
        rnd = random.Random(seed)
        self.steps: list[tuple[str, Any]] = []
        live: dict[str, dict[int, tuple[Any, ...]]] = {"kv": {}, "doc": {}}
        next_id = {"kv": 0, "doc": 0}
        seqs = {"x": 0, "y": 0}
        for _ in range(28):
            what = rnd.random()
            table = rnd.choice(TABLES)
            if what < 0.55:  # a foreign transaction
                origin = rnd.choice("xy")
                seqs[origin] += 1
                other = "y" if origin == "x" else "x"
                deps = {other: rnd.randint(0, seqs[other])}
                changes = []
                fresh = rnd.choice([0, 1, 3, 80])  # 80: staged through COPY
                for _ in range(fresh):
                    next_id[table] += 1
                    row = _row(table, next_id[table], rnd)
                    changes.append(Change(table, Op.INSERT, new=row))
                    live[table][next_id[table]] = row
                for _ in range(rnd.randint(0, 3)):
                    if not live[table] or rnd.random() < 0.2:  # a key seen before, maybe gone
                        key = rnd.randint(1, max(1, next_id[table]))
                        row = _row(table, key, rnd)
                        changes.append(Change(table, Op.INSERT, new=row))
                        live[table][key] = row
                        continue
                    key = rnd.choice(sorted(live[table]))
                    if any((c.new or c.old or ())[0] == live[table][key][0] for c in changes):
                        continue
                    if rnd.random() < 0.5:
                        row = _row(table, key, rnd)
                        changes.append(Change(table, Op.UPDATE, new=row, old=live[table][key]))
                        live[table][key] = row
                    else:
                        changes.append(Change(table, Op.DELETE, old=live[table].pop(key)))
                if changes and all(c.op is Op.INSERT for c in changes) and rnd.random() < 0.5:
                    changes = as_copy_text(table, changes)  # as a PostgreSQL campus sends them
                self.steps.append(("remote", (origin, seqs[origin], pack(1_000 + len(self.steps)),
                                              deps, changes)))
            else:  # this campus's own write
                next_id[table] += 1
                key = next_id[table] if rnd.random() < 0.6 or not live[table] else (
                    rnd.choice(sorted(live[table])))
                row = _row(table, key, rnd)
                live[table][key] = row
                mode = rnd.choice(["record", "record", "pending", "savepoint"])
                self.steps.append(("local", (table, row, mode)))


def as_copy_text(table: str, changes: list[Change]) -> list[Any]:
    """INSERTs as one COPY text run (node.model.RawInserts), values in
    PostgreSQL's text spelling."""
    def text(v: Any) -> str | None:
        return None if v is None else v.text if isinstance(v, Json) else str(v)
    rows = [[text(v) for v in c.new or ()] for c in changes]
    return [RawInserts(table, len(rows), encode_rows(rows))]


def _row(table: str, key: int, rnd: random.Random) -> tuple[Any, ...]:
    if table == "kv":
        return (f"k{key}", rnd.randint(-5, 10**12), rnd.choice([None, "ok", "检验 ✓"]))
    return (key, Decimal(rnd.randint(0, 10**6)) / 100,
            rnd.choice([None, Json('{"a":1}'), Json('[1,"x"]')]),
            uuid.UUID(int=rnd.getrandbits(128)))


def replay(db: Database, history: History, fast: bool) -> tuple[list[str], Resolver]:
    engine = db.engine
    resolver = Resolver(dict(engine.shapes()), ConflictSettings(), HybridClock(), fast=fast)
    trace: list[str] = []
    local_seq = 0

    unrecorded = 0

    def record() -> None:
        nonlocal local_seq, unrecorded
        chunks = capture(db, unrecorded)
        unrecorded = 0
        for chunk in chunks:
            local_seq += 1
            info = TxnInfo(CAMPUS, local_seq, pack(1_000 + local_seq), {}, True,
                           chunk.position, chunk.xid)
            changes = chunk.changes or [RawInserts(t, n, text) for t, n, text in chunk.raw]
            with engine.target.apply_session() as s:
                resolver.apply(s, info, changes)
                s.advance(CAMPUS, local_seq, chunk.position)
            engine.source.local_recorded(chunk.position)
            db.position = chunk.position

    def remote(origin: str, seq: int, hlc: int, deps: dict[str, int],
               changes: list[Change]) -> None:
        try:
            with engine.target.apply_session() as s:
                resolver.apply(s, TxnInfo(origin, seq, hlc, deps, False), changes)
                s.advance(origin, seq)
            trace.append(f"{origin}/{seq} applied")
        except PendingLocalChange:
            trace.append(f"{origin}/{seq} waits for capture")
            record()
            remote(origin, seq, hlc, deps, changes)

    for kind, step in history.steps:
        if kind == "remote":
            remote(*step)
            continue
        table, row, mode = step
        user_write(db, table, row, savepoint=mode == "savepoint")
        unrecorded += 1
        if mode != "pending":
            record()
    record()
    return trace, resolver


def capture(db: Database, expected: int) -> list[Any]:
    """The ``expected`` local transactions committed since the last capture."""
    import time
    out: list[Any] = []
    position = db.position
    deadline = time.monotonic() + 30
    sqlite = isinstance(db, SQLiteDatabase)  # its capture reads what is committed, at once
    while True:
        got = [c for c in db.engine.source.capture(position, 1000) if c.rows]
        out += got
        position = got[-1].position if got else position
        if sqlite and not got or not sqlite and len(out) >= expected:
            break
        assert time.monotonic() < deadline, f"capture gave {len(out)} of {expected} transactions"
    assert all(c.final for c in out), out
    return out


def user_write(db: Database, table: str, row: tuple[Any, ...], savepoint: bool) -> None:
    cols = "k, v, note" if table == "kv" else "id, amount, body, tag"
    if isinstance(db, PgDatabase):
        values = [v.text if isinstance(v, Json) else v for v in row]
        marks = ", ".join("%s" for _ in row)
        with db.user() as conn, conn.transaction():
            if savepoint:
                conn.execute("SAVEPOINT app")
            conn.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks}) ON CONFLICT "
                         f"({_key(table)}) DO UPDATE SET ({cols}) = ({marks})", values + values)
            if savepoint:
                conn.execute("RELEASE SAVEPOINT app")
        return
    from node.engines.sqlite.values import to_sqlite
    values = [to_sqlite(v) for v in row]
    conn = db.user()
    try:
        conn.execute(f"INSERT OR REPLACE INTO {table} ({cols}) VALUES "
                     f"({', '.join('?' for _ in row)})", values)
    finally:
        conn.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
@pytest.mark.parametrize("seed", SEEDS)
def test_fast_and_exact_paths_leave_identical_databases(
        kind: str, seed: int, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    pg = request.getfixturevalue("pg_server") if kind == "postgres" else None
    history = History(seed)
    outcomes = []
    for fast in (False, True):
        db = open_database(kind, tmp_path, f"fast{fast}", pg)
        try:
            trace, resolver = replay(db, history, fast)
            outcomes.append((trace, db.dump(), resolver))
        finally:
            db.engine.close()
    (exact_trace, exact, exact_resolver), (fast_trace, fast, fast_resolver) = outcomes
    assert fast_trace == exact_trace
    for part in exact:
        assert fast[part] == exact[part], part
    assert exact_resolver.fresh_rows == 0
    assert fast_resolver.fresh_rows > 0, "the fast path never ran"
    assert fast_resolver.conflicts == exact_resolver.conflicts
