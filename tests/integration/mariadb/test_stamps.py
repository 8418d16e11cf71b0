"""Row stamps on a real MariaDB server: a user's change that capture has not
recorded yet makes the row *pending* for apply (it waits instead of
overwriting), and once recorded the change meets the foreign one as a
conflict the policy decides (node.engines.mariadb.stamps, versions)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from node.conflicts.driver import PendingLocalChange, Resolver, TxnInfo
from node.conflicts.log import ConflictQuery
from node.engines.mariadb.engine import MariaEngine
from node.hlc import HybridClock
from node.model import CapturedChunk, Change, Op
from ringsync.commands.demo.mariadb import LocalMariaDB
from ringsync.conflict_policy import ConflictSettings
from tests.mariadb_fixtures import connect


@pytest.fixture
def engine(mariadb_server: LocalMariaDB, mariadb_db: str) -> Iterator[MariaEngine]:
    conn = connect(mariadb_server, mariadb_db)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE kv(k VARCHAR(20) PRIMARY KEY, v BIGINT) ENGINE=InnoDB")
        cur.execute("INSERT INTO kv VALUES ('old', 1)")  # before ringsync: a base version
    conn.close()
    e = MariaEngine(mariadb_server.url(database=mariadb_db), ("kv",), "m")
    e.open()
    e.source.start_capture(0)
    yield e
    e.close()


def user(engine: MariaEngine, mariadb_server: LocalMariaDB, statement: str) -> None:
    conn = connect(mariadb_server, engine.ctx.url.database)
    with conn.cursor() as cur:
        cur.execute(statement)
    conn.close()


def captured(engine: MariaEngine, count: int) -> list[CapturedChunk]:
    out: list[CapturedChunk] = []
    deadline = time.monotonic() + 30
    while sum(c.final for c in out) < count:
        assert time.monotonic() < deadline, f"capture handed over only {out}"
        out += engine.source.capture(0, 1000)
    return out


def test_an_unrecorded_local_change_holds_a_foreign_one_until_recorded(
        engine: MariaEngine, mariadb_server: LocalMariaDB) -> None:
    resolver = Resolver(dict(engine.shapes()), ConflictSettings(), HybridClock())
    remote = TxnInfo("a", 1, 100, {}, False)
    base = ("old", 1)
    user(engine, mariadb_server, "UPDATE kv SET v = 2 WHERE k = 'old'")
    # the foreign change meets a row whose stamp its versions do not record
    with pytest.raises(PendingLocalChange), engine.target.apply_session() as session:
        resolver.apply(session, remote, [Change("kv", Op.UPDATE, new=("old", 9), old=base)])
    assert engine.inspect.rows("kv") == [("old", 2)]
    # capture hands the user's transaction over with its highest stamp; the
    # node records its versions (as apply does for the campus's own journal)
    (chunk,) = captured(engine, 1)
    assert chunk.xid and chunk.xid > 0
    own = TxnInfo("m", 1, 50, {}, True, chunk.position, chunk.xid)
    with engine.target.apply_session() as session:
        resolver.apply(session, own, chunk.changes)
        session.advance("m", 1, chunk.position)
    # now the two concurrent updates are a conflict: latest (hlc 100) wins, logged
    with engine.target.apply_session() as session:
        resolver.apply(session, remote, [Change("kv", Op.UPDATE, new=("old", 9), old=base)])
    assert engine.inspect.rows("kv") == [("old", 9)]
    [entry] = engine.store.conflicts(ConflictQuery(table="kv"))
    assert entry.kind == "update_update"


def test_a_later_local_change_keeps_the_row_pending_after_an_earlier_one_is_recorded(
        engine: MariaEngine, mariadb_server: LocalMariaDB) -> None:
    resolver = Resolver(dict(engine.shapes()), ConflictSettings(), HybridClock())
    user(engine, mariadb_server, "UPDATE kv SET v = 2 WHERE k = 'old'")
    (first,) = captured(engine, 1)
    user(engine, mariadb_server, "UPDATE kv SET v = 3 WHERE k = 'old'")  # not recorded yet
    with engine.target.apply_session() as session:  # the first is recorded
        resolver.apply(session, TxnInfo("m", 1, 50, {}, True, first.position, first.xid),
                       first.changes)
    with pytest.raises(PendingLocalChange), engine.target.apply_session() as session:
        resolver.apply(session, TxnInfo("a", 1, 100, {}, False),
                       [Change("kv", Op.DELETE, old=("old", 1))])
    (second,) = captured(engine, 1)
    assert second.xid is not None and first.xid is not None and second.xid > first.xid
    with engine.target.apply_session() as session:
        resolver.apply(session, TxnInfo("m", 2, 60, {}, True, second.position, second.xid),
                       second.changes)
        resolver.apply(session, TxnInfo("a", 1, 100, {}, False),
                       [Change("kv", Op.DELETE, old=("old", 1))])
    assert engine.inspect.rows("kv") == []


def test_applied_writes_leave_stamps_alone(engine: MariaEngine) -> None:
    resolver = Resolver(dict(engine.shapes()), ConflictSettings(), HybridClock())
    for seq, v in ((1, 5), (2, 6)):
        with engine.target.apply_session() as session:
            resolver.apply(session, TxnInfo("a", seq, 100 + seq, {"a": seq - 1}, False),
                           [Change("kv", Op.UPDATE, new=("old", v), old=("old", 1))])
    assert engine.inspect.rows("kv") == [("old", 6)]
    assert engine.store.conflicts(ConflictQuery()) == []  # never pending, never a conflict


def test_a_normal_start_remakes_no_stamp_trigger(engine: MariaEngine,
                                                  mariadb_server: LocalMariaDB) -> None:
    """Making a trigger waits for every open transaction on its table: a node
    that starts again with the same tables must make none."""
    def created() -> dict[str, object]:
        conn = connect(mariadb_server, engine.ctx.url.database)
        with conn.cursor() as cur:
            cur.execute("SELECT TRIGGER_NAME, CREATED FROM information_schema.TRIGGERS "
                        "WHERE TRIGGER_SCHEMA = DATABASE() AND TRIGGER_NAME LIKE '\\_rs\\_st\\_%'")
            out = dict(cur.fetchall())
        conn.close()
        return out

    before = created()
    assert len(before) == 3
    time.sleep(0.05)  # CREATED counts hundredths of a second: a remade one would differ
    again = MariaEngine(mariadb_server.url(database=engine.ctx.url.database), ("kv",), "m")
    again.open()
    again.close()
    assert created() == before


def test_a_write_that_changes_nothing_leaves_the_row_not_pending(
        engine: MariaEngine, mariadb_server: LocalMariaDB) -> None:
    """MariaDB logs no row event for an UPDATE that changes nothing, though
    the trigger runs: were the row stamped, nothing would ever record the
    stamp and a foreign change would wait for ever."""
    resolver = Resolver(dict(engine.shapes()), ConflictSettings(), HybridClock())
    user(engine, mariadb_server, "UPDATE kv SET v = 1 WHERE k = 'old'")  # as it is
    user(engine, mariadb_server, "UPDATE kv SET v = v WHERE k = 'old'")
    with engine.target.apply_session() as session:  # not pending: applies at once
        resolver.apply(session, TxnInfo("a", 1, 100, {}, False),
                       [Change("kv", Op.UPDATE, new=("old", 4), old=("old", 1))])
    assert engine.inspect.rows("kv") == [("old", 4)]
    user(engine, mariadb_server, "UPDATE kv SET k = 'OLD' WHERE k = 'old'")  # bytes differ
    (chunk,) = captured(engine, 1)
    assert [c.new for c in chunk.changes] == [("OLD", 4)] and chunk.xid


def test_a_local_change_committed_after_the_session_first_read_is_still_pending(
        engine: MariaEngine, mariadb_server: LocalMariaDB) -> None:
    """The apply session is REPEATABLE READ: its first plain read fixes a
    snapshot. A user's change that commits after that, to a row apply then
    locks and reads, must still be seen as pending: the stamp is read as
    the row is (the latest committed), not from the snapshot, or apply
    would overwrite the user's change as if its versions were recorded
    (the three-engine ring's rare divergence)."""
    resolver = Resolver(dict(engine.shapes()), ConflictSettings(), HybridClock())
    user(engine, mariadb_server, "INSERT INTO kv VALUES ('other', 1)")
    (chunk,) = captured(engine, 1)
    with engine.target.apply_session() as session:
        resolver.apply(session, TxnInfo("m", 1, 50, {}, True, chunk.position, chunk.xid),
                       chunk.changes)
        session.advance("m", 1, chunk.position)
    with pytest.raises(PendingLocalChange), engine.target.apply_session() as session:
        resolver.apply(session, TxnInfo("a", 1, 100, {}, False),  # the snapshot is fixed here
                       [Change("kv", Op.UPDATE, new=("other", 7), old=("other", 1))])
        user(engine, mariadb_server, "UPDATE kv SET v = 2 WHERE k = 'old'")  # commits after it
        resolver.apply(session, TxnInfo("a", 2, 101, {}, False),
                       [Change("kv", Op.UPDATE, new=("old", 9), old=("old", 1))])
    assert sorted(engine.inspect.rows("kv")) == [("old", 2), ("other", 1)]
