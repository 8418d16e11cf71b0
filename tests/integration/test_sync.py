"""Synchronous mode on PostgreSQL: a commit returns only once another campus
journaled it; with no peer, `strict` keeps commits waiting and `degrade`
releases them after degrade_after with an alert in status. The fence never
waits for a peer (nor long for an application's lock), and a node starting
in sync mode ends the commits left waiting from before it started."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from node.engines.postgres.engine import PostgresEngine
from ringsync.commands.demo.cluster import LocalCluster, free_port
from ringsync.commands.demo.postgres import LocalPostgres
from ringsync.errors import EngineError
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


def status_of(cluster: LocalCluster, campus: str) -> dict:
    import json

    nodes = json.loads(ctl(cluster, "status", "--json").stdout)["nodes"]
    return next(n for n in nodes if n["campus"] == campus)


def durability_of(cluster: LocalCluster, campus: str) -> str:
    return status_of(cluster, campus).get("durability", "")


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
        # the alert line in status' alerts, with the other alert sources
        assert any(x.startswith("SYNC DEGRADED") for x in status_of(cluster, a.name)["alerts"])
        out = ctl(cluster, "status")
        assert "SYNC DEGRADED" in out.stdout
        cluster.start(b.name)
        wait_until(lambda: durability_of(cluster, a.name) == "sync", 60,
                   "synchronous mode restored once the peer caught up")
        assert not [x for x in status_of(cluster, a.name)["alerts"] if "SYNC" in x]
        assert count_at(b.postgres.dsn, "degraded") == 1
    finally:
        cluster.stop_all()
        cluster.stop_databases()


@pytest.fixture
def sync_engine(tmp_path) -> Iterator[tuple[PostgresEngine, str]]:
    """A sync-mode engine on a fresh server whose peers never acknowledge
    (nothing calls sync_release): every application commit waits."""
    pg = LocalPostgres.create(None, free_port())
    pg.start()
    try:
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE kv(k text PRIMARY KEY, v bigint)")
            conn.execute("CREATE TABLE beds(k text PRIMARY KEY)")
        engine = PostgresEngine(pg.dsn, ("kv", "beds"), "solo", sync=True,
                                sets={"beds": "beds"})
        engine.open()
        engine.source.start_capture(0)
        try:
            yield engine, pg.dsn
        finally:
            engine.close()
            engine.fence.close_fence()
    finally:
        pg.remove()


def _waiting_commit(dsn: str, *statements: str) -> tuple[threading.Event, list[BaseException]]:
    done, errors = threading.Event(), []

    def run() -> None:
        try:
            with psycopg.connect(dsn, connect_timeout=5) as conn:
                for statement in statements:
                    conn.execute(statement)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            errors.append(e)
        finally:
            done.set()

    threading.Thread(target=run, daemon=True).start()
    return done, errors


def _sync_waiters(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity "
                            "WHERE wait_event = 'SyncRep'").fetchone()[0]


@pytest.mark.timeout(120)
def test_fence_writes_never_wait_for_a_peer_nor_long_for_an_application_lock(sync_engine):
    engine, dsn = sync_engine
    engine.fence.set_fence(float("inf"))
    engine.fence.set_set_fence("beds", time.time() + 60, 1)
    # An application transaction that read the set's fence row FOR SHARE (the
    # drills' set writer does) and whose commit now waits for a peer that
    # never answers: it keeps the row lock while it waits.
    done, _ = _waiting_commit(
        dsn, "SELECT 1 FROM ringsync.set_fence WHERE name = 'beds' FOR SHARE",
        "INSERT INTO beds VALUES ('b1')")
    from tests.helpers import wait_until
    wait_until(lambda: _sync_waiters(dsn) == 1, 30, "the application's commit waiting")
    assert not done.is_set()
    started = time.monotonic()
    engine.fence.set_fence(time.time() + 5)  # the campus fence: no wait for the standby
    assert time.monotonic() - started < 1.0
    with pytest.raises(EngineError):  # the set's row: gives up, is retried next tick
        engine.fence.set_set_fence("beds", time.time() + 5, 1)
    assert time.monotonic() - started < 3.0
    assert engine.fence.fence_state() > time.time()


@pytest.mark.timeout(120)
def test_a_sync_node_starting_ends_commits_left_waiting_from_before(sync_engine):
    engine, dsn = sync_engine
    engine.fence.set_fence(float("inf"))
    done, errors = _waiting_commit(dsn, "INSERT INTO kv VALUES ('waits', 1)")
    from tests.helpers import wait_until
    wait_until(lambda: _sync_waiters(dsn) == 1, 30, "the application's commit waiting")
    engine.close()  # the node dies: its capture connection (the standby) is gone
    time.sleep(1.0)
    assert not done.is_set(), "a commit returned with no synchronous standby"
    again = PostgresEngine(dsn, ("kv", "beds"), "solo", sync=True, sets={"beds": "beds"})
    again.open()  # the node starts again: the waiter is ended, not released
    try:
        assert done.wait(10), "the commit left waiting was not ended"
        assert errors and isinstance(errors[0], psycopg.OperationalError), errors
        with psycopg.connect(dsn) as conn:  # committed here all the same: it replicates
            assert conn.execute("SELECT count(*) FROM kv WHERE k = 'waits'").fetchone()[0] == 1
    finally:
        again.close()
        again.fence.close_fence()
