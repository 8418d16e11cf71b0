"""Synchronous mode on PostgreSQL: a commit returns only once another campus
journaled it; with no peer, `strict` keeps commits waiting and `degrade`
releases them after degrade_after with an alert in status."""

from __future__ import annotations

import threading

import psycopg
import pytest

from ringsync.demo.cluster import LocalCluster
from tests.helpers import wait_until
from tests.integration.conftest import wait_ready
from tests.integration.test_dr import ctl


def insert(dsn: str, key: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO patients VALUES (%s, %s, 'Sync', NULL, NULL, 'x', now())",
                     (key, key))


def count_at(dsn: str, key: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT count(*) FROM patients WHERE patient_id = %s",
                            (key,)).fetchone()[0]


def durability_of(cluster: LocalCluster, campus: str) -> str:
    import json

    nodes = json.loads(ctl(cluster, "status", "--json").stdout)["nodes"]
    return next(n.get("durability", "") for n in nodes if n["campus"] == campus)


@pytest.mark.timeout(300)
def test_strict_sync_commit_waits_for_a_peer(tmp_path):
    cluster = LocalCluster.create(tmp_path / "c", 2, engines=["postgres", "postgres"],
                                  replication={"heal_after_seconds": 2.0},
                                  postgres_settings={"durability": "sync",
                                                     "sync_policy": "strict"})
    try:
        cluster.start_all()
        wait_ready(cluster)
        a, b = cluster.campuses
        insert(a.postgres.dsn, "with-peer")  # returns: b journaled it
        assert durability_of(cluster, a.name) == "sync"
        cluster.kill(b.name)
        done = threading.Event()
        errors: list[BaseException] = []

        def commit() -> None:
            try:
                insert(a.postgres.dsn, "waits-for-peer")
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)
            finally:
                done.set()

        threading.Thread(target=commit, daemon=True).start()
        assert not done.wait(4.0), "a strict sync commit returned with no peer up"
        cluster.start(b.name)
        assert done.wait(60.0), "the commit did not return once the peer was back"
        assert not errors, errors
        wait_until(lambda: count_at(b.postgres.dsn, "waits-for-peer") == 1, 30,
                   "the row at the peer")
    finally:
        cluster.stop_all()
        cluster.stop_databases()


@pytest.mark.timeout(300)
def test_degrade_policy_releases_commits_and_raises_an_alert(tmp_path):
    cluster = LocalCluster.create(tmp_path / "c", 2, engines=["postgres", "postgres"],
                                  replication={"heal_after_seconds": 2.0},
                                  postgres_settings={"durability": "sync",
                                                     "sync_policy": "degrade",
                                                     "degrade_after": 2.0})
    try:
        cluster.start_all()
        wait_ready(cluster)
        a, b = cluster.campuses
        cluster.kill(b.name)
        insert(a.postgres.dsn, "degraded")  # returns after degrade_after
        assert "DEGRADED" in durability_of(cluster, a.name)
        out = ctl(cluster, "status")
        assert "SYNC DEGRADED" in out.stdout
        cluster.start(b.name)
        wait_until(lambda: durability_of(cluster, a.name) == "sync", 60,
                   "synchronous mode restored once the peer caught up")
        assert count_at(b.postgres.dsn, "degraded") == 1
    finally:
        cluster.stop_all()
        cluster.stop_databases()
