"""The drill's single-writer-set checks (ringsync.commands.drill.sets), on made-up data,
and the set writer against a SQLite file that imitates the set guard."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from ringsync.commands.demo.cluster import CampusLayout
from ringsync.commands.drill.checker import (
    DRILL_SCHEMA,
    SET_NAME,
    SET_ROUTE,
    SET_TABLE,
    RouteHistory,
)
from ringsync.commands.drill.run import report_table
from ringsync.commands.drill.sets import SetWrite, check_sets, route_writers_from
from ringsync.commands.drill.setwriter import SET_REFUSAL, SetWriter, read_set_rows, read_stale_ids

A, B, C = "chaohui", "wangjiangshan", "yuecheng"


def w(i: str, campus: str, epoch: int | None, at: float) -> SetWrite:
    return SetWrite(i, campus, epoch, at, f"p-{i}", at + 0.01)


# chaohui wrote from epoch 1; it was partitioned and the set failed over to
# wangjiangshan at route epoch 3 (epoch 2: a move that was abandoned, say).
# Ended tenures as ringsync.dr.routes stores them: [writer epoch, writer, base seq].
ROUTE = [
    {"campus": SET_ROUTE, "serving": A, "state": "active", "epoch": 1, "writer_since": 1,
     "tenures": []},
    {"campus": SET_ROUTE, "serving": A, "state": "active", "epoch": 2, "writer_since": 1,
     "tenures": []},
    {"campus": SET_ROUTE, "serving": B, "state": "active", "epoch": 3, "writer_since": 3,
     "tenures": [[1, A, 40]]},
]
WRITERS = route_writers_from(ROUTE)
HISTORY = [w("a1", A, 1, 10.0), w("a2", A, 1, 11.0), w("b1", B, 3, 20.0), w("b2", B, 3, 21.0)]


def everywhere(rows: list[SetWrite]) -> dict[str, list[SetWrite]]:
    return {A: list(rows), B: list(rows), C: list(rows)}


def test_route_history_names_the_writer_of_each_tenure() -> None:
    assert WRITERS == {1: {A}, 3: {B}}
    # a route without writer_since: its own epoch begins the tenure
    assert route_writers_from([{"serving": C, "epoch": 9}]) == {9: {C}}
    # the ended tenures alone tell, whatever the samples missed
    assert route_writers_from(ROUTE[2:]) == WRITERS
    # [first epoch, last epoch, writer, base seq] too; junk is ignored
    assert route_writers_from([{"serving": A, "writer_since": 4,
                                "tenures": [[1, 3, B, 7], "junk", [2], []]}]) == {4: {A}, 1: {B}}
    # as `ctl route --json` prints a set's route
    assert route_writers_from([{"serving": C, "epoch": 6, "writer_epoch": 5}]) == {5: {C}}


def test_one_writer_per_epoch_in_time_order_passes() -> None:
    v = check_sets(HISTORY, everywhere(HISTORY), {}, WRITERS)
    assert v.ok and not v.two_writers_seen and v.problems == []
    assert v.writes == 4 and v.epochs == [1, 3]
    assert v.rows_identical and v.stale_parked == [] and v.lost == []


def test_interleaved_epochs_are_two_writers() -> None:
    # chaohui kept writing epoch 1 after wangjiangshan had written epoch 3
    late = w("a3", A, 1, 20.5)
    writes = [*HISTORY, late]
    v = check_sets(writes, everywhere(writes), {}, WRITERS)
    assert v.two_writers_seen and not v.ok
    assert any("out of time order in 1 acknowledged" in p and "chaohui wrote epoch 1" in p
               for p in v.two_writers), v.two_writers


def test_an_epoch_written_by_two_campuses_is_two_writers() -> None:
    # yuecheng took writes stamped with chaohui's epoch, in time order
    writes = [*HISTORY[:2], w("c1", C, 1, 12.0), *HISTORY[2:]]
    v = check_sets(writes, everywhere(writes), {}, WRITERS)
    assert v.two_writers_seen
    assert f"epoch 1 acknowledged by 2 campuses: {A}, {C}" in v.two_writers
    assert any(f"written by {A}, {C} but etcd's writer" in p for p in v.two_writers)
    # and each campus's copy maps epoch 1 to two campuses
    assert any(p.startswith(f"{B} holds epoch 1 rows of {A}, {C}") for p in v.two_writers)


def test_the_writer_must_be_the_one_etcd_named_for_that_epoch() -> None:
    wrong = [w("a1", A, 1, 10.0), w("c1", C, 3, 20.0)]  # yuecheng, not wangjiangshan
    v = check_sets(wrong, everywhere(wrong), {}, WRITERS)
    assert v.two_writers == [f"epoch 3 written by {C} but etcd's writer of the tenure "
                             f"beginning at that epoch was {B}"]
    # an epoch that began no tenure (e.g. the route's epoch instead of writer_since)
    v = check_sets([w("b9", B, 2, 30.0)], everywhere([w("b9", B, 2, 30.0)]), {}, WRITERS)
    assert any("epoch 2 (written by wangjiangshan) began no writer tenure" in p
               for p in v.two_writers)
    # a database without an epoch
    v = check_sets([w("x", A, None, 1.0)], everywhere([w("x", A, None, 1.0)]), {}, WRITERS)
    assert any("epoch none" in p for p in v.two_writers)
    # without any route history nothing could be checked: that is not a pass
    v = check_sets(HISTORY, everywhere(HISTORY), {}, None)
    assert v.two_writers_seen and "no route history" in v.two_writers[0]


def test_a_deposed_writers_late_write_parked_as_stale_everywhere_is_not_lost() -> None:
    late = w("a9", A, 1, 15.0)  # after its tenure ended, before its fence closed
    writes = [*HISTORY, late]
    parked = {A: {"a9"}, B: {"a9"}, C: {"a9"}}
    v = check_sets(writes, everywhere(HISTORY), parked, WRITERS)
    assert v.ok and v.stale_parked == ["a9"] and v.lost == []
    # parked at only some campuses: lost
    v = check_sets(writes, everywhere(HISTORY), {A: {"a9"}, B: {"a9"}}, WRITERS)
    assert v.lost == ["a9"] and not v.ok
    # silently gone: lost
    v = check_sets(writes, everywhere(HISTORY), {}, WRITERS)
    assert v.lost == ["a9"] and "neither at every campus" in v.problems[-1]
    # parked by the others, but the deposed writer did not undo it (seen in a
    # drill): the campuses differ, and the write is counted where it is
    v = check_sets(writes, {A: writes, B: HISTORY, C: HISTORY}, {B: {"a9"}, C: {"a9"}},
                   WRITERS)
    assert v.lost == ["a9"] and not v.rows_identical and not v.two_writers_seen
    assert (f"(1 held at {A}, parked as stale at {B}, {C}): a9") in v.problems[-1]


def test_rows_must_be_identical_at_every_campus() -> None:
    held = everywhere(HISTORY)
    held[C] = HISTORY[:3]  # yuecheng never got b2
    v = check_sets(HISTORY, held, {}, WRITERS)
    assert not v.rows_identical and v.lost == ["b2"] and not v.two_writers_seen
    assert any("different set rows" in p and f"{C} 1" in p for p in v.problems)
    # a row held somewhere but different elsewhere (not only missing)
    held = everywhere(HISTORY)
    held[B] = [*HISTORY[:3], SetWrite("b2", B, 3, 21.0, "changed")]
    v = check_sets(HISTORY, held, {}, WRITERS)
    assert not v.rows_identical and v.lost == []


def test_set_writer_moves_are_found_in_the_route_samples() -> None:
    h = RouteHistory("demo", ("127.0.0.1:1",))
    h.set_samples = [(float(t), {SET_ROUTE: doc}) for t, doc in enumerate(ROUTE)]
    assert h.set_writer_moved(SET_ROUTE, 0.5, 1.5) is False  # epoch 2: same tenure
    assert h.set_writer_moved(SET_ROUTE, 1.5, 2.5) is True
    assert h.set_writer_moved(SET_ROUTE, 2.5, 9.0) is False
    assert [d["epoch"] for d in h.set_routes(SET_ROUTE, 1.0)] == [2, 3]


def _campus(tmp_path: Path) -> CampusLayout:
    node = CampusLayout(A, 0, tmp_path / A)
    DRILL_SCHEMA.create_sqlite(node.database)
    db = sqlite3.connect(node.database)
    # What the node installs, imitated: the set fence row and the set guard.
    db.executescript(f"""
        CREATE TABLE _rs_set_fence (name TEXT PRIMARY KEY, epoch INTEGER, writer INTEGER);
        INSERT INTO _rs_set_fence VALUES ('{SET_NAME}', 7, 1);
        CREATE TRIGGER guard BEFORE INSERT ON {SET_TABLE}
        WHEN (SELECT writer FROM _rs_set_fence) = 0 BEGIN
        SELECT RAISE(ABORT, 'ringsync: {A} is {SET_REFUSAL} {SET_NAME}'); END;
        CREATE TABLE _rs_dlq (id INTEGER PRIMARY KEY, tbl TEXT, key TEXT, state TEXT,
                              error TEXT);
        INSERT INTO _rs_dlq (tbl, key, state, error) VALUES
            ('{SET_TABLE}', '["set-x"]', 'stale', 'stale epoch 1 (tenure ended at 2)'),
            ('{SET_TABLE}', '["set-y"]', 'parked', 'other'),
            ('drill_writes', '["set-z"]', 'stale', 'stale epoch');
    """)
    db.commit()
    db.close()
    return node


def _until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_set_writer_stamps_the_fence_epoch_and_counts_refusals(tmp_path: Path) -> None:
    node = _campus(tmp_path)
    writer = SetWriter(node, rate=100.0)
    writer.start()
    try:
        _until(lambda: len(writer.acked) >= 3)
        db = sqlite3.connect(node.database)
        db.execute("UPDATE _rs_set_fence SET writer = 0")
        db.commit()
        _until(lambda: writer.refused >= 3)
        acked = len(writer.acked)
        time.sleep(0.2)
        assert len(writer.acked) == acked  # refused writes are never acknowledged
        db.execute("UPDATE _rs_set_fence SET writer = 1, epoch = 9")
        db.commit()
        db.close()
        _until(lambda: any(x.epoch == 9 for x in writer.acked))
    finally:
        writer.stop()
    assert writer.errors == 0, writer.last_error
    assert {x.epoch for x in writer.acked} == {7, 9}
    assert all(x.campus == A and x.acked_at >= x.written_at > 0 for x in writer.acked)
    held = {x.id: x for x in read_set_rows(node)}
    assert set(held) == {x.id for x in writer.acked}
    assert all(held[x.id].row() == x.row() for x in writer.acked)
    assert read_stale_ids(node) == {"set-x"}


def test_set_writer_counts_other_failures_as_errors(tmp_path: Path) -> None:
    node = CampusLayout(B, 0, tmp_path / B)
    DRILL_SCHEMA.create_sqlite(node.database)  # no set fence table: node side absent
    writer = SetWriter(node)
    writer.start()
    try:
        _until(lambda: writer.errors >= 2)
    finally:
        writer.stop()
    assert writer.acked == [] and writer.refused == 0
    assert "_rs_set_fence" in writer.last_error
    assert read_stale_ids(node) == set()


def test_report_table_shows_the_set_results() -> None:
    report = {
        "scenario": "campus-isolation", "engine": "sqlite", "campuses": 3, "cycles": 2,
        "seed": 1, "failover_after": 4.0, "rto_seconds": {"p50": 6.1, "max": 6.5},
        "acknowledged_writes": 100, "rpo_lost_writes": 0, "converged": True,
        "two_writers_seen": False, "spurious_failover": False, "ok": True,
        "durability": "async", "lost_without_failed_campus": 0,
        "set_writes": 50, "set_writes_refused": 700, "set_write_errors": 0,
        "set_epochs": [1, 5], "set_moves": 1, "stale_parked": 3,
        "set_rto_seconds": {"p50": 6.4, "max": 6.4}, "set_problems": [],
        "cycles_detail": [
            {"cycle": 1, "campus": A, "to": B, "rto": 6.5, "set_writer": A,
             "set_writer_after": B, "set_moved": True, "set_rto": 6.4},
            {"cycle": 2, "campus": C, "to": A, "rto": 6.1, "set_writer": B,
             "set_writer_after": B, "set_moved": False},
        ],
    }
    table = report_table(report)
    assert f"{A} -> {B} in 6.40s" in table
    assert "set writes           50 acknowledged, 700 refused" in table
    assert "set epochs           1, 5" in table
    assert "set writer moved     in 1 of 2 cycle(s); set RTO p50 / max 6.4 s / 6.4 s" in table
    assert "set stale, parked    3" in table
    json.dumps(report)  # what --json prints
