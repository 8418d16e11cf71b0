"""Disaster recovery with real etcd, real nodes and real databases.

The routing map published three ways (ctl route, gRPC, HTTP /serving), the
fence enforced by the campus database itself, a node that loses its etcd
lease stopping its claims, and each drill scenario once (the drill proves
RPO = 0 and convergence by reading every campus's rows, not counters, and
checks the drill cluster's single-writer set: one writer per epoch).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from ringsync.commands.demo.cluster import LocalCluster
from ringsync.commands.demo.etcd import LocalEtcd
from tests.helpers import wait_until
from tests.integration.conftest import ctl, wait_ready

RINGSYNC = [sys.executable, "-m", "ringsync.commands.cli"]
DR_TUNING = {"heal_after_seconds": 2.0, "probe_interval_seconds": 0.5}


@pytest.fixture
def dr_cluster(tmp_path: Path, etcd: LocalEtcd) -> Iterator[LocalCluster]:
    cluster = LocalCluster.create(tmp_path / "cluster", 3, replication=DR_TUNING,
                                  dr={"etcd": etcd.endpoints, "failover_after": 4.0,
                                      "lease_ttl": 2, "etcd_tls": True})
    try:
        etcd.start(cluster.pki_dir)
        cluster.start_all()
        wait_ready(cluster)
        yield cluster
    finally:
        cluster.stop_all()
        cluster.stop_databases()


def http(address: str, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://{address}{path}", timeout=2) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def serving_map(cluster: LocalCluster) -> dict[str, list[str]]:
    """campus -> the nodes answering 200 for it (a load balancer's view)."""
    return {c.name: [n.name for n in cluster.campuses
                     if http(n.health, f"/serving/{c.name}")[0] == 200]
            for c in cluster.campuses}


def app_write(db: Path, key: str) -> None:
    conn = sqlite3.connect(db, timeout=10)
    try:
        conn.execute("INSERT INTO patients (patient_id, mrn, name, home_campus, created_at) "
                     "VALUES (?, ?, 'Drill', 'x', '2026-01-01')", (key, key))
        conn.commit()
    finally:
        conn.close()


def test_switchover_moves_route_fences_old_database_and_back(dr_cluster: LocalCluster):
    a, b, c = (x.name for x in dr_cluster.campuses)
    wait_until(lambda: serving_map(dr_cluster) == {a: [a], b: [b], c: [c]}, 20,
               "every node serving its own campus, and only that one")
    route = json.loads(ctl(dr_cluster, "route", "--json").stdout)
    assert route["dr"] and route["leader"] in (a, b, c)
    assert {r["campus"]: r["serving"] for r in route["routes"]} == {a: a, b: b, c: c}
    app_write(dr_cluster.campus(a).database, "before-switchover")

    moved = ctl(dr_cluster, "switchover", "--campus", a, "--to", b, "--json")
    assert moved.returncode == 0, moved.stderr
    result = json.loads(moved.stdout)
    assert result["ok"] and result["to"] == b and result["head"] >= 1
    wait_until(lambda: serving_map(dr_cluster)[a] == [b], 5, "b answering 200 for a")
    # The old database refuses application writes, by its own trigger.
    with pytest.raises(sqlite3.DatabaseError, match="fenced"):
        app_write(dr_cluster.campus(a).database, "refused")
    # Nothing written before the fence is missing at the new serving campus.
    db_b = sqlite3.connect(dr_cluster.campus(b).database)
    assert db_b.execute("SELECT count(*) FROM patients WHERE patient_id = 'before-switchover'"
                        ).fetchone()[0] == 1
    db_b.close()
    wait_until(lambda: http(dr_cluster.campus(c).health, f"/serving/{a}")[1]["route"]["serving"]
               == b, 5, "a third node's view of the route")
    assert http(dr_cluster.campus(c).health, f"/serving/{a}")[0] == 503

    # The gRPC watch sends the map; the node it asks no longer serves a.
    assert _watched_route(dr_cluster, c, a) == b

    back = ctl(dr_cluster, "switchback", "--campus", a, "--json")
    assert back.returncode == 0, back.stderr
    wait_until(lambda: serving_map(dr_cluster)[a] == [a], 5, "a answering 200 for a again")
    app_write(dr_cluster.campus(a).database, "after-switchback")


def _watched_route(cluster: LocalCluster, node: str, campus: str) -> str:
    """Who serves ``campus``, as the first message of ``node``'s WatchRoutes says."""
    import asyncio

    from ringsync.client import ClusterClient
    from ringsync.config import load_cluster
    from ringsync.v1 import control_pb2 as cpb

    async def first() -> str:
        client = ClusterClient(load_cluster(cluster.cluster_file, need_client_tls=True))
        try:
            call = client._stub(node).WatchRoutes(cpb.RoutesRequest(), timeout=10)
            async for routing in call:
                assert routing.dr_enabled and routing.node == node
                call.cancel()
                return next(r.serving for r in routing.routes if r.campus == campus)
            return ""
        finally:
            await client.close()

    return asyncio.run(first())


def test_node_cut_off_from_etcd_stops_claiming_and_fences(dr_cluster: LocalCluster,
                                                          etcd: LocalEtcd):
    a = dr_cluster.campuses[0]
    wait_until(lambda: serving_map(dr_cluster)[a.name] == [a.name], 20, "a serving itself")
    etcd.stop()
    wait_until(lambda: all(not v for v in serving_map(dr_cluster).values()), 15,
               "every node answering 503 once its lease cannot be proven")
    wait_until(lambda: _refused(a.database), 10, "the database fencing itself")
    etcd.start()
    wait_until(lambda: serving_map(dr_cluster)[a.name] == [a.name], 30,
               "a serving itself again once etcd is back")
    app_write(a.database, "after-etcd-returned")


def _refused(db: Path) -> bool:
    try:
        app_write(db, f"probe-{id(db)}")
        return False
    except sqlite3.DatabaseError as e:
        return "fenced" in str(e)


def test_without_etcd_failover_is_off_and_every_campus_serves_itself(make_cluster):
    cluster = make_cluster(2)
    cluster.start_all()
    wait_ready(cluster)
    out = ctl(cluster, "route")
    assert out.returncode == 0 and "automatic failover is OFF" in out.stdout
    wait_until(lambda: serving_map(cluster) == {c.name: [c.name] for c in cluster.campuses},
               10, "static routes on the HTTP endpoint")
    refused = ctl(cluster, "switchover", "--campus", cluster.campuses[0].name, "--to",
                  cluster.campuses[1].name)
    assert refused.returncode == 2 and "disaster recovery is off" in refused.stderr


@pytest.mark.timeout(420)
@pytest.mark.parametrize("scenario,extra", [
    ("switchover", ["--campuses", "2"]),
    ("node-crash", ["--campuses", "2"]),
    ("campus-isolation", []),
    ("etcd-member-loss", ["--campuses", "2"]),
    ("db-down", ["--engine", "mixed", "--campuses", "2"]),
    ("origin-crash", ["--engine", "postgres", "--campuses", "2", "--durability", "sync"]),
    # Sync mode, a node killed: seed 7 kills wangjiangshan, whose predecessor
    # chaohui is the set's writer (its set writer's commits then wait for a
    # peer while holding a lock the set fence's extension needs: the lease
    # keep-alive once waited behind that and a healthy campus fenced itself);
    # wangjiangshan's own clients are left in commits that wait for ever.
    ("node-crash", ["--engine", "postgres", "--durability", "sync", "--seed", "7"]),
    # Sync mode, a campus cut off: its commits wait for peers it cannot reach,
    # then its fence closes and ends them; its predecessor loses its successor.
    ("campus-isolation", ["--engine", "postgres", "--durability", "sync"]),
], ids=lambda v: v if isinstance(v, str) else "sync" if "sync" in v else "async")
def test_drill_scenario_keeps_every_invariant(tmp_path: Path, scenario: str, extra: list[str]):
    if os.environ.get("RINGSYNC_FAST_APPLY") == "0":  # the exact path only
        extra = [*extra, "--exact-apply"]
    result = subprocess.run(
        [*RINGSYNC, "drill", scenario, "--json", "--seed", "3", "--data-dir",
         str(tmp_path / "drill"), *extra],
        capture_output=True, text=True, timeout=400)
    assert result.stdout, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["scenario"] == scenario and report["cycles"] == 1
    assert report["acknowledged_writes"] > 0
    assert report["rpo_lost_writes"] == 0, report
    assert report["converged"] is True, report
    assert report["two_writers_seen"] is False, report
    assert report["healthy_lease_lost"] == 0, report  # no untouched campus lost its lease
    assert report["healthy_fenced"] == 0, report  # nor fenced its database
    assert report["rto_seconds"]["max"] is not None
    # the single-writer set drill_single: written, one writer per epoch, nothing lost
    assert report["set_writes"] > 0 and report["set_epochs"], report
    assert report["set_problems"] == [], report
    if scenario == "switchover":  # its writer went there and back
        assert report["set_moves"] == 1 and len(report["set_epochs"]) >= 3, report
    if scenario in ("etcd-member-loss", "wan-soak"):
        assert report["set_moves"] == 0, report
    if "sync" in extra:  # RPO = 0 even without the failed campus's disk
        assert report["lost_without_failed_campus"] == 0, report
        assert report["stale_parked"] == 0, report  # no acknowledged write of a deposed writer
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.timeout(420)
def test_dual_track_drill_joins_from_the_old_system_and_moves_its_users_there_and_back(
        tmp_path: Path):
    """The migration story: PostgreSQL joins from MariaDB under writes, the old
    system's users go to PostgreSQL and back; every history row and every
    acknowledged write is at both campuses, the rows equal, one writer each time."""
    from tests.mariadb_fixtures import need_mariadb

    need_mariadb()
    history = 2000
    result = subprocess.run(
        [*RINGSYNC, "drill", "dual-track", "--json", "--seed", "3", "--history-rows",
         str(history), "--data-dir", str(tmp_path / "drill")],
        capture_output=True, text=True, timeout=400)
    assert result.stdout, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["scenario"] == "dual-track" and report["engine"] == "mariadb+postgres"
    assert report["rpo_lost_writes"] == 0, report
    assert report["converged"] is True, report
    assert report["two_writers_seen"] is False, report
    assert report["set_problems"] == [], report
    # the set's writer went from MariaDB's fence to PostgreSQL's and back
    assert report["set_moves"] == 1 and len(report["set_epochs"]) >= 3, report
    assert report["acknowledged_writes"] > history, report  # the history rows count
    cycle, = report["cycles_detail"]
    moves = [m["move"] for m in cycle["moves"]]
    assert moves[0] == "join" and moves[-2:] == ["switchover", "switchback"], moves
    join = cycle["moves"][0]
    assert join["rows_copied"] >= history, join  # the old system's history came by copy
    old_system, new_system = join["from"], join["campus"]
    assert [m["to"] for m in cycle["moves"][-2:]] == [new_system, old_system]
    assert all(m["rto_seconds"] is not None for m in cycle["moves"][1:])
    assert report["rto_seconds"]["max"] is not None
    assert result.returncode == 0, result.stderr[-3000:]


def test_etcd_speaks_tls_only_and_to_the_clusters_certificates_only(
        dr_cluster: LocalCluster, etcd: LocalEtcd, tmp_path: Path) -> None:
    """With [dr] etcd_tls the nodes, ctl and the drills reach etcd with their
    own certificates; a plaintext client and a certificate of another CA (even
    one that copied the CA's name) read nothing."""
    import asyncio

    import grpc
    from cryptography import x509

    from ringsync import pki
    from ringsync.config import TLSFiles
    from ringsync.dr.store import DRStore, EtcdError, TLSClient

    endpoints = tuple(etcd.endpoints)

    async def routes(tls: TLSFiles | None) -> dict:
        store = DRStore(dr_cluster.name, endpoints, timeout=2.0, tls=tls)
        try:
            return await asyncio.wait_for(store.routes(), 10)
        finally:
            await store.close()

    assert set(asyncio.run(routes(dr_cluster.operator_tls))) >= {
        c.name for c in dr_cluster.campuses}
    route = ctl(dr_cluster, "route", "--json")
    assert route.returncode == 0, route.stderr
    with pytest.raises((EtcdError, TimeoutError)):
        asyncio.run(routes(None))
    name = x509.load_pem_x509_certificate((dr_cluster.pki_dir / "ca.crt").read_bytes()
                                          ).subject.rfc4514_string().removeprefix("CN=")
    pki.create_ca(tmp_path / "forged", name=name)
    cert, key = pki.issue(tmp_path / "forged", "operator", "mallory")
    # Our own client refuses such a certificate before dialling; ask etcd itself.
    creds = grpc.ssl_channel_credentials((dr_cluster.pki_dir / "ca.crt").read_bytes(),
                                         key.read_bytes(), cert.read_bytes())

    async def forged_get() -> object:
        host, port = endpoints[0].split(":")
        client = TLSClient(creds, host=host, port=int(port), timeout=2)
        try:
            return await asyncio.wait_for(client.get(b"/ringsync/"), 10)
        finally:
            await client.close()

    with pytest.raises((EtcdError, TimeoutError)):
        asyncio.run(forged_get())
