"""PostgreSQL campuses: errors that name the fix, and a mixed ring under faults.

Real servers made with initdb/pg_ctl on free ports; rows are compared across
engines value by value.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections.abc import Iterator

import psycopg
import pytest

from node.engines.postgres.engine import PostgresEngine
from ringsync.commands.demo.cluster import LocalCluster, free_port
from ringsync.commands.demo.lis import LisWorkload
from ringsync.commands.demo.postgres import LocalPostgres
from ringsync.errors import EngineError, SchemaError
from tests.helpers import campus_rows, wait_until
from tests.integration.conftest import wait_ready


@pytest.fixture(scope="module")
def server() -> Iterator[LocalPostgres]:
    pg = LocalPostgres.create(None, free_port())
    pg.start()
    yield pg
    pg.remove()


def test_role_without_replication_privilege_is_refused(server: LocalPostgres) -> None:
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS app")
        conn.execute("CREATE ROLE app LOGIN")
        conn.execute("CREATE TABLE IF NOT EXISTS t1(id int PRIMARY KEY)")
    engine = PostgresEngine(server.dsn.replace("user=ringsync", "user=app"), ("t1",), "a")
    with pytest.raises(EngineError, match="ALTER ROLE app REPLICATION"):
        engine.open()
    engine.close()


def test_table_without_primary_key_is_refused(server: LocalPostgres) -> None:
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS notes(body text)")
    engine = PostgresEngine(server.dsn, ("notes",), "a")
    with pytest.raises(SchemaError, match="'notes' has no primary key"):
        engine.open()
    engine.close()


def test_wal_level_not_logical_is_refused(tmp_path) -> None:
    pg = LocalPostgres.create(None, free_port())
    try:
        pg.start()
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET wal_level = replica")
        pg.restart()
        engine = PostgresEngine(pg.dsn, ("t",), "a")
        with pytest.raises(EngineError, match="wal_level = replica; set wal_level = logical"):
            engine.open()
        engine.close()
    finally:
        pg.remove()


@pytest.fixture
def mixed(make_cluster) -> Iterator[LocalCluster]:
    cluster = make_cluster(3, engines=["postgres", "postgres", "sqlite"])
    yield cluster
    cluster.stop_all()
    cluster.stop_databases()


def test_mixed_ring_converges_through_node_crash_and_postgres_restart(
    mixed: LocalCluster,
) -> None:
    mixed.start_all()
    wait_ready(mixed)
    pg_a, pg_b, lite = mixed.campuses
    workloads = [LisWorkload(c.name, c.target, 20.0, seed=i + 1)
                 for i, c in enumerate(mixed.campuses)]
    for w in workloads:
        w.start()
    time.sleep(1.5)
    mixed.kill(pg_a.name, signal.SIGKILL)          # the node dies mid-stream
    time.sleep(1.0)
    mixed.start(pg_a.name)
    assert pg_b.postgres is not None
    pg_b.postgres.restart()                         # its database restarts under load
    time.sleep(2.0)
    for w in workloads:
        w.stop()
    assert all(w.transactions > 0 for w in workloads)
    assert workloads[1].last_error, "the restart should have interrupted the workload at least once"

    def same() -> bool:
        snaps = [campus_rows(c.target) for c in mixed.campuses]
        return all(s == snaps[0] for s in snaps[1:])

    wait_until(same, 90, "PostgreSQL and SQLite campuses to hold identical rows", 1.0)
    rows = campus_rows(lite.target)
    homes = {r[5] for r in rows["patients"]}
    assert homes == {c.name for c in mixed.campuses}


def test_dropped_slot_stops_the_node_with_a_resync_message(mixed: LocalCluster) -> None:
    import subprocess
    import sys

    mixed.start_all()
    wait_ready(mixed)
    pg_a = mixed.campuses[0]
    w = LisWorkload(pg_a.name, pg_a.target, 50.0, seed=3)
    w.start()
    time.sleep(1.0)
    w.stop()
    wait_until(lambda: (pg_a.dir / "journal.db").exists(), 10, "a journal")
    time.sleep(1.0)  # let capture journal what was written
    mixed.stop(pg_a.name)
    with psycopg.connect(pg_a.target, autocommit=True) as conn:
        conn.execute("SELECT pg_drop_replication_slot(%s)", (f"ringsync_{pg_a.name}",))
    result = subprocess.run([sys.executable, "-m", "node", "--config", str(pg_a.config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "is gone" in result.stderr and "re-sync" in result.stderr


def test_schema_difference_between_campuses_is_reported_naming_both(mixed: LocalCluster) -> None:
    import asyncio

    from ringsync.client import ClusterClient
    from ringsync.config import load_cluster

    pg_b, lite = mixed.campuses[1], mixed.campuses[2]
    conn = sqlite3.connect(lite.database)
    conn.execute("ALTER TABLE lab_results ADD COLUMN reviewer TEXT")
    conn.commit()
    conn.close()
    mixed.start_all()

    async def link_error() -> str:
        client = ClusterClient(load_cluster(mixed.cluster_file, need_client_tls=True))
        try:
            reply = await client.status_of(pg_b.name)
        finally:
            await client.close()
        if reply.status is None:
            return ""
        return next((lk.error for lk in reply.status.links if lk.to == lite.name), "")

    wait_until(lambda: "schemas of" in asyncio.run(link_error()), 30,
               f"{pg_b.name} to report the schema difference with {lite.name}")
    error = asyncio.run(link_error())
    assert pg_b.name in error and lite.name in error and "reviewer" in error


def peak_rss_mb(pid: int) -> int:
    from pathlib import Path

    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return int(line.split()[1]) // 1024
    raise AssertionError("no VmHWM")


# Every row goes through conflict resolution at both ends (versions read and
# written per row): about 3 minutes on an idle 2-core machine, so the default
# 180 s per-test limit is too tight on a busy one, and it is opt-in (the
# normal suite stays near ten minutes): RINGSYNC_LONG_TESTS=1.
@pytest.mark.timeout(600)
@pytest.mark.skipif(not os.environ.get("RINGSYNC_LONG_TESTS"),
                    reason="long test (about 3 min): set RINGSYNC_LONG_TESTS=1")
def test_million_row_transaction_replicates_in_bounded_memory(make_cluster) -> None:
    """One 1,000,000-row transaction, PostgreSQL to PostgreSQL; nodes stay under 300 MB."""
    cluster = make_cluster(2, engines=["postgres", "postgres"])
    cluster.start_all()
    wait_ready(cluster)
    a, b = cluster.campuses
    n = 1_000_000
    with psycopg.connect(a.target, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO lab_results SELECT 'r' || g, 'o' || (g %% 1000), 'GLU', g / 10.0, "
            "NULL, 'mmol/L', NULL, 'resulted', '2026-11-22T05:00:00Z', 1 "
            "FROM generate_series(1, %s) g", (n,))
    digest = ("SELECT count(*), md5(string_agg(result_id || ':' || value_num, ',' "
              "ORDER BY result_id)) FROM lab_results")

    def arrived() -> bool:
        with psycopg.connect(b.target) as conn:
            return conn.execute("SELECT count(*) FROM lab_results").fetchone()[0] == n

    wait_until(arrived, 400, "the million-row transaction to arrive", interval=2.0)
    with psycopg.connect(a.target) as ca, psycopg.connect(b.target) as cb:
        assert ca.execute(digest).fetchone() == cb.execute(digest).fetchone()
    peaks = {c.name: peak_rss_mb(cluster.processes[c.name].pid) for c in cluster.campuses}
    assert all(mb < 300 for mb in peaks.values()), peaks
