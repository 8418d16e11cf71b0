"""The ConflictStore contract, and convergence with real engines: a SQLite,
a PostgreSQL and a MariaDB campus.

ConflictStoreContract runs on every engine (tests/contract/campuses.py): an
operator's local write, and the conflict log's entries listed, counted,
marked and pruned.

The same Hypothesis state machine idea as tests/unit/node/test_conflict_convergence.py,
but every replica is a real campus database: each write and each delivery
goes through the engine's apply session and node.conflicts.driver, so row
versions are stored and read back by the engines themselves (SQLite and
MariaDB ``_rs_meta_*``, PostgreSQL ``ringsync.meta_*``), with their types. A campus's
own write is applied the same way, as a version that saw everything its
campus had applied. At the end every campus must hold identical rows, read
back from its database, and the delta and monotonic columns must hold what
the campuses wrote.

More examples: RINGSYNC_ENGINE_EXAMPLES=300 pytest tests/contract/test_conflict_store_contract.py
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule

from node.conflicts.deadletter import apply_guarded
from node.conflicts.driver import Resolver, TxnInfo
from node.engines.mariadb.engine import MariaEngine
from node.engines.postgres import versions as pgversions
from node.engines.postgres.engine import PostgresEngine
from node.engines.sqlite.engine import SQLiteEngine
from node.hlc import HybridClock
from node.model import Change, Op
from ringsync.commands.demo.cluster import free_port
from ringsync.commands.demo.mariadb import LocalMariaDB
from ringsync.commands.demo.postgres import LocalPostgres
from ringsync.conflict_policy import ConflictSettings, TablePolicy
from tests.contract.campuses import Campus as CampusDatabase
from tests.contract.campuses import MariaDBCampus, PostgresCampus, SQLiteCampus
from tests.mariadb_fixtures import connect as mariadb_connect

STATUS = ("ordered", "collected", "resulted", "verified", "amended")
TABLES = ("t_latest", "t_rank", "t_merge")
POLICIES = ConflictSettings(tables={
    "t_rank": TablePolicy(rule="rank", rank_column="x", rank_order=("STAT", "routine")),
    "t_merge": TablePolicy(rule="merge", monotonic={"y": STATUS}, delta=("n",)),
})
EXAMPLES = int(os.environ.get("RINGSYNC_ENGINE_EXAMPLES", "60"))
CAMPUSES = ("a", "b", "c")


def sqlite_campus(path: Path, campus: str) -> SQLiteEngine:
    conn = sqlite3.connect(path)
    for t in TABLES:
        conn.execute(f"CREATE TABLE {t}(k INTEGER PRIMARY KEY, x TEXT, y TEXT, n INTEGER)")
    conn.commit()
    conn.close()
    engine = SQLiteEngine(path, TABLES, campus)
    engine.open()
    return engine


def mariadb_campus(server: LocalMariaDB, campus: str) -> MariaEngine:
    database = f"conv_{uuid.uuid4().hex[:8]}"
    server.admin(f"CREATE DATABASE {database}")
    conn = mariadb_connect(server, database)
    try:
        with conn.cursor() as cur:
            for t in TABLES:
                cur.execute(f"CREATE TABLE {t}(k BIGINT PRIMARY KEY, x TEXT, y TEXT, n BIGINT)")
    finally:
        conn.close()
    engine = MariaEngine(server.url(database=database), TABLES, campus)
    engine.open()
    return engine


@pytest.fixture(scope="module")
def campuses(tmp_path_factory: pytest.TempPathFactory,
             mariadb_server: LocalMariaDB) -> Iterator[dict[str, Any]]:
    """A PostgreSQL server of its own: engine b's apply connection holds the
    replication origin (one session per server) for the whole module."""
    root = tmp_path_factory.mktemp("engines")
    pg = LocalPostgres.create(None, free_port())
    pg.start()
    engines: dict[str, Any] = {}
    try:
        engines["a"] = sqlite_campus(root / "a.db", "a")
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            for t in TABLES:
                conn.execute(f"CREATE TABLE {t}(k bigint PRIMARY KEY, x text, y text, n bigint)")
        engines["b"] = PostgresEngine(pg.dsn, TABLES, "b")
        engines["b"].open()
        engines["c"] = mariadb_campus(mariadb_server, "c")
        yield engines
    finally:
        for e in engines.values():
            e.close()
        pg.remove()


@dataclass
class Txn:
    origin: str
    seq: int
    hlc: int
    deps: dict[str, int]
    change: Change


@dataclass
class Campus:
    engine: Any
    resolver: Resolver
    seq: int = 0
    clock: int = 0
    applied: dict[str, int] = field(default_factory=dict)

    def apply(self, txn: Txn) -> None:
        info = TxnInfo(txn.origin, txn.seq, txn.hlc, txn.deps, False)
        with self.engine.target.apply_session() as session:
            apply_guarded(self.resolver, session, info, [txn.change], {}, False)
        self.applied[txn.origin] = txn.seq

    def apply_batch(self, txns: list[Txn]) -> None:
        """Several transactions in one session, resolved together as apply does."""
        with self.engine.target.apply_session() as session:
            self.resolver.apply_many(session, [
                (TxnInfo(t.origin, t.seq, t.hlc, t.deps, False), [t.change]) for t in txns])
        for t in txns:
            self.applied[t.origin] = t.seq

    def row(self, table: str, key: int) -> tuple[Any, ...] | None:
        return self.engine.store.read_version(table, (key,))[0]


@pytest.mark.parametrize("fast", [False, True], ids=["exact", "fast"])
@pytest.mark.parametrize("staged", [False, True], ids=["statements", "staging-tables"])
def test_real_engines_converge_under_concurrent_writes(
        campuses: dict[str, Any], staged: bool, fast: bool,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Single and batched deliveries; ``staged``: PostgreSQL reads and writes
    every run through COPY and staging tables (node.engines.postgres.stage), which
    apply otherwise uses only for long runs; ``fast``: runs of fresh inserts take
    the fast path (node.conflicts.fresh), or every run the exact one."""
    if staged:
        monkeypatch.setattr(pgversions, "STAGE_MIN_ROWS", 1)

    class Machine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.c: dict[str, Campus] = {}
            for name, engine in campuses.items():
                with engine.target.apply_session() as session:
                    for t in TABLES:
                        session.clear(t)
                shapes = dict(engine.shapes())
                self.c[name] = Campus(engine, Resolver(shapes, POLICIES, HybridClock(),
                                                       fast=fast))
            self.history: list[Txn] = []
            self.wall = 1_000_000
            self.increments: dict[tuple[str, int], int] = {}
            self.deleted: set[tuple[str, int]] = set()
            self.furthest: dict[tuple[str, int], int] = {}

        def ready(self, name: str, applied: dict[str, int] | None = None) -> list[Txn]:
            applied = self.c[name].applied if applied is None else applied
            return [t for t in self.history if t.origin != name
                    and t.seq == applied.get(t.origin, 0) + 1
                    and all(applied.get(o, 0) >= s for o, s in t.deps.items() if o != name)]

        @rule(name=st.sampled_from(CAMPUSES), table=st.sampled_from(TABLES),
              key=st.integers(0, 1), delete=st.integers(0, 5),
              x=st.sampled_from(("STAT", "routine")), status=st.integers(0, 4),
              inc=st.integers(-2, 4), touch=st.sets(st.sampled_from((1, 2, 3)), min_size=1))
        def write(self, name: str, table: str, key: int, delete: int, x: str, status: int,
                  inc: int, touch: set[int]) -> None:
            campus = self.c[name]
            old = campus.row(table, key)
            if old is None:
                change = Change(table, Op.INSERT, new=(key, x, STATUS[status], inc))
            elif delete == 0:
                change = Change(table, Op.DELETE, old=old)
            else:
                row = list(old)
                if 1 in touch:
                    row[1] = x
                if 2 in touch:
                    row[2] = STATUS[max(status, STATUS.index(old[2]))]
                if 3 in touch:
                    row[3] = old[3] + inc
                change = Change(table, Op.UPDATE, new=tuple(row), old=old)
            campus.seq += 1
            self.wall += 3
            campus.clock = max(campus.clock + 1, self.wall)
            deps = {o: s for o, s in campus.applied.items() if o != name}
            deps[name] = campus.seq - 1
            txn = Txn(name, campus.seq, campus.clock, deps, change)
            campus.apply(txn)
            if table != "t_merge" or change.new is None:
                assert campus.row(table, key) == change.new, "a campus's own write stays"
            self.history.append(txn)
            k = (table, key)
            if change.op is Op.DELETE:
                self.deleted.add(k)
            else:
                assert change.new is not None
                before = change.old[3] if change.old is not None else 0
                self.increments[k] = self.increments.get(k, 0) + change.new[3] - before
                self.furthest[k] = max(self.furthest.get(k, 0), STATUS.index(change.new[2]))

        @precondition(lambda self: self.history)
        @rule(name=st.sampled_from(CAMPUSES), pick=st.integers(0, 1000))
        def deliver(self, name: str, pick: int) -> None:
            ready = self.ready(name)
            if ready:
                txn = ready[pick % len(ready)]
                self.c[name].clock = max(self.c[name].clock, txn.hlc)
                self.c[name].apply(txn)

        @precondition(lambda self: self.history)
        @rule(name=st.sampled_from(CAMPUSES), count=st.integers(2, 6), pick=st.integers(0, 1000))
        def deliver_batch(self, name: str, count: int, pick: int) -> None:
            applied = dict(self.c[name].applied)
            batch: list[Txn] = []
            for _ in range(count):
                ready = self.ready(name, applied)
                if not ready:
                    break
                batch.append(ready[pick % len(ready)])
                applied[batch[-1].origin] = batch[-1].seq
            if batch:
                self.c[name].clock = max(self.c[name].clock, *(t.hlc for t in batch))
                self.c[name].apply_batch(batch)

        def teardown(self) -> None:
            for _ in range(len(self.history) * len(CAMPUSES) + 1):
                moved = False
                for name in CAMPUSES:
                    ready = self.ready(name)
                    if ready:
                        self.c[name].apply(ready[-1])
                        moved = True
                if not moved:
                    break
            for table in TABLES:
                held = {n: sorted(c.engine.inspect.rows(table)) for n, c in self.c.items()}
                assert held["a"] == held["b"] == held["c"], f"{table} diverged: {held}"
                if table == "t_merge":
                    for row in held["a"]:
                        k = (table, row[0])
                        if k not in self.deleted:
                            assert row[3] == self.increments[k], "delta lost an increment"
                            assert STATUS.index(row[2]) == self.furthest[k]

    Machine.TestCase.settings = settings(
        max_examples=EXAMPLES, stateful_step_count=25, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    Machine.TestCase().runTest()


@pytest.mark.parametrize("fast", [False, True], ids=["exact", "fast"])
def test_a_row_a_user_inserts_while_apply_decides_is_not_overwritten(
        campuses: dict[str, Any], fast: bool) -> None:
    """PostgreSQL: apply read the key as absent (no row to lock); a user inserts
    it before apply writes. Apply must wait for capture, not overwrite it: on
    the exact path (the user writes after read_versions) and on the fast path
    for fresh rows (after its check that no key has a row or versions)."""
    from node.conflicts.driver import PendingLocalChange

    engine = campuses["b"]
    with engine.target.apply_session() as session:
        session.clear("t_latest")
    resolver = Resolver(dict(engine.shapes()), POLICIES, HybridClock(), fast=fast)
    with pytest.raises(PendingLocalChange), engine.target.apply_session() as session:
        name = "_taken" if fast else "read_versions"
        decide = getattr(session, name)

        def decide_then_a_user_inserts(*args: Any) -> Any:
            out = decide(*args)
            with psycopg.connect(engine.ctx.dsn, autocommit=True) as user:
                user.execute("INSERT INTO t_latest VALUES (7, 'mine', 'ordered', 0)")
            return out

        setattr(session, name, decide_then_a_user_inserts)
        resolver.apply(session, TxnInfo("a", 1, 5, {}, False),
                       [Change("t_latest", Op.INSERT, new=(7, "theirs", "ordered", 0))])
    assert engine.store.read_version("t_latest", (7,))[0] == (7, "mine", "ordered", 0)
    assert resolver.fresh_rows == 0


def test_staging_tables_survive_a_rollback_to_savepoint(
        campuses: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL: a staging table first created under a savepoint that is then
    rolled back (apply isolating a failing change) is made again on next use."""
    monkeypatch.setattr(pgversions, "STAGE_MIN_ROWS", 1)
    engine = campuses["b"]
    engine.ctx.apply.execute("DISCARD TEMP")  # as after a reconnect: no staging table yet
    engine.ctx.apply.commit()
    engine.ctx.stager = type(engine.ctx.stager)()
    with engine.target.apply_session() as session:
        session.clear("t_latest")
    resolver = Resolver(dict(engine.shapes()), POLICIES, HybridClock())
    with engine.target.apply_session() as session:
        session.savepoint()
        resolver.apply(session, TxnInfo("a", 1, 5, {}, False),
                       [Change("t_latest", Op.INSERT, new=(1, "undone", "ordered", 0))])
        session.rollback_to_savepoint()
        resolver.apply(session, TxnInfo("a", 2, 6, {}, False),
                       [Change("t_latest", Op.INSERT, new=(2, "kept", "ordered", 0))])
    assert engine.store.read_version("t_latest", (1,))[0] is None
    assert engine.store.read_version("t_latest", (2,))[0] == (2, "kept", "ordered", 0)


def test_a_staging_table_loaded_before_a_savepoint_is_emptied_after_rolling_back_to_it(
        campuses: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL: a staging table created and loaded before a savepoint, then
    used again under it and rolled back to it (apply holding hot rows retries
    its foreign part), must not keep the rows loaded before the savepoint."""
    monkeypatch.setattr(pgversions, "STAGE_MIN_ROWS", 1)
    engine = campuses["b"]
    engine.ctx.apply.execute("DISCARD TEMP")
    engine.ctx.apply.commit()
    engine.ctx.stager = type(engine.ctx.stager)()
    with engine.target.apply_session() as session:
        session.clear("t_latest")
    shape = engine.shapes()["t_latest"]
    stage = None
    with engine.target.apply_session() as session:
        keys = [(k,) for k in range(1, 70)]
        stage = engine.ctx.stager.load(session.cur, psycopg.sql.Identifier("t_latest"), "t_latest",
                                   shape.key_columns, keys)
        session.savepoint()
        engine.ctx.stager.load(session.cur, psycopg.sql.Identifier("t_latest"), "t_latest",
                           shape.key_columns, [(500,)])
        session.rollback_to_savepoint()
        engine.ctx.stager.load(session.cur, psycopg.sql.Identifier("t_latest"), "t_latest",
                           shape.key_columns, [(700,)])
        held = [r[0] for r in session.cur.execute(
            psycopg.sql.SQL("SELECT * FROM {}").format(stage)).fetchall()]
    assert held == [700]


def test_concurrent_delta_only_updates_add_count_and_log_nothing(
        campuses: dict[str, Any]) -> None:
    """SQLite (a) and PostgreSQL (b): two campuses add to a counter row without
    seeing each other. Each engine gets them in a different order (one by one
    at a, in one batch at b): the row holds the sum, nothing is logged,
    delta_merged counts each. Row 2 also has a plain column both changed: that
    is still a conflict, logged."""
    from node.conflicts.log import ConflictQuery

    counters = ConflictSettings(tables={"t_latest": TablePolicy(delta=("n",))})
    seed = TxnInfo("p", 1, 10, {}, False)
    rows = [Change("t_latest", Op.INSERT, new=(k, "acct", "ordered", 100)) for k in (1, 2)]
    base = [r.new for r in rows]

    def add(origin: str, hlc: int, amount: int, x: str) -> tuple[TxnInfo, list[Change]]:
        assert all(b is not None for b in base)
        return TxnInfo(origin, 1, hlc, {"p": 1}, False), [
            Change("t_latest", Op.UPDATE, new=(1, "acct", "ordered", 100 + amount), old=base[0]),
            Change("t_latest", Op.UPDATE, new=(2, x, "ordered", 100 + amount), old=base[1])]

    q, r = add("q", 20, 10, "from q"), add("r", 30, 5, "from r")
    for name, order, batched in (("a", [q, r], False), ("b", [r, q], True)):
        engine = campuses[name]
        with engine.target.apply_session() as session:
            session.clear("t_latest")
        resolver = Resolver(dict(engine.shapes()), counters, HybridClock())
        before = engine.store.conflict_counts()
        newest = engine.store.conflicts(ConflictQuery(limit=1))
        top = newest[0].id if newest else 0
        with engine.target.apply_session() as session:
            resolver.apply(session, seed, rows)
        if batched:
            with engine.target.apply_session() as session:
                resolver.apply_many(session, order)
        else:
            for txn, changes in order:
                with engine.target.apply_session() as session:
                    resolver.apply(session, txn, changes)
        assert engine.store.read_version("t_latest", (1,))[0] == (1, "acct", "ordered", 115), name
        assert engine.store.read_version("t_latest", (2,))[0] == (2, "from r", "ordered", 115), name
        after = engine.store.conflict_counts()
        assert after["delta_merged"] - before.get("delta_merged", 0) == 1, (name, after)
        logged = [e for e in engine.store.conflicts(ConflictQuery(table="t_latest", limit=1000))
                  if e.id > top]
        assert [(e.key, e.kind) for e in logged] == [("[2]", "update_update")], name
        assert after["logged"] - before["logged"] == 1, name


class ConflictStoreContract(CampusDatabase):
    def test_an_operators_write_is_an_ordinary_local_write(self, engine: Any) -> None:
        engine.store.write_local("kv", ("op",), ("op", 1))
        assert self.app_rows() == [("op", 1)]
        assert engine.store.read_version("kv", ("op",)) == (("op", 1), None)
        engine.store.write_local("kv", ("op",), ("op", 2), prior=("op", 1))
        engine.store.write_local("kv", ("gone",), None, prior=("gone", 5))
        assert self.app_rows() == [("op", 2)]
        changes = [c for chunk in self.capture_all(engine) for c in chunk.changes]
        assert [(c.op, c.new or c.old) for c in changes] == [
            (Op.INSERT, ("op", 1)), (Op.UPDATE, ("op", 1)), (Op.UPDATE, ("op", 2)),
            (Op.INSERT, ("gone", 5)), (Op.DELETE, ("gone", 5))]

    def test_a_logged_conflict_is_listed_counted_marked_and_pruned(self, engine: Any) -> None:
        from node.conflicts.deadletter import DeadLetterQuery
        from node.conflicts.log import ConflictQuery

        store = engine.store
        assert store.conflicts(ConflictQuery()) == []
        assert store.dead_letter_list(DeadLetterQuery()) == []
        assert sum(store.dead_letter_counts().values()) == 0
        resolver = Resolver(dict(engine.shapes()), ConflictSettings(), HybridClock())
        base = ("a", 1)
        with engine.target.apply_session() as session:
            resolver.apply(session, TxnInfo("p", 1, 10, {}, False),
                           [Change("kv", Op.INSERT, new=base)])
        for origin, hlc, v in (("q", 20, 2), ("r", 30, 3)):  # neither saw the other
            with engine.target.apply_session() as session:
                resolver.apply(session, TxnInfo(origin, 1, hlc, {"p": 1}, False),
                               [Change("kv", Op.UPDATE, new=("a", v), old=base)])
        assert engine.inspect.rows("kv") == [("a", 3)]
        [entry] = store.conflicts(ConflictQuery(table="kv"))
        assert (entry.key, entry.kind, entry.state) == ('["a"]', "update_update", "logged")
        assert store.conflict_counts()["logged"] == 1
        store.mark_conflict(entry.id, "resolved", "kept by the operator")
        [marked] = store.conflicts(ConflictQuery(table="kv"))
        assert (marked.state, marked.resolution) == ("resolved", "kept by the operator")
        store.prune_conflicts(0, 0)
        assert store.conflicts(ConflictQuery()) == []


    def test_copy_text_rows_behind_a_parked_row_go_change_by_change(self, engine: Any) -> None:
        """A transaction decoded whole, its inserts still COPY text, that meets a
        row parked earlier in its batch goes change by change: its rows apply,
        and the parked row's later change parks behind it."""
        from node.conflicts.deadletter import DeadLetterQuery
        from node.model import RawInserts
        from node.rawcopy import encode_rows

        resolver = Resolver(dict(engine.shapes()), ConflictSettings(), HybridClock())
        raw = RawInserts("kv", 2, encode_rows([["r1", "1"], ["r2", "2"]]))
        with engine.target.apply_session() as session:
            apply_guarded(resolver, session, TxnInfo("p", 1, 10, {}, False),
                          [raw, Change("kv", Op.INSERT, new=("held", 3))],  # type: ignore[list-item]
                          {("kv", '["held"]'): 0}, False)
        assert sorted(engine.inspect.rows("kv")) == [("r1", 1), ("r2", 2)]
        [parked] = engine.store.dead_letter_list(DeadLetterQuery(table="kv"))
        assert parked.key == '["held"]' and "waiting behind" in parked.error


class TestSQLiteConflictStore(SQLiteCampus, ConflictStoreContract):
    pass


class TestPostgresConflictStore(PostgresCampus, ConflictStoreContract):
    pass


class TestMariaDBConflictStore(MariaDBCampus, ConflictStoreContract):
    def test_an_operators_write_is_an_ordinary_local_write(self, engine: Any) -> None:
        """As on the other engines, but MariaDB logs no row event for a write
        that changes nothing: the prior ("op", 1), equal to the row already
        there, is not captured."""
        engine.store.write_local("kv", ("op",), ("op", 1))
        engine.store.write_local("kv", ("op",), ("op", 2), prior=("op", 1))
        engine.store.write_local("kv", ("gone",), None, prior=("gone", 5))
        assert self.app_rows() == [("op", 2)]
        changes = [c for chunk in self.capture_all(engine) for c in chunk.changes]
        assert [(c.op, c.new or c.old) for c in changes] == [
            (Op.INSERT, ("op", 1)), (Op.UPDATE, ("op", 2)),
            (Op.INSERT, ("gone", 5)), (Op.DELETE, ("gone", 5))]

    def test_reasserting_a_row_as_it_is_still_replicates(self, engine: Any) -> None:
        """A repair writes a campus's copy as a new local version (ctl repair,
        reassert): unchanged, it would log nothing, so it is deleted and
        inserted again in one transaction."""
        self.app_write("INSERT INTO kv VALUES ('r', 7)")
        self.capture_all(engine)
        engine.store.write_local("kv", ("r",), ("r", 7))
        assert self.app_rows() == [("r", 7)]
        changes = [c for chunk in self.capture_all(engine) for c in chunk.changes]
        assert [(c.op, c.new or c.old) for c in changes] == [
            (Op.DELETE, ("r", 7)), (Op.INSERT, ("r", 7))]
