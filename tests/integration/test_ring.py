"""Real node processes in a ring: convergence, kill -9, healing around a stopped node.

Convergence is judged by reading every row of every table in every campus's
SQLite file, never by counters.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time

from ringsync.client import ClusterClient
from ringsync.commands.demo.cluster import LocalCluster
from ringsync.commands.demo.lis import LisWorkload
from ringsync.config import load_cluster
from tests.helpers import campus_rows, table_rows, wait_until
from tests.integration.conftest import wait_ready


def converge(cluster: LocalCluster, timeout: float = 60.0) -> dict:
    """Wait until every campus database holds exactly the same rows; return
    them. On a timeout, the error shows the rows that still differ."""
    snapshots: list[dict] = []

    def same() -> bool:
        nonlocal snapshots
        snapshots = [campus_rows(c.target) for c in cluster.campuses]
        return all(s == snapshots[0] for s in snapshots[1:])

    try:
        wait_until(same, timeout, "every campus to hold identical rows", interval=0.5)
    except AssertionError as e:
        raise AssertionError(f"{e}; differing rows: "
                             f"{row_differences(cluster, snapshots)}") from None
    return snapshots[0]


def row_differences(cluster: LocalCluster, snapshots: list[dict], limit: int = 5) -> dict:
    """Per table, the first rows (by key) that not every campus holds alike:
    key -> {campus: row or None}."""
    out: dict = {}
    names = [c.name for c in cluster.campuses]
    for table in snapshots[0] if snapshots else ():
        by_campus = [{r[0]: r for r in snap.get(table, [])} for snap in snapshots]
        keys = sorted({k for rows in by_campus for k in rows}, key=repr)
        differing = [k for k in keys if len({repr(rows.get(k)) for rows in by_campus}) > 1]
        if differing:
            out[table] = {k: dict(zip(names, (rows.get(k) for rows in by_campus), strict=True))
                          for k in differing[:limit]}
            out[table]["count"] = len(differing)
    return out


def statuses(cluster: LocalCluster) -> dict:
    async def fetch():
        client = ClusterClient(load_cluster(cluster.cluster_file, need_client_tls=True))
        try:
            return {r.campus: r.status for r in await client.status_all()}
        finally:
            await client.close()

    return asyncio.run(fetch())


def link_states(cluster: LocalCluster, campus: str) -> dict[str, str]:
    st = statuses(cluster)[campus]
    return {} if st is None else {link.to: link.state for link in st.links}


def assert_exactly_once(cluster: LocalCluster) -> None:
    """Every campus applied exactly the transactions each origin captured."""
    s = statuses(cluster)
    unreachable = [c for c, st in s.items() if st is None]
    assert not unreachable, f"no status from {unreachable} (yet)"
    captured = {c: st.journal.seqs[c] for c, st in s.items() if c in st.journal.seqs}
    for campus, st in s.items():
        for origin, seq in captured.items():
            assert st.applied.seqs.get(origin, 0) == seq, (campus, origin)


def run_workload(cluster: LocalCluster, seconds: float, rate: float = 25.0,
                 during=None) -> list[LisWorkload]:
    workloads = [LisWorkload(c.name, c.database, rate, seed=i + 1)
                 for i, c in enumerate(cluster.campuses)]
    for w in workloads:
        w.start()
    try:
        if during is not None:
            during()
        time.sleep(seconds)
    finally:
        for w in workloads:
            w.stop()
    assert sum(w.transactions for w in workloads) > 0
    return workloads


def test_four_campuses_converge_under_concurrent_writes(make_cluster) -> None:
    cluster = make_cluster(4)
    cluster.start_all()
    wait_ready(cluster)
    workloads = run_workload(cluster, 5)
    rows = converge(cluster)
    wait_until(lambda: _exactly_once_ok(cluster), 30, "applied vectors to match captures")
    # every campus's own writes are there, everywhere
    homes = {r[5] for r in rows["patients"]}
    assert homes == {c.name for c in cluster.campuses}
    assert all(w.errors == 0 for w in workloads)
    # once every campus holds everything, every journal is pruned empty
    wait_until(
        lambda: all(st is not None and st.journal_transactions == 0
                    for st in statuses(cluster).values()),
        30, "journals to be pruned once every campus holds every transaction",
    )


def test_large_transaction_travels_in_chunks_and_applies_whole(make_cluster) -> None:
    cluster = make_cluster(3, frame_max_changes=300)
    cluster.start_all()
    wait_ready(cluster)
    origin = cluster.campuses[0]
    conn = sqlite3.connect(origin.database, isolation_level=None, timeout=30)
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO lab_results VALUES (?, 'o', 'GLU', ?, NULL, 'mmol/L', NULL, "
        "'resulted', 't', 1)",
        [(f"r{i:05d}", i / 10) for i in range(5000)],
    )
    conn.execute("COMMIT")
    conn.close()
    rows = converge(cluster)
    assert len(rows["lab_results"]) == 5000
    wait_until(lambda: _exactly_once_ok(cluster), 30, "applied vectors to match captures")
    # the 5,000 rows were one transaction (seq 1 of the origin), split into frames
    assert statuses(cluster)[cluster.campuses[2].name].applied.seqs[origin.name] == 1


def _exactly_once_ok(cluster: LocalCluster) -> bool:
    try:
        assert_exactly_once(cluster)
        return True
    except AssertionError:
        return False


def test_kill_9_of_a_node_during_writes_loses_and_duplicates_nothing(make_cluster) -> None:
    cluster = make_cluster(3)
    cluster.start_all()
    wait_ready(cluster)
    victim = cluster.campuses[1].name

    def crash_and_restart() -> None:
        time.sleep(1.5)
        cluster.kill(victim, signal.SIGKILL)
        time.sleep(2.0)
        cluster.start(victim)

    run_workload(cluster, 4, during=crash_and_restart)
    # and once more, at a different moment
    cluster.kill(cluster.campuses[2].name, signal.SIGKILL)
    cluster.start(cluster.campuses[2].name)
    converge(cluster)
    wait_until(lambda: _exactly_once_ok(cluster), 30, "applied vectors to match captures")


def test_ring_heals_around_a_stopped_node_and_it_catches_up(make_cluster) -> None:
    cluster = make_cluster(3)
    cluster.start_all()
    wait_ready(cluster)
    a, b, c = (x.name for x in cluster.campuses)
    cluster.stop(b)
    # a's successor b is gone; after heal_after a must stream straight to c
    workload = LisWorkload(a, cluster.campus(a).database, 25.0, seed=7)
    workload.start()
    time.sleep(2)
    workload.stop()
    a_patients = set(table_rows(cluster.campus(a).database)["patients"])
    wait_until(
        lambda: a_patients <= set(table_rows(cluster.campus(c).database)["patients"]),
        30, f"{c} to receive {a}'s writes while {b} is down",
    )
    a_links = link_states(cluster, a)
    assert a_links[c] == "healing" and a_links[b] == "down"
    cluster.start(b)
    converge(cluster)
    wait_until(
        lambda: link_states(cluster, a).get(b) == "streaming",
        30, f"{a} to return to its successor {b}",
    )
    wait_until(lambda: _exactly_once_ok(cluster), 30, "applied vectors to match captures")
