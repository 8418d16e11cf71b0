"""The applier's state machine (node.replication.applystate): every transition,
including the two that used to stall apply for good."""

from __future__ import annotations

import sqlite3

import pytest

from node.replication import applystate as st
from node.replication.applystate import ApplyMachine
from node.replication.transient import transient_reason
from ringsync.errors import EngineError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def machine(**kw: object) -> tuple[ApplyMachine, Clock]:
    clock = Clock()
    return ApplyMachine(clock=clock, jitter=lambda: 0.5, **kw), clock  # type: ignore[arg-type]


HEAD = ("yuecheng", 7)


def test_a_failed_batch_halves_its_window_until_the_failing_transaction_is_alone() -> None:
    m, _ = machine(max_remote=64)
    assert m.remote_limit() == 64
    windows = []
    remote = 64
    while remote > 1:
        step = m.failed("boom", None, remote, HEAD)
        assert step.delay == 0 and m.state == st.ISOLATING
        remote = m.remote_limit()
        windows.append(remote)
    assert windows == [32, 16, 8, 4, 2, 1]
    assert m.isolations == 1  # one search, however many steps


def test_own_pending_transactions_never_keep_isolation_from_the_failing_one() -> None:
    """The old loop counted this campus's own unrecorded transactions in the
    plan, so a plan of one own + one foreign transaction was 'a batch' forever
    and never reached the attempt limit (the poison-row livelock)."""
    m, _ = machine()
    m.window = 1
    for attempt in range(1, st.MAX_ATTEMPTS + 1):
        assert not m.isolate(HEAD, 1)
        step = m.failed("CHECK constraint", None, 1, HEAD)  # remote == 1, whatever the locals
        assert m.state == st.RETRYING
        assert m.attempts[HEAD] == attempt
        if attempt < st.MAX_ATTEMPTS:
            assert step.delay == pytest.approx(st.RETRY_MIN_SECONDS * 2 ** (attempt - 1))
    assert m.isolate(HEAD, 1)
    m.started(1, HEAD)
    assert m.state == st.CHANGE_BY_CHANGE
    # Should even change-by-change fail (outside its savepoints), it backs off, never spins.
    again = m.failed("lock failed", None, 1, HEAD)
    assert again.delay >= st.RETRY_MIN_SECONDS * 2 ** (st.MAX_ATTEMPTS - 1)
    assert m.isolate(HEAD, 1)
    m.succeeded([HEAD])
    assert HEAD not in m.attempts and m.state == st.BATCH


def test_success_doubles_the_window_back_to_the_full_batch() -> None:
    m, _ = machine(max_remote=16)
    m.failed("x", None, 16, HEAD)
    m.failed("x", None, 8, HEAD)
    assert m.remote_limit() == 4
    m.succeeded([HEAD])
    assert m.remote_limit() == 8
    m.succeeded([])
    m.succeeded([])
    assert m.remote_limit() == 16


def test_transient_errors_are_retried_with_jitter_and_never_count_towards_parking() -> None:
    m, _ = machine()
    delays = []
    for _ in range(20):
        step = m.failed("deadlock detected", "deadlock", 1, HEAD)
        delays.append(step.delay)
    assert HEAD not in m.attempts and not m.isolate(HEAD, 1)
    assert m.transient_retries == 20 and m.state == st.RETRYING
    assert all(0 < d <= st.TRANSIENT_MAX_SECONDS for d in delays)
    assert delays[0] < delays[5]  # backs off
    assert m.window == m.max_remote  # a transient error says nothing about the batch
    m.succeeded([HEAD])
    assert m.transient_streak == 0


def test_a_pending_local_change_waits_for_the_journal_and_becomes_an_alert_in_time() -> None:
    m, clock = machine(alert_after=30.0)
    step = m.pending_local("lab_results (5,) has a local change")
    assert step.wake_on_journal and step.delay == st.PENDING_WAIT_SECONDS
    assert m.state == st.WAITING_CAPTURE and "capture" in m.waiting_for
    assert m.alert() == ""
    clock.now += 10
    m.pending_local("again")  # the same episode: since does not move
    clock.now += 25
    alert = m.alert()
    assert "waiting capture for 35s" in alert and "capture to journal" in alert
    m.succeeded([HEAD])
    assert m.alert() == "" and m.state == st.BATCH


def test_moving_between_stuck_states_keeps_one_clock() -> None:
    m, clock = machine(alert_after=30.0)
    m.failed("x", None, 4, HEAD)           # isolating
    clock.now += 20
    m.failed("x", None, 1, HEAD)           # retrying
    clock.now += 20
    assert m.state == st.RETRYING and m.alert().startswith("apply retrying for 40s")
    assert "last error: x" in m.alert()


def test_a_set_writer_wait_limits_one_plan_or_waits_when_it_is_first() -> None:
    m, _ = machine(max_remote=100)
    step = m.set_writer(3, "set lab: revoking")
    assert step.delay == 0 and m.remote_limit() == 3
    assert m.remote_limit() == 100  # once
    step = m.set_writer(0, "set lab: revoking")
    assert step.wake_on_journal and m.state == st.WAITING_SET_WRITER
    assert m.remote_limit() == 100


def test_own_recording_failing_backs_off_without_parking_anything() -> None:
    m, clock = machine()
    first = m.failed("disk full", None, 0, ("chaohui", 3))
    second = m.failed("disk full", None, 0, ("chaohui", 3))
    assert m.state == st.RETRYING and second.delay > first.delay and not m.attempts
    clock.now += 31
    assert "recording this campus's own versions" in m.alert()


def test_nothing_to_do_is_idle_and_clears_the_alert() -> None:
    m, clock = machine()
    m.pending_local("x")
    clock.now += 100
    assert m.alert()
    step = m.nothing_to_do()
    assert m.state == st.IDLE and m.alert() == "" and step.wake_on_journal


class _PgError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


@pytest.mark.parametrize("state,reason", [
    ("40P01", "deadlock"), ("40001", "serialization failure"), ("55P03", "lock timeout"),
    ("57P01", "server shutting down"), ("08006", "connection lost")])
def test_postgres_transient_states_are_named_through_the_engine_wrapper(
        state: str, reason: str) -> None:
    try:
        try:
            raise _PgError(state)
        except _PgError as e:
            raise EngineError("apply failed on PostgreSQL") from e
    except EngineError as wrapped:
        assert transient_reason(wrapped) == reason


@pytest.mark.parametrize("state", ["23505", "23514", "22003", "42P01"])
def test_errors_the_same_change_hits_again_are_not_transient(state: str) -> None:
    assert transient_reason(_PgError(state)) is None
    assert transient_reason(ValueError("bad value")) is None


class _PsycopgLike(Exception):
    """A client-side error without SQLSTATE, as psycopg raises them."""

    def __init__(self, status: int | None) -> None:
        super().__init__("client error")
        self.pgconn = None if status is None else type("PGconn", (), {"status": status})()


_PsycopgLike.__module__ = "psycopg"
_PsycopgLike.__name__ = "OperationalError"


def test_a_psycopg_error_is_a_lost_connection_only_when_the_connection_is_not_ok() -> None:
    assert transient_reason(_PsycopgLike(None)) == "connection lost"
    assert transient_reason(_PsycopgLike(1)) == "connection lost"  # CONNECTION_BAD
    # e.g. "number of parameters must be between 0 and 65535" on a live connection
    assert transient_reason(_PsycopgLike(0)) is None


def test_sqlite_busy_is_transient_and_a_constraint_is_not() -> None:
    a = sqlite3.connect(":memory:")
    a.execute("CREATE TABLE t(x CHECK (x > 0))")
    with pytest.raises(sqlite3.IntegrityError) as caught:
        a.execute("INSERT INTO t VALUES (-1)")
    assert transient_reason(caught.value) is None
    busy = sqlite3.OperationalError("database is locked")
    busy.sqlite_errorcode = 5  # type: ignore[attr-defined]
    assert transient_reason(busy) == "database busy"
    a.close()


@pytest.mark.parametrize("code,reason", [
    (1205, "lock wait timeout"), (1213, "deadlock"), (2003, "server not taking connections"),
    (2013, "connection lost"), (1053, "server shutting down")])
def test_mariadb_transient_codes_are_named_through_the_engine_wrapper(
        code: int, reason: str) -> None:
    import pymysql

    try:
        try:
            raise pymysql.err.OperationalError(code, "as the server said")
        except pymysql.err.OperationalError as e:
            raise EngineError("apply failed on MariaDB") from e
    except EngineError as wrapped:
        assert transient_reason(wrapped) == reason
    assert transient_reason(pymysql.err.InterfaceError(0, "")) == "connection lost"
    # a duplicate key, a value out of range, a missing table: the same change hits them again
    for code in (1062, 1264, 1146):
        assert transient_reason(pymysql.err.IntegrityError(code, "x")) is None


def test_until_answered_waits_out_a_restarting_database_and_raises_anything_else() -> None:
    import asyncio

    from node.replication.transient import until_answered

    tries: list[int] = []
    notes: list[str] = []

    async def flaky() -> str:
        tries.append(1)
        if len(tries) < 4:
            raise EngineError("cannot connect") from _PgError("57P03")
        return "vector"

    got = asyncio.run(until_answered("reading the applied vector", flaky, notes.append, 0.0))
    assert got == "vector" and len(tries) == 4 and len(notes) == 3
    assert "does not answer (server not accepting connections yet)" in notes[-1]

    async def wrong() -> str:
        raise EngineError("permission denied") from _PgError("42501")

    with pytest.raises(EngineError, match="permission denied"):
        asyncio.run(until_answered("reading the applied vector", wrong, notes.append, 0.0))
    assert len(notes) == 3  # raised at once, not waited for


class _Store:
    """The savepoints apply_guarded takes, counted."""

    def __init__(self) -> None:
        self.savepoints = self.rollbacks = 0
        self.parked: list[object] = []

    def park(self, entries: list[object]) -> None:
        self.parked += entries

    def savepoint(self) -> None:
        self.savepoints += 1

    def rollback_to_savepoint(self) -> None:
        self.rollbacks += 1

    def release_savepoint(self) -> None:
        pass


class _Resolver:
    """A resolver whose apply fails with one error (rules: one table)."""

    def __init__(self, error: Exception) -> None:
        from node.model import TableShape

        self.error = error
        self.rules = {"kv": type("Rules", (), {"shape": TableShape("kv", ("k", "v"), (0,))})()}

    def apply(self, store: object, txn: object, changes: object) -> int:
        raise self.error


def test_change_by_change_a_transient_error_parks_nothing_and_a_row_error_parks_the_change(
        ) -> None:
    """Isolating a failing transaction, a lock timeout met on one change says
    nothing about it: the batch is retried whole, nothing parked. A
    constraint error parks the change."""
    from node.conflicts.deadletter import apply_guarded
    from node.conflicts.driver import TxnInfo
    from node.model import Change, Op

    txn = TxnInfo("pudong", 7, 10, {}, False)
    change = Change("kv", Op.INSERT, new=("a", 1))
    lock_timeout = EngineError("apply failed")
    lock_timeout.__cause__ = _PgError("55P03")
    store = _Store()
    with pytest.raises(EngineError):
        apply_guarded(_Resolver(lock_timeout), store, txn, [change], {}, True)  # type: ignore[arg-type]
    assert store.parked == [] and store.savepoints == 1
    blocked: dict[tuple[str, str], int] = {}
    constraint = EngineError("violates check constraint")
    constraint.__cause__ = _PgError("23514")
    store = _Store()
    logged, parked = apply_guarded(_Resolver(constraint), store, txn, [change],  # type: ignore[arg-type]
                                   blocked, True)
    assert (logged, parked) == (0, 1) and len(store.parked) == 1
    assert store.rollbacks == 1 and ("kv", '["a"]') in blocked
