"""Real node processes: a successor back from a stop gets what was written
meanwhile at once, not after its predecessor's reconnect backoff.

The ring's backoff here is five minutes (min = max), so a sender that only
waited it out would deliver the backlog no sooner than 150 s after the stop;
the test allows 60 s. The returning campus's Hello at the origin (and the
origin's probe finding it serving) must end the wait. Convergence is judged
by reading every row of both campuses' SQLite files.
"""

from __future__ import annotations

import time

from ringsync.commands.demo.lis import LisWorkload
from tests.helpers import table_rows, wait_until
from tests.integration.conftest import wait_ready
from tests.integration.test_ring import converge, link_states

BACKOFF_SECONDS = 300.0  # the sender's own wait would be 150..450 s
ARRIVAL_LIMIT_SECONDS = 60.0  # far below it, and plenty on a loaded machine


def test_a_restarted_successor_gets_the_backlog_without_waiting_out_the_backoff(
        make_cluster) -> None:
    cluster = make_cluster(2, reconnect_min_seconds=BACKOFF_SECONDS,
                           reconnect_max_seconds=BACKOFF_SECONDS)
    cluster.start_all()
    wait_ready(cluster)  # (a first dial before the peer listened is woken the same way)
    a, b = (c.name for c in cluster.campuses)
    cluster.stop(b)
    workload = LisWorkload(a, cluster.campus(a).database, 25.0, seed=11)
    workload.start()
    time.sleep(1.5)
    workload.stop()
    assert workload.transactions > 0 and workload.errors == 0
    wait_until(lambda: link_states(cluster, a).get(b) == "down", 30,
               f"{a}'s link to {b} to be down")
    written = table_rows(cluster.campus(a).database)
    assert written != table_rows(cluster.campus(b).database)  # b lacks the backlog

    cluster.start(b)
    rows = converge(cluster, timeout=ARRIVAL_LIMIT_SECONDS)
    for table, at_a in written.items():
        assert set(at_a) <= set(rows[table]), table
    log = cluster.campus(a).log.read_text()
    assert f"{b} is back (" in log and "reconnecting now" in log
