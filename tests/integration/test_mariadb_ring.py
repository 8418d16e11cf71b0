"""A ring of all three engines, real node processes: a PostgreSQL, a MariaDB
and a SQLite campus converge under concurrent writes and conflicts, judged
by reading every row of every campus's own database.

The MariaDB campus runs on a server the test starts (mariadb-install-db,
mariadbd on a free port; ringsync.commands.demo.mariadb), never the
machine's own.
"""

from __future__ import annotations

import time

from ringsync.commands.demo.lis import LisWorkload, mysql_connect
from tests.helpers import wait_until
from tests.integration.conftest import wait_ready
from tests.integration.test_ring import _exactly_once_ok, converge
from tests.mariadb_fixtures import need_mariadb


def test_postgres_mariadb_and_sqlite_campuses_converge_under_conflicts(make_cluster) -> None:
    need_mariadb()
    cluster = make_cluster(3, engines=["postgres", "mariadb", "sqlite"])
    cluster.start_all()
    wait_ready(cluster, timeout=60)
    # Concurrent edits of the same recent rows at every campus (conflict_rate
    # 0.3). This once diverged now and then (vectors equal, rows not): the
    # MariaDB apply session read stamps from its REPEATABLE READ snapshot,
    # older than the rows it had locked (tests/integration/mariadb/test_stamps.py).
    workloads = [LisWorkload(c.name, c.target, 20.0, seed=i + 1, conflict_rate=0.3)
                 for i, c in enumerate(cluster.campuses)]
    for w in workloads:
        w.start()
    try:  # until every campus has written its share (a way out: the timeout)
        wait_until(lambda: all(w.transactions >= 40 for w in workloads), 120,
                   "every campus's workload to commit 40 transactions")
    finally:
        for w in workloads:
            w.stop()
    assert all(w.errors == 0 for w in workloads), [w.last_error for w in workloads]
    rows = converge(cluster, timeout=90.0)
    assert {r[5] for r in rows["patients"]} == {c.name for c in cluster.campuses}
    wait_until(lambda: _exactly_once_ok(cluster), 60, "applied vectors to match captures")

    # A conflict with a known outcome: the MariaDB campus's node is down while
    # its users mark a routine order STAT and the PostgreSQL campus's write it
    # as routine later; the rank rule keeps STAT everywhere once the node is
    # back. (The order must be routine now: MariaDB logs no row event for a
    # write that changes nothing, so STAT over STAT would be no edit at all.)
    order = next(r[0] for r in rows["lab_orders"] if r[3] == "routine")
    mariadb = cluster.campuses[1]
    cluster.stop(mariadb.name)
    conn = mysql_connect(mariadb.target)
    with conn.cursor() as cur:
        cur.execute("UPDATE lab_orders SET priority = 'STAT' WHERE order_id = %s", (order,))
    conn.close()
    time.sleep(0.01)  # a later wall clock for the routine edit (the rank rule decides anyway)
    import psycopg

    with psycopg.connect(cluster.campuses[0].target, autocommit=True) as pg:
        pg.execute("UPDATE lab_orders SET priority = 'routine' WHERE order_id = %s", (order,))
    cluster.start(mariadb.name)
    rows = converge(cluster, timeout=90.0)
    assert [r[3] for r in rows["lab_orders"] if r[0] == order] == ["STAT"]


def test_kill_9_of_the_mariadb_server_and_of_its_node_during_writes_loses_nothing(
        make_cluster) -> None:
    """Writes go on at both campuses throughout: the MariaDB campus's node is
    killed and restarted, then its server is killed (kill -9 of mariadbd)
    and restarted; every write that committed reaches the other campus once."""
    need_mariadb()
    cluster = make_cluster(2, engines=["mariadb", "sqlite"])
    cluster.start_all()
    wait_ready(cluster, timeout=60)
    mariadb = cluster.campuses[0]
    assert mariadb.mariadb is not None
    workloads = [LisWorkload(c.name, c.target, 20.0, seed=i + 1)
                 for i, c in enumerate(cluster.campuses)]
    for w in workloads:
        w.start()

    def more(n: int) -> None:
        goal = [w.transactions + n for w in workloads]
        wait_until(lambda: all(w.transactions >= g for w, g in zip(workloads, goal, strict=True)),
                   120,
                   f"{n} more transactions at every campus")

    try:
        more(20)
        cluster.kill(mariadb.name)  # SIGKILL of the node
        more(20)  # its users go on writing to their database
        cluster.start(mariadb.name)
        more(20)
        mariadb.mariadb.kill()  # SIGKILL of mariadbd, mid-write
        mariadb.mariadb.start()  # InnoDB recovers what committed
        more(20)
    finally:
        for w in workloads:
            w.stop()
    cluster.check_alive()
    rows = converge(cluster, timeout=120)
    assert {r[5] for r in rows["patients"]} == {c.name for c in cluster.campuses}
    wait_until(lambda: _exactly_once_ok(cluster), 60, "applied vectors to match captures")


def test_the_mariadb_server_down_while_its_node_starts_does_not_stop_the_node(
        make_cluster) -> None:
    """The node restarts while mariadbd is down (killed -9): it waits for the
    server instead of exiting (it once stopped in its start-up checks with
    "cannot connect to MariaDB ... Connection refused"). Then mariadbd is
    killed again the moment the node serves, as its loops make their first
    reads (the applied vector; the path CI once caught). Each time the node
    lives on and the ring converges, judged by the rows."""
    need_mariadb()
    cluster = make_cluster(2, engines=["mariadb", "sqlite"])
    cluster.start_all()
    wait_ready(cluster, timeout=60)
    mariadb = cluster.campuses[0]
    server = mariadb.mariadb
    assert server is not None

    def log_count(text: str) -> int:
        return mariadb.log.read_text(errors="replace").count(text)

    for when in ("down at start", "killed as it serves"):
        cluster.kill(mariadb.name)
        waited, served = log_count("the engine waits for it"), log_count("serving on")
        if when == "down at start":
            server.kill()
            cluster.start(mariadb.name)
            wait_until(lambda waited=waited: cluster.check_alive() or log_count(
                "the engine waits for it") > waited, 60, "the node to wait for its server")
        else:
            cluster.start(mariadb.name)
            wait_until(lambda served=served: cluster.check_alive() or log_count(
                "serving on") > served, 60, "the node to serve")
            server.kill()
        server.start()
        wait_ready(cluster, timeout=90)  # raises if the node exited
        conn = mysql_connect(mariadb.target)
        with conn.cursor() as cur:
            cur.execute("INSERT INTO patients VALUES (%s, %s, 'Restart Probe', '1970-01-01', "
                        "'F', %s, '2026-12-04T09:00:00')", (when, when, mariadb.name))
        conn.close()
        rows = converge(cluster, timeout=90)
        assert when in {r[0] for r in rows["patients"]}, when


def test_a_postgres_campus_joins_from_a_mariadb_donor_under_writes(make_cluster) -> None:
    """The first step of a dual-track migration: the old system's data, in
    MariaDB, copied into an empty PostgreSQL campus while the old system's
    users keep writing (a heterogeneous snapshot: no gap, no duplicate)."""
    need_mariadb()
    from tests.integration.test_join import join_late_under_writes

    cluster = make_cluster(2, engines=["mariadb", "postgres"])
    seen = join_late_under_writes(cluster)
    assert seen and seen[-1].startswith("in-ring")
    legacy, new = cluster.campuses
    assert f"joined the ring from {legacy.name}" in new.log.read_text()
