"""ctl verify on a mixed ring of real nodes: PostgreSQL, SQLite, PostgreSQL.

Differences are made behind replication's back (SQLite with the apply flag
set in the writer's own transaction, PostgreSQL under the ringsync
replication origin while its node is stopped), so capture never sees them.
verify must then name exactly those rows, with their kind, and an
independent row comparison must agree. A campus that is down is named and
the rest compared; ``ctl repair`` plans, then writes, one ordinary change
per row, after which every campus holds the same rows; a hundred
differences are found exactly while a live workload writes (whose rows are
in_flight, never diverged). Every campus keeps incremental digests (the
SQLite one too: its triggers see the apply flag's writes); ``--full``
(every row hashed) must give the same answer. Repair keeps the copy the
conflict policy picks: a row deleted behind replication at two campuses is
reasserted from the third, whose copy is still the row's recorded version,
though the majority no longer holds it.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from node.verify.rowhash import record_text
from ringsync.commands.demo.cluster import LocalCluster
from ringsync.commands.demo.lis import LisWorkload
from tests.helpers import campus_rows, wait_until
from tests.integration.conftest import RINGSYNC, wait_ready


@pytest.fixture
def ring(make_cluster) -> Iterator[LocalCluster]:
    cluster = make_cluster(3, engines=["postgres", "sqlite", "postgres"])
    with cluster.cluster_file.open("a") as f:  # every campus keeps digests
        f.write("\n[verify]\nincremental = true\n")
    cluster.start_all()
    wait_ready(cluster)
    yield cluster
    cluster.stop_all()
    cluster.stop_databases()


def run_json(cluster: LocalCluster, *args: str) -> tuple[int, dict[str, Any]]:
    done = subprocess.run([*RINGSYNC, "ctl", "--cluster", str(cluster.cluster_file), *args,
                           "--json"], capture_output=True, text=True, timeout=300)
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


def verify(cluster: LocalCluster, *extra: str) -> tuple[int, dict[str, Any]]:
    return run_json(cluster, "verify", *extra)


def converged(cluster: LocalCluster) -> bool:
    first, *rest = (campus_rows(c.target) for c in cluster.campuses)
    return all(r == first for r in rest)


def behind_sqlite(path: Any, *statements: tuple[str, tuple[Any, ...]]) -> None:
    """Writes capture never sees: the apply flag set in this transaction only."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE _rs_state SET applying = 1 WHERE id = 1")
        for sql, params in statements:
            conn.execute(sql, params)
        conn.execute("UPDATE _rs_state SET applying = 0 WHERE id = 1")
        conn.execute("COMMIT")
    finally:
        conn.close()


def behind_postgres(dsn: str, *statements: tuple[str, tuple[Any, ...]]) -> None:
    """Writes capture skips: made under the replication origin apply uses."""
    with psycopg.connect(dsn) as conn:
        conn.execute("SELECT pg_replication_origin_session_setup('ringsync')")
        for sql, params in statements:
            conn.execute(sql.replace("?", "%s"), params)
        conn.commit()
        conn.execute("SELECT pg_replication_origin_session_reset()")


def first_keys(target: Any, table: str, n: int) -> list[str]:
    return sorted(r[0] for r in campus_rows(target)[table])[:n]


def test_verify_finds_exactly_the_rows_changed_behind_replication(ring: LocalCluster) -> None:
    a, b, c = ring.campuses
    workloads = [LisWorkload(x.name, x.target, 30.0, seed=i + 1)
                 for i, x in enumerate(ring.campuses)]
    for w in workloads:
        w.start()
    time.sleep(2.0)
    for w in workloads:
        w.stop()
    wait_until(lambda: converged(ring), 60, "the ring converging")

    code, report = verify(ring)
    assert code == 0 and report["consistent"] and report["differences"] == [], report
    modes = {campus: v["mode"] for t in report["tables"].values() for campus, v in t.items()}
    assert modes == {a.name: "incremental", b.name: "incremental", c.name: "incremental"}
    for table, campuses in report["tables"].items():
        assert set(campuses) == {a.name, b.name, c.name}
        assert len({(v["rows"], v["digest"]) for v in campuses.values()}) == 1, table
        assert next(iter(campuses.values()))["rows"] == len(campus_rows(a.target)[table])

    # A campus that is down is named; the rest are still compared.
    ring.stop(c.name)
    code, report = verify(ring)
    assert code == 2 and not report["consistent"]
    assert "error" in report["campuses"][c.name]
    assert all(set(t) == {a.name, b.name} for t in report["tables"].values())

    # Differences behind replication's back, at the SQLite campus (its node
    # running) and at a PostgreSQL one (its node stopped: the origin is free).
    orders, patients = first_keys(b.target, "lab_orders", 1), first_keys(b.target, "patients", 3)
    behind_sqlite(b.target,
                  ("DELETE FROM lab_orders WHERE order_id = ?", (orders[0],)),
                  ("UPDATE patients SET name = 'Changed behind' WHERE patient_id = ?",
                   (patients[0],)),
                  ("INSERT INTO specimens VALUES ('only-at-b', 'o', 'blood', NULL, NULL)", ()),
                  ("DELETE FROM patients WHERE patient_id = ?", (patients[2],)))
    ring.stop(a.name)
    behind_postgres(a.target,
                    ("DELETE FROM patients WHERE patient_id = ?", (patients[1],)),
                    ("DELETE FROM patients WHERE patient_id = ?", (patients[2],)),
                    ("INSERT INTO lab_results VALUES ('only-at-a', 'o', 'K', 4.1, NULL, "
                     "'mmol/L', NULL, 'final', '2026-01-01T00:00:00Z', 1)", ()))
    ring.start(a.name)
    ring.start(c.name)
    wait_ready(ring)

    code, report = verify(ring, "--settle", "5")
    assert code == 1 and not report["consistent"], report
    got = {(d["table"], json.dumps(d["key"]), d["kind"], d["state"],
            json.dumps(d["campuses"], sort_keys=True)) for d in report["differences"]}

    def row(table: str, column: str, key: str, kind: str, marks: dict[str, str]) -> tuple:
        return (table, json.dumps({column: key}), kind, "diverged",
                json.dumps(marks, sort_keys=True))

    assert got == {
        row("lab_orders", "order_id", orders[0], "missing",
            {a.name: "present", b.name: "absent", c.name: "present"}),
        row("patients", "patient_id", patients[0], "changed",
            {a.name: "present", b.name: "differs", c.name: "present"}),
        row("specimens", "specimen_id", "only-at-b", "extra",
            {a.name: "absent", b.name: "present", c.name: "absent"}),
        row("patients", "patient_id", patients[1], "missing",
            {a.name: "absent", b.name: "present", c.name: "present"}),
        row("lab_results", "result_id", "only-at-a", "extra",
            {a.name: "present", b.name: "absent", c.name: "absent"}),
        row("patients", "patient_id", patients[2], "extra",
            {a.name: "absent", b.name: "absent", c.name: "present"}),
    }
    # Every row hashed (--full) finds the same rows, and the kept digests agree
    # with the rows (changes under the replication origin fire their triggers).
    code, full = verify(ring, "--full", "--settle", "5")
    assert code == 1 and full["differences"] == report["differences"]
    assert {v["mode"] for t in full["tables"].values() for v in t.values()} == {"stock"}
    assert not any("drift" in v for v in full["campuses"].values())
    # ... and an independent comparison of the rows says the same tables differ.
    rows = {x.name: campus_rows(x.target) for x in ring.campuses}
    differing = {t for t in rows[a.name]
                 if not rows[a.name][t] == rows[b.name][t] == rows[c.name][t]}
    assert differing == {d["table"] for d in report["differences"]}

    # Repair: a dry run plans one write per row and changes nothing ...
    code, plan = run_json(ring, "repair", "--all", "--dry-run", "--settle", "5")
    assert code == 0 and plan["after"] is None, plan
    actions = {(r["table"], r["action"], r["state"]) for r in plan["repairs"]}
    assert actions == {("lab_orders", "reassert", "planned"), ("patients", "reassert", "planned"),
                       ("specimens", "delete", "planned"), ("lab_results", "delete", "planned")}
    assert len(plan["repairs"]) == 6
    # the policy (latest) speaks for c's copy: a and b lost the row behind
    # replication, their versions still say it exists; the majority would delete
    kept = next(r for r in plan["repairs"] if r["key"] == {"patient_id": patients[2]})
    assert (kept["action"], kept["at"]) == ("reassert", c.name), kept
    assert kept["reason"].startswith("latest: ") and "winning version" in kept["reason"]
    deletes = {r["table"]: r["at"] for r in plan["repairs"] if r["action"] == "delete"}
    assert deletes == {"specimens": b.name, "lab_results": a.name}
    assert {x.name: campus_rows(x.target) for x in ring.campuses} == rows
    # ... and the repair writes them through the ring: every campus then holds
    # the same rows, by verify and by an independent comparison.
    code, done = run_json(ring, "repair", "--all", "--settle", "10")
    assert code == 0 and all(r["state"] == "done" for r in done["repairs"]), json.dumps(done)
    assert done["after"]["consistent"] and done["after"]["differences"] == []
    wait_until(lambda: converged(ring), 30, "every campus holding the same rows")
    assert orders[0] in {r[0] for r in campus_rows(b.target)["lab_orders"]}
    assert "only-at-b" not in {r[0] for r in campus_rows(c.target)["specimens"]}
    # The row deleted behind replication at a did not stall a's apply: the
    # repair's update met it, waited for capture, and took it as it stood.
    status = {n["campus"]: n for n in run_json(ring, "status")[1]["nodes"]}
    assert status[a.name]["apply"]["outside_changes"] >= 1
    assert status[a.name]["apply"]["state"] == "idle"


def _keys_in_edge_buckets(prefix: str, count: int, last: bool) -> list[str]:
    """Patient ids whose key hash starts with 14 ones (the last bucket at every
    depth) or 14 zeros (the first): the buckets at the ends of the table."""
    found, i = [], 0
    while len(found) < count:
        key = f"{prefix}-{i}"
        top = int.from_bytes(hashlib.sha256(record_text([key]).encode()).digest()[:2], "big") >> 2
        if top == ((1 << 14) - 1 if last else 0):
            found.append(key)
        i += 1
    return found


def test_a_hundred_differences_found_exactly_while_the_workload_writes(
        ring: LocalCluster) -> None:
    a, b, c = ring.campuses
    seeded = [f"seed-{i:04d}" for i in range(400)]
    conn = sqlite3.connect(b.target, timeout=30)
    try:
        conn.executemany("INSERT INTO patients VALUES (?, ?, 'Seed', NULL, 'F', 'b', "
                         "'2026-01-01T00:00:00Z')", [(k, k) for k in seeded])
        conn.commit()
    finally:
        conn.close()
    wait_until(lambda: converged(ring), 60, "the seeded patients everywhere")
    extra_b = _keys_in_edge_buckets("extra-b", 5, True) + _keys_in_edge_buckets("extra-b", 5, False)
    extra_c = _keys_in_edge_buckets("extra-c", 5, True) + _keys_in_edge_buckets("extra-c", 5, False)
    insert = "INSERT INTO patients VALUES (?, 'x', 'Extra', NULL, 'F', 'x', '2026-01-01T00:00:00Z')"
    update = "UPDATE patients SET name = 'Changed behind' WHERE patient_id = ?"
    delete = "DELETE FROM patients WHERE patient_id = ?"
    # 100 differences: at the SQLite campus b and the PostgreSQL campus c,
    # 20 changed, 20 missing and 10 extra each (the extra ones in edge buckets).
    at_b = {"changed": seeded[0:20], "missing": seeded[20:40], "extra": extra_b}
    at_c = {"changed": seeded[40:60], "missing": seeded[60:80], "extra": extra_c}
    workloads = [LisWorkload(x.name, x.target, 30.0, seed=i + 11)
                 for i, x in enumerate(ring.campuses)]
    for w in workloads:
        w.start()
    try:
        behind_sqlite(b.target, *[(update, (k,)) for k in at_b["changed"]],
                      *[(delete, (k,)) for k in at_b["missing"]],
                      *[(insert, (k,)) for k in at_b["extra"]])
        ring.stop(c.name)
        behind_postgres(c.target, *[(update, (k,)) for k in at_c["changed"]],
                        *[(delete, (k,)) for k in at_c["missing"]],
                        *[(insert, (k,)) for k in at_c["extra"]])
        ring.start(c.name)
        wait_ready(ring)
        code, report = verify(ring, "--settle", "30")
    finally:
        for w in workloads:
            w.stop()
    assert code == 1, report
    diverged = {(d["key"]["patient_id"], d["kind"]) for d in report["differences"]
                if d["state"] == "diverged"}
    wanted = {(k, kind) for where in (at_b, at_c) for kind, keys in where.items() for k in keys}
    assert len(wanted) == 100
    # all 100 found, and nothing else called diverged: the rows the workload
    # was writing meanwhile are in_flight at most
    assert diverged == wanted
    assert all(d["table"] == "patients" for d in report["differences"]
               if d["state"] == "diverged")

