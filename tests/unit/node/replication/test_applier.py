"""The applier, step by step, on a real SQLite database and a real journal:
foreign transactions are applied together and advance the applied vector;
a poison transaction is found, retried, and its failing change parked so
the stream moves on; a foreign change meeting a local one not journaled yet
waits for capture, which then goes first."""

from __future__ import annotations

import pytest

from node.conflicts.driver import Resolver
from node.dr.sets import SetGuard
from node.hlc import HybridClock
from node.model import Change, Op
from node.replication import applystate
from node.replication.applier import Applier
from node.replication.resources import NodeResources
from node.replication.state import ReplicationState
from ringsync.config import NodeConfig

from .campus import app, insert_patient, order, rows, txn_frame

MAX_STEPS = 60  # far more than any test needs: a loop that never finishes fails


@pytest.fixture
async def applier(config: NodeConfig, res: NodeResources, state: ReplicationState) -> Applier:
    clock = HybridClock(config.cluster.conflicts.max_clock_skew_ms)
    resolver = Resolver(res.engine.shapes(), config.cluster.conflicts, clock)
    a = Applier(res, state, SetGuard(config.cluster.sets, "a"), resolver)
    await a.start()
    return a


async def step_until_applied(a: Applier, origin: str, seq: int) -> list[str]:
    """Step (ignoring the machine's delays) until ``origin/seq`` is applied;
    the machine's state after each step."""
    states = []
    for _ in range(MAX_STEPS):
        await a.step()
        states.append(a.machine.state)
        if a.state.applied.get(origin, 0) >= seq:
            return states
    raise AssertionError(f"{origin}/{seq} not applied after {MAX_STEPS} steps: {states}")


async def test_foreign_transactions_are_applied_in_one_step_and_advance_the_vector(
        config: NodeConfig, res: NodeResources, state: ReplicationState,
        applier: Applier) -> None:
    engine = res.engine
    res.journal.append_remote([insert_patient(engine, "b", 1, "p1"),
                               insert_patient(engine, "b", 2, "p2"),
                               insert_patient(engine, "c", 1, "p3")])
    ticket = res.applied_changed.ticket()
    await applier.step()
    assert [r[0] for r in rows(config, "patients")] == ["p1", "p2", "p3"]
    assert state.applied == {"a": 0, "b": 2, "c": 1}
    assert engine.target.applied_vector() == {"b": 2, "c": 1}  # in the same transaction
    assert state.applied_txns == 3
    assert ticket.is_set()  # the receiver's heartbeat acks the new vector
    assert applier.machine.state == applystate.BATCH
    # nothing left: idle, and woken by the journal
    step = await applier.step()
    assert applier.machine.state == applystate.IDLE and step.wake_on_journal


async def test_what_the_database_holds_is_not_applied_again_after_a_restart(
        config: NodeConfig, res: NodeResources, state: ReplicationState,
        applier: Applier) -> None:
    engine = res.engine
    res.journal.append_remote([insert_patient(engine, "b", 1, "p1")])
    await applier.step()
    again = Applier(res, ReplicationState("a", state.ring), applier.sets, applier.resolver)
    await again.start()  # reads the applied vector back from the database
    res.journal.append_remote([insert_patient(engine, "b", 2, "p2")])
    await again.step()
    assert again.state.applied_txns == 1 and again.state.applied["b"] == 2
    assert [r[0] for r in rows(config, "patients")] == ["p1", "p2"]


async def test_a_poison_transaction_is_isolated_retried_and_parked_and_the_rest_applied(
        config: NodeConfig, res: NodeResources, state: ReplicationState,
        applier: Applier, caplog: pytest.LogCaptureFixture) -> None:
    engine = res.engine
    poison = txn_frame(engine, "b", 3, [Change("lab_orders", Op.INSERT,
                                               new=order("o1", priority="urgent"))])  # CHECK
    res.journal.append_remote([insert_patient(engine, "b", 1, "p1"),
                               insert_patient(engine, "b", 2, "p2"), poison,
                               insert_patient(engine, "b", 4, "p4")])
    states = await step_until_applied(applier, "b", 4)
    # the batch failed, the window narrowed to b/3, which was retried alone
    # max_attempts times, then applied change by change, its failing change parked
    assert applystate.ISOLATING in states and applystate.RETRYING in states
    assert states.index(applystate.ISOLATING) < states.index(applystate.RETRYING)
    assert states.count(applystate.RETRYING) == applier.machine.max_attempts
    assert any("b/3 failed 5 times; applying it change by change" in r.getMessage()
               for r in caplog.records)
    assert [r[0] for r in rows(config, "patients")] == ["p1", "p2", "p4"]
    assert rows(config, "lab_orders") == []
    assert state.dead_lettered == 1
    assert engine.store.dead_letter_counts()["parked"] == 1
    ((origin, seq, table, error),) = rows(config, "_rs_dlq", "origin, seq, tbl, error")
    assert (origin, seq, table) == ("b", 3, "lab_orders") and "CHECK" in str(error)
    assert state.applied == {"a": 0, "b": 4} and state.apply_error == ""
    assert state.applied_txns == 4


async def test_a_failing_batch_sets_the_error_and_keeps_the_vector(
        res: NodeResources, state: ReplicationState, applier: Applier) -> None:
    engine = res.engine
    poison = txn_frame(engine, "b", 1, [Change("lab_orders", Op.INSERT,
                                               new=order("o1", priority="urgent"))])
    res.journal.append_remote([poison])
    step = await applier.step()
    assert "CHECK" in state.apply_error
    assert state.applied.get("b", 0) == 0 and engine.target.applied_vector() == {}
    assert step.delay > 0  # the machine asks for a pause before the retry


async def test_a_foreign_change_waits_for_a_local_change_capture_has_not_journaled(
        config: NodeConfig, res: NodeResources, state: ReplicationState,
        applier: Applier) -> None:
    engine, journal = res.engine, res.journal
    conn = app(config)
    conn.execute("INSERT INTO patients VALUES ('p1', 'm', 'local', NULL, 'F', 'a', 't')")
    conn.close()
    journal.append_remote([insert_patient(engine, "b", 1, "p1", name="remote")])
    step = await applier.step()
    assert applier.machine.state == applystate.WAITING_CAPTURE and step.wake_on_journal
    assert state.pending_waits == 1 and state.applied.get("b", 0) == 0
    # capture journals the local transaction; the next step records it first
    chunks = engine.source.capture(journal.capture_position, 100)
    assert journal.append_local(chunks, dict(engine.shapes())) == 1
    await applier.step()
    assert state.applied == {"a": 1, "b": 1} and state.apply_error == ""
    assert state.applied_txns == 1  # the own transaction is recorded, not counted
    assert len(rows(config, "patients")) == 1
    assert state.conflicts_logged == 1  # both inserted p1: one of them won, logged
