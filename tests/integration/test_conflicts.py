"""Concurrent edits of the same rows at three real campuses (PostgreSQL and
SQLite mixed) converge, by the policies in the cluster file, and are logged.

The nodes are stopped while each campus edits the same rows, so no campus
has seen another's edit: every edit is concurrent with the others. When the
nodes start again the edits cross the ring and meet as conflicts.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import psycopg
import pytest

from ringsync.commands.demo.cluster import LocalCluster
from tests.helpers import campus_rows, wait_until
from tests.integration.conftest import wait_ready

ORDERS = 12


@pytest.fixture
def mixed(make_cluster) -> Iterator[LocalCluster]:
    cluster = make_cluster(3, engines=["postgres", "sqlite", "postgres"])
    yield cluster
    cluster.stop_all()
    cluster.stop_databases()


def execute(target, statements: list[tuple[str, tuple]]) -> None:
    """Run statements in one transaction on a SQLite path or a PostgreSQL DSN."""
    if isinstance(target, str):
        with psycopg.connect(target) as conn:
            for sql, params in statements:
                conn.execute(sql.replace("?", "%s"), params)
        return
    import sqlite3
    conn = sqlite3.connect(target, timeout=30)
    with conn:
        for sql, params in statements:
            conn.execute(sql, params)
    conn.close()


def converged(cluster: LocalCluster) -> bool:
    snaps = [campus_rows(c.target) for c in cluster.campuses]
    return all(s == snaps[0] for s in snaps[1:])


def test_concurrent_edits_converge_by_policy_and_are_logged(mixed: LocalCluster) -> None:
    mixed.start_all()
    wait_ready(mixed)
    first, second, third = mixed.campuses
    seed = []
    for i in range(ORDERS):
        seed += [
            ("INSERT INTO patients VALUES (?, ?, ?, ?, ?, ?, ?)",
             (f"p{i}", f"MRN{i}", "Test Patient", "1970-01-01", "F", first.name, "2026-11-23")),
            ("INSERT INTO lab_orders VALUES (?, ?, 'CBC', 'routine', 'ordered', ?, ?)",
             (f"o{i}", f"p{i}", first.name, "2026-11-23")),
            ("INSERT INTO lab_results VALUES (?, ?, 'HGB', 130, NULL, 'g/L', NULL, "
             "'preliminary', '2026-11-23', 1)", (f"r{i}", f"o{i}")),
        ]
    execute(first.target, seed)
    wait_until(lambda: converged(mixed) and len(campus_rows(third.target)["lab_results"])
               == ORDERS, 60, "the seed rows everywhere")

    for c in mixed.campuses:
        mixed.stop(c.name)
    for i in range(ORDERS):  # the same rows, edited at every campus without seeing the others
        execute(first.target, [
            ("UPDATE lab_results SET status = 'amended', version = version + 1, "
             "value_num = 131 WHERE result_id = ?", (f"r{i}",)),
            ("UPDATE lab_orders SET status = 'resulted' WHERE order_id = ?", (f"o{i}",)),
        ])
        execute(second.target, [
            ("UPDATE lab_results SET status = 'verified', version = version + 2, "
             "flag = 'H' WHERE result_id = ?", (f"r{i}",)),
            ("UPDATE lab_orders SET priority = 'STAT' WHERE order_id = ?", (f"o{i}",)),
        ])
        execute(third.target, [
            ("UPDATE lab_results SET status = 'resulted', version = version + 3, "
             "unit = 'g/dL' WHERE result_id = ?", (f"r{i}",)),
            ("UPDATE lab_orders SET status = 'collected', test_code = 'CBC+DIFF' "
             "WHERE order_id = ?", (f"o{i}",)),
        ])
    mixed.start_all()
    wait_until(lambda: converged(mixed), 90, "the campuses to converge after conflicts", 1.0)

    rows = campus_rows(second.target)
    results = {r[0]: r for r in rows["lab_results"]}
    orders = {r[0]: r for r in rows["lab_orders"]}
    for i in range(ORDERS):
        _, _, _, value, _, unit, flag, status, _, version = results[f"r{i}"]
        assert status == "amended", "a result's status only moves forward"
        assert version == 1 + 1 + 2 + 3, "every campus's increment counts"
        assert (value, flag, unit) == (131, "H", "g/dL"), "edits of different columns merge"
        _, _, test_code, priority, order_status, _, _ = orders[f"o{i}"]
        assert priority == "STAT", "the STAT edit beats the routine one"
        assert order_status == "resulted"
        # rank decides the whole order row: the STAT version's other columns win too
        assert test_code == "CBC"

    out = subprocess.run(
        [sys.executable, "-m", "ringsync.commands.cli", "ctl", "--cluster", str(mixed.cluster_file),
         "conflicts", "list", "--json", "--limit", "500"],
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    logged = json.loads(out.stdout)["conflicts"]
    assert not json.loads(out.stdout)["errors"]
    by_campus = {c.name: [e for e in logged if e["at_campus"] == c.name] for c in mixed.campuses}
    for campus, entries in by_campus.items():
        keys = {(e["table"], e["key"][0]) for e in entries}
        missing = [f"r{i}" for i in range(ORDERS) if ("lab_results", f"r{i}") not in keys]
        assert not missing, f"{campus} logged no conflict for {missing}"
        assert all(e["kind"] == "update_update" for e in entries)
    orders_logged = [e for e in logged if e["table"] == "lab_orders"]
    assert orders_logged and all(e["rule"].startswith("rank(priority: STAT > routine)")
                                 for e in orders_logged)
    stat_arrives = [e for e in orders_logged if e["remote"]["row"]["priority"] == "STAT"]
    assert stat_arrives and all(e["winner"] in ("remote", "merged") for e in stat_arrives)
    assert all(e["local"]["row"] is not None for e in orders_logged)

    wait_until(lambda: all(n["conflicts"]["logged"] >= ORDERS for n in json.loads(
        ctl(mixed, "status", "--json").stdout)["nodes"]), 10, "status to count the conflicts")
    # received = applied + dead letters + in flight, at every campus, and all applied
    wait_until(lambda: all(
        n["accounting"]["balanced"] and n["accounting"]["in_flight"] == 0
        and n["accounting"]["received"] == n["accounting"]["applied"] > 0
        for n in json.loads(ctl(mixed, "status", "--json").stdout)["nodes"]), 10,
        "every change to be accounted for")


def ctl(cluster: LocalCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ringsync.commands.cli", "ctl", "--cluster",
                           str(cluster.cluster_file), *args],
                          capture_output=True, text=True, timeout=60)


def test_manual_conflict_waits_for_an_operator_then_everyone_takes_the_choice(
        make_cluster) -> None:
    cluster = make_cluster(2, engines=["sqlite", "postgres"], conflict_policies=(
        '[conflicts.tables.patients]\nrule = "manual"\n'))
    try:
        cluster.start_all()
        wait_ready(cluster)
        a, b = cluster.campuses
        execute(a.target, [("INSERT INTO patients VALUES ('p1', 'MRN1', 'Li Wei', "
                            "'1970-01-01', 'F', ?, '2026-11-23')", (a.name,))])
        wait_until(lambda: converged(cluster) and campus_rows(b.target)["patients"], 60,
                   "the patient everywhere")
        for c in cluster.campuses:
            cluster.stop(c.name)
        execute(a.target, [("UPDATE patients SET name = 'Li Wei (A)' WHERE patient_id = 'p1'", ())])
        execute(b.target, [("UPDATE patients SET name = 'Li Wei (B)' WHERE patient_id = 'p1'", ())])
        cluster.start_all()

        def parked() -> list[dict]:
            out = ctl(cluster, "conflicts", "list", "--state", "parked", "--json")
            return json.loads(out.stdout)["conflicts"] if out.returncode == 0 else []

        wait_until(lambda: {e["at_campus"] for e in parked()} == {a.name, b.name}, 60,
                   "both campuses to park the conflict")
        names = {c.name: campus_rows(c.target)["patients"][0][2] for c in cluster.campuses}
        assert names == {a.name: "Li Wei (A)", b.name: "Li Wei (B)"}, "each keeps its own"
        wait_until(lambda: all(n["conflicts"]["parked"] == 1 for n in json.loads(
            ctl(cluster, "status", "--json").stdout)["nodes"]), 10, "status to count them")

        at_a = next(e for e in parked() if e["at_campus"] == a.name)
        bad = ctl(cluster, "conflicts", "resolve", str(at_a["id"]), "--at", a.name,
                  "--take", '{"name": "x"}')
        assert bad.returncode == 1 and "must name every column" in bad.stdout
        done = ctl(cluster, "conflicts", "resolve", str(at_a["id"]), "--at", a.name,
                   "--take", "remote")
        assert done.returncode == 0, done.stdout + done.stderr
        assert json.loads(done.stdout)["row"]["name"] == "Li Wei (B)"
        wait_until(lambda: converged(cluster), 60, "both campuses to take the resolution")
        assert campus_rows(a.target)["patients"][0][2] == "Li Wei (B)"
        wait_until(lambda: not parked(), 30, "every parked entry to close")
        resolved = json.loads(ctl(cluster, "conflicts", "list", "--state", "resolved",
                                  "--json").stdout)["conflicts"]
        notes = {e["at_campus"]: e["resolution"] for e in resolved}
        assert notes[a.name].startswith("remote taken by console")
        assert notes[b.name].startswith(f"superseded by {a.name}/")
    finally:
        cluster.stop_all()
        cluster.stop_databases()


def test_rows_an_application_wrote_under_a_savepoint_still_take_later_changes(
        make_cluster) -> None:
    """PostgreSQL gives a row written in a subtransaction the subtransaction's
    xid; the node must still know the row holds the version it recorded."""
    cluster = make_cluster(2, engines=["postgres", "sqlite"])
    try:
        cluster.start_all()
        wait_ready(cluster)
        pg, lite = cluster.campuses
        with psycopg.connect(pg.target) as conn:  # one transaction, the row in a savepoint
            conn.execute("SAVEPOINT app")
            conn.execute("INSERT INTO patients VALUES ('p1', 'MRN1', 'Li Wei', "
                         "'1970-01-01', 'F', %s, '2026-11-23')", (pg.name,))
            conn.execute("RELEASE SAVEPOINT app")
        wait_until(lambda: converged(cluster) and campus_rows(lite.target)["patients"], 60,
                   "the patient everywhere")
        execute(lite.target, [("UPDATE patients SET name = 'Li Wei-Chen' "
                               "WHERE patient_id = 'p1'", ())])
        wait_until(lambda: campus_rows(pg.target)["patients"][0][2] == "Li Wei-Chen", 30,
                   "the later edit to reach the PostgreSQL campus")
    finally:
        cluster.stop_all()
        cluster.stop_databases()
