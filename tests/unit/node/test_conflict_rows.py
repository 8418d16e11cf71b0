"""node.conflicts.entries: the typed rows the conflict log and the dead-letter
queue hand out, read from a real SQLite campus database (the demo LIS schema),
and what the operator actions return."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import pytest

from node.conflicts.deadletter import (
    DeadLetterQuery,
    DeadLetterRefused,
    DeadLetterTable,
    act_in,
    dead_letter_entry,
    describe,
    frame_dead_letter,
)
from node.conflicts.driver import ConflictRecord, Resolver, TxnInfo
from node.conflicts.entries import (
    CONFLICT_COLUMNS,
    DEAD_LETTER_COLUMNS,
    ConflictEntry,
    DeadLetterEntry,
    DeadLetterOutcome,
    DescribedDeadLetter,
    ResolvedConflict,
)
from node.conflicts.log import ConflictLog, ConflictQuery
from node.conflicts.manual import ResolveRefused, resolve_parked
from node.engines.sqlite.engine import SQLiteEngine
from node.hlc import HybridClock
from node.model import Change, Op
from node.spelling import Spelling
from ringsync.commands.demo.lis import create_sqlite_database
from ringsync.conflict_policy import ConflictSettings

TABLES = ("patients", "lab_orders", "specimens", "lab_results")
PATIENT = ("p1", "m-p1", "Ada", None, "F", "south", "2026-01-01T00:00:00Z")


@pytest.mark.parametrize("cls,columns", [(ConflictEntry, CONFLICT_COLUMNS),
                                         (DeadLetterEntry, DEAD_LETTER_COLUMNS)])
def test_fields_follow_the_stored_columns(cls: type, columns: tuple[str, ...]) -> None:
    """from_row takes a row in column order; only ``tbl`` is renamed ``table``."""
    names = tuple("tbl" if f.name == "table" else f.name for f in fields(cls))
    assert names == columns


def test_the_conflict_log_hands_out_conflict_entries() -> None:
    from node.engines.sqlite.versions import CONFLICTS_DDL

    conn = sqlite3.connect(":memory:")
    conn.execute(CONFLICTS_DDL)
    conn.execute(
        "INSERT INTO _rs_conflicts(at, tbl, key, kind, rule, winner, local_origin, local_hlc, "
        "remote_origin, remote_seq, remote_hlc, local_row, skew_ms, state) VALUES "
        "(12.5, 'patients', '[\"p1\"]', 'update_update', 'latest', 'remote', 'north', 7, "
        "'south', 3, 9, '{\"name\":\"Ada\"}', 0, 'logged')")
    [entry] = ConflictLog("_rs_conflicts", Spelling("?")).query(conn, ConflictQuery())
    assert entry == ConflictEntry(
        id=1, at=12.5, table="patients", key='["p1"]', kind="update_update", rule="latest",
        winner="remote", local_origin="north", local_hlc=7, remote_origin="south",
        remote_seq=3, remote_hlc=9, local_row='{"name":"Ada"}', remote_row=None, skew_ms=0,
        state="logged", resolution=None)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[SQLiteEngine]:
    create_sqlite_database(tmp_path / "a.db")
    e = SQLiteEngine(tmp_path / "a.db", TABLES, "a")
    e.open()
    yield e
    e.close()


@pytest.fixture
def resolver(engine: SQLiteEngine) -> Resolver:
    return Resolver(dict(engine.shapes()), ConflictSettings(), HybridClock())


def park_patient(engine: SQLiteEngine, seq: int, error: str = "IntegrityError: no") -> None:
    shapes = dict(engine.shapes())
    change = Change("patients", Op.INSERT, new=PATIENT)
    key = ConflictRecord.key_json_of(shapes["patients"].key_of(PATIENT))
    with engine.target.apply_session() as store:
        store.park([dead_letter_entry(TxnInfo("south", seq, 0, {}, False), change, shapes,
                                      error, key)])


def test_the_queue_hands_out_dead_letter_entries(engine: SQLiteEngine,
                                                 resolver: Resolver) -> None:
    park_patient(engine, 5)
    [entry] = engine.store.dead_letter_list(DeadLetterQuery())
    assert isinstance(entry, DeadLetterEntry) and isinstance(entry.frame, bytes)
    assert (entry.id, entry.origin, entry.seq, entry.table, entry.key, entry.op,
            entry.error, entry.attempts, entry.state) == (
        1, "south", 5, "patients", '["p1"]', "I", "IntegrityError: no", 1, "parked")
    assert [a["action"] for a in json.loads(entry.actions)] == ["parked"]
    described = describe(entry, resolver)
    assert described.entry is entry
    assert json.loads(described.row or "") == {
        "patient_id": "p1", "mrn": "m-p1", "name": "Ada", "birth_date": None, "sex": "F",
        "home_campus": "south", "created_at": "2026-01-01T00:00:00Z"}


def test_a_whole_frame_that_cannot_be_decoded_is_described_without_a_row(
    resolver: Resolver,
) -> None:
    table = DeadLetterTable("dlq", Spelling("?"))
    conn = sqlite3.connect(":memory:")
    conn.execute(table.ddl("INTEGER PRIMARY KEY AUTOINCREMENT", "BLOB"))
    conn.execute(table.insert_sql(), frame_dead_letter("south", 9, b"\xff garbage", "bad"))
    [entry] = table.query(conn, DeadLetterQuery())
    assert (entry.table, entry.key, entry.op, entry.frame) == ("*", "", "frame", b"\xff garbage")
    assert describe(entry, resolver) == DescribedDeadLetter(entry, None)


def test_retry_applies_the_change_and_says_so(engine: SQLiteEngine,
                                              resolver: Resolver) -> None:
    park_patient(engine, 5)
    outcome = act_in(engine.target.apply_session(), resolver, 1, "retry", "alice")
    assert outcome == [DeadLetterOutcome(1, "applied")]
    assert [o.to_json_obj() for o in outcome] == [{"id": 1, "state": "applied"}]
    [entry] = engine.store.dead_letter_list(DeadLetterQuery(id=1))
    assert (entry.state, entry.attempts, entry.error) == ("applied", 2, "")
    assert [(a["by"], a["action"]) for a in json.loads(entry.actions)] == [
        ("apply", "parked"), ("alice", "retry")]


def test_retrying_a_frame_that_still_cannot_be_decoded_keeps_it_parked_and_says_why(
        engine: SQLiteEngine, resolver: Resolver) -> None:
    with engine.target.apply_session() as store:
        store.park([frame_dead_letter("south", 9, b"\xff garbage", "bad")])
    [outcome] = act_in(engine.target.apply_session(), resolver, 1, "retry", "alice")
    assert (outcome.id, outcome.state) == (1, "parked")
    assert outcome.error.startswith("cannot decode the frame: ")
    [entry] = engine.store.dead_letter_list(DeadLetterQuery(id=1))
    assert (entry.state, entry.attempts, entry.error) == ("parked", 2, outcome.error)
    assert [(a["by"], a["action"]) for a in json.loads(entry.actions)] == [
        ("apply", "parked"), ("alice", "retry")]
    [skipped] = act_in(engine.target.apply_session(), resolver, 1, "skip", "alice")
    assert skipped == DeadLetterOutcome(1, "skipped")


def test_skip_drops_the_first_and_retries_those_behind_it(engine: SQLiteEngine,
                                                          resolver: Resolver) -> None:
    park_patient(engine, 5)
    park_patient(engine, 6, "waiting behind an earlier parked change of this row")
    outcome = act_in(engine.target.apply_session(), resolver, 1, "skip", "alice")
    assert outcome == [DeadLetterOutcome(1, "skipped"), DeadLetterOutcome(2, "applied")]
    states = [(e.id, e.state) for e in engine.store.dead_letter_list(DeadLetterQuery())]
    assert states == [(1, "skipped"), (2, "applied")]


def test_an_outcome_that_failed_again_carries_its_error() -> None:
    assert DeadLetterOutcome(4, "parked", "IntegrityError: x").to_json_obj() == {
        "id": 4, "state": "parked", "error": "IntegrityError: x"}


def test_actions_are_refused_with_a_reason(engine: SQLiteEngine, resolver: Resolver) -> None:
    with pytest.raises(DeadLetterRefused, match="action 'drop': use retry or skip"):
        act_in(engine.target.apply_session(), resolver, 1, "drop", "alice")
    with pytest.raises(DeadLetterRefused, match="no dead letter 1 here"):
        act_in(engine.target.apply_session(), resolver, 1, "retry", "alice")
    park_patient(engine, 5)
    act_in(engine.target.apply_session(), resolver, 1, "skip", "alice")
    with pytest.raises(DeadLetterRefused, match="dead letter 1 is skipped, not parked"):
        act_in(engine.target.apply_session(), resolver, 1, "retry", "alice")


class _OneEntryStore:
    """A ManualStore that holds one conflict log entry and nothing else."""

    def __init__(self, entry: ConflictEntry | None) -> None:
        self.entry = entry

    def conflicts(self, query: ConflictQuery) -> list[ConflictEntry]:
        return [self.entry] if self.entry is not None and query.id == self.entry.id else []


def _entry(state: str) -> ConflictEntry:
    return ConflictEntry(3, 1.0, "patients", '["p1"]', "update_update", "latest", "remote",
                         "north", 1, "south", 2, 3, None, None, 0, state, None)


def test_resolving_refuses_what_is_not_a_parked_conflict(resolver: Resolver) -> None:
    with pytest.raises(ResolveRefused, match="no conflict 3 here"):
        resolve_parked(_OneEntryStore(None), resolver.rules, 3, "local", "alice")  # type: ignore[arg-type]
    with pytest.raises(ResolveRefused, match="conflict 3 is logged, not parked: the latest "
                                             "policy decided it"):
        resolve_parked(_OneEntryStore(_entry("logged")), resolver.rules, 3, "local",  # type: ignore[arg-type]
                       "alice")


def test_resolving_a_parked_conflict_says_what_was_written(engine: SQLiteEngine,
                                                          resolver: Resolver) -> None:
    """Taking "local" for a row this campus holds writes it again as a local edit."""
    with engine.target.apply_session() as store:
        resolver.apply(store, TxnInfo("south", 1, 0, {}, False),
                       [Change("patients", Op.INSERT, new=PATIENT)])

    class Store(_OneEntryStore):
        def read_version(self, table: str, key: tuple[object, ...]) -> tuple[object, ...]:
            return engine.store.read_version(table, key)

        def write_local(self, *args: object, **kw: object) -> None:
            self.written = args

        def mark_conflict(self, conflict_id: int, state: str, resolution: str) -> None:
            self.marked = (conflict_id, state, resolution)

    store = Store(_entry("parked"))
    done = resolve_parked(store, resolver.rules, 3, "local", "alice")  # type: ignore[arg-type]
    assert done == ResolvedConflict("patients", '["p1"]', json.dumps(
        dict(zip(("patient_id", "mrn", "name", "birth_date", "sex", "home_campus",
                  "created_at"), PATIENT, strict=True)), separators=(",", ":")))
    assert store.marked == (3, "resolved", "local taken by alice")
    assert store.written[0] == "patients" and store.written[2] == PATIENT
