"""Single-writer replication sets with real etcd, real nodes, real SQLite.

One set (``registry``: the patients table) on three campuses: only its
writer's database takes application writes to it; a switchover moves the
writer losslessly; a writer killed while its users keep writing is failed
over, and what it wrote after it was deposed is undone at its own database,
parked as stale everywhere, and never applied anywhere else. Convergence is
proven by comparing rows across campuses.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import psycopg
import pytest

from ringsync.commands.demo.cluster import LocalCluster
from ringsync.commands.demo.etcd import LocalEtcd
from tests.helpers import campus_rows, wait_until
from tests.integration.conftest import ctl, wait_ready

TUNING = {"heal_after_seconds": 2.0, "probe_interval_seconds": 0.5}
NOT_WRITER = "not the writer of single-writer set registry"


@pytest.fixture(params=[["sqlite"] * 3], ids=["sqlite"])
def set_cluster(request: pytest.FixtureRequest, tmp_path: Path,
                etcd: LocalEtcd) -> Iterator[LocalCluster]:
    cluster = LocalCluster.create(tmp_path / "cluster", 3, replication=TUNING,
                                  engines=request.param,
                                  dr={"etcd": etcd.endpoints, "failover_after": 4.0,
                                      "lease_ttl": 2, "etcd_tls": True},
                                  sets=[{"name": "registry", "tables": ["patients"],
                                         "mode": "single", "writer": "chaohui"}])
    try:
        etcd.start(cluster.pki_dir)
        cluster.start_all()
        wait_ready(cluster)
        yield cluster
    finally:
        cluster.stop_all()
        cluster.stop_databases()


def write_patient(db: Path | str, key: str) -> str:
    """'ok', or the database's refusal (SQLite file or PostgreSQL DSN)."""
    if isinstance(db, str):
        # Not `with psycopg.connect(...)`: its exit commits and then closes, and
        # the set's commit-time guard (a deferred constraint trigger) refuses
        # the COMMIT itself once the fence deadline passes between the INSERT
        # and the commit; exit then raises before close(), and the open
        # connection is later collected with a ResourceWarning (an error
        # under filterwarnings=error, in whichever test is running then).
        try:
            with closing(psycopg.connect(db, connect_timeout=5)) as pg:
                pg.execute("INSERT INTO patients (patient_id, mrn, name, home_campus, "
                           "created_at) VALUES (%s, %s, 'Set', 'x', '2026-01-01')", (key, key))
                pg.commit()
            return "ok"
        except psycopg.Error as e:
            return str(e)
    conn = sqlite3.connect(db, timeout=10)
    try:
        conn.execute("INSERT INTO patients (patient_id, mrn, name, home_campus, created_at) "
                     "VALUES (?, ?, 'Set', 'x', '2026-01-01')", (key, key))
        conn.commit()
        return "ok"
    except sqlite3.DatabaseError as e:
        return str(e)
    finally:
        conn.close()


def write_order(db: Path, key: str) -> str:
    conn = sqlite3.connect(db, timeout=10)
    try:
        conn.execute("INSERT INTO lab_orders VALUES (?, 'p', 'GLU', 'routine', 'new', 'x', "
                     "'2026-01-01')", (key,))
        conn.commit()
        return "ok"
    finally:
        conn.close()


def patients(db: Path | str) -> set[str]:
    return {r[0] for r in campus_rows(db)["patients"]}


def stale_parked(db: Path | str) -> list[tuple[str, str]]:
    if isinstance(db, str):
        with closing(psycopg.connect(db)) as pg:  # closed even if the commit fails
            return [tuple(r) for r in pg.execute(
                "SELECT key, error FROM ringsync.dlq WHERE state = 'stale'").fetchall()]
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT key, error FROM _rs_dlq WHERE state = 'stale'").fetchall()
    finally:
        conn.close()


def set_route(cluster: LocalCluster) -> dict:
    doc = json.loads(ctl(cluster, "route", "--json").stdout)
    (route,) = [r for r in doc["routes"] if r["campus"] == "set:registry"]
    return route


def test_only_the_writer_takes_set_writes_and_switchover_moves_it(set_cluster: LocalCluster):
    a, b, c = (set_cluster.campus(x.name) for x in set_cluster.campuses)
    wait_until(lambda: write_patient(a.database, "first") == "ok", 20,
               "the configured writer opening the set")
    assert NOT_WRITER in write_patient(b.database, "refused-at-b")
    assert write_order(b.database, "multi-writer-table-at-b") == "ok"  # other tables: any
    route = set_route(set_cluster)
    assert route["serving"] == a.name and route["writer_epoch"] == 1

    moved = ctl(set_cluster, "switchover", "--set", "registry", "--to", b.name, "--json")
    assert moved.returncode == 0, moved.stderr
    assert json.loads(moved.stdout)["ok"]
    wait_until(lambda: write_patient(b.database, "at-b") == "ok", 20, "b opening the set")
    assert NOT_WRITER in write_patient(a.database, "refused-at-a")
    route = set_route(set_cluster)
    assert route["serving"] == b.name and route["tenures"][-1][:2] == [1, a.name]
    wait_until(lambda: patients(a.database) == patients(b.database) == patients(c.database)
               == {"first", "at-b"}, 20, "every campus holding the same set rows")


@pytest.mark.parametrize("set_cluster", [["sqlite"] * 3, ["postgres", "sqlite", "postgres"]],
                         ids=["sqlite", "postgres-writer"], indirect=True)
def test_a_deposed_writers_late_writes_are_undone_and_parked_everywhere(
        set_cluster: LocalCluster):
    a, b, c = (set_cluster.campus(x.name) for x in set_cluster.campuses)
    wait_until(lambda: write_patient(a.target, "before") == "ok", 20, "a writing the set")
    wait_until(lambda: patients(b.target) == patients(c.target) == {"before"}, 20,
               "the first row everywhere")
    set_cluster.kill(a.name)
    # Its database still takes writes until the fence deadline (one lease):
    # these are acknowledged to the application but never reach the ring.
    late = []
    for i in range(1000):
        if write_patient(a.target, f"late-{i}") != "ok":
            break
        late.append(f"late-{i}")
    assert late, "the killed writer's database refused at once; nothing to prove"
    assert NOT_WRITER in write_patient(a.target, "after-deadline")

    wait_until(lambda: set_route(set_cluster)["serving"] == b.name, 30,
               "the set failing over to b")
    wait_until(lambda: write_patient(b.target, "new-writer") == "ok", 20, "b opening")
    set_cluster.start(a.name)
    wait_until(lambda: patients(a.target) == patients(b.target) == patients(c.target)
               == {"before", "new-writer"}, 60,
               "every campus holding the same rows, without the late writes")
    for node in (a, b, c):
        wait_until(lambda node=node: {json.loads(k)[0] for k, _ in stale_parked(node.target)}
                   == set(late), 30, f"{node.name} parking the late writes as stale")
    assert all("stale epoch 1" in err for _, err in stale_parked(b.target))
    assert NOT_WRITER in write_patient(a.target, "still-not-writer")
    # The new writer re-enters a parked row: it reaches the old writer too
    # (its undone row counts as a base version, not a pending local change).
    assert write_patient(b.target, late[0]) == "ok"
    wait_until(lambda: patients(a.target) == patients(b.target) == patients(c.target)
               == {"before", "new-writer", late[0]}, 30, "the re-entered row everywhere")
    status = json.loads(ctl(set_cluster, "status", "--json").stdout)
    assert any("ALERT" in (n.get("sets") or "") for n in status["nodes"])

    def books_balance() -> bool:  # the deposed writer's own undone changes are not "received"
        nodes = json.loads(ctl(set_cluster, "status", "--json").stdout)["nodes"]
        return all(n["accounting"]["balanced"] for n in nodes)
    wait_until(books_balance, 20, "every campus's accounting balanced")
