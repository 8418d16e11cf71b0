"""Scheduled verification on real nodes: the coordinator is the first campus in
ring order that answers; its report reaches every other node, which keeps
it, shows it in status and raises an alert for diverged rows."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from node.verify.reports import ReportStore
from node.verify.schedule import VerifyScheduler
from ringsync.commands.demo.cluster import LocalCluster
from ringsync.config import load_node
from tests.helpers import campus_rows, wait_until
from tests.integration.conftest import RINGSYNC, wait_ready


@pytest.fixture
def scheduled(make_cluster) -> LocalCluster:
    cluster = make_cluster(3)
    with cluster.cluster_file.open("a") as f:  # scheduled daily: nothing fires during the test
        f.write('\n[verify]\ndaily_at = "03:00"\nsettle_seconds = 5\nkeep_reports = 3\n')
    cluster.start_all()
    wait_ready(cluster)
    return cluster  # make_cluster stops it


def status(cluster: LocalCluster) -> dict[str, dict]:
    done = subprocess.run([*RINGSYNC, "ctl", "--cluster", str(cluster.cluster_file), "status",
                           "--json"], capture_output=True, text=True, timeout=60)
    return {n["campus"]: n for n in json.loads(done.stdout)["nodes"]}


def scheduler_of(cluster: LocalCluster, campus: str, tmp_path: Path) -> VerifyScheduler:
    """The schedule as campus's node runs it, with its own certificate."""
    config = load_node(cluster.campus(campus).config)
    return VerifyScheduler(config, ReportStore(tmp_path / f"{campus}.jsonl", 3), start_delay=0)


def test_the_first_campus_coordinates_and_every_other_node_keeps_the_report(
        scheduled: LocalCluster, tmp_path: Path) -> None:
    a, b, c = scheduled.campuses
    before = status(scheduled)
    assert all(n["verify"]["scheduled"] and n["verify"]["last_at"] is None
               and n["verify"]["next_due"] for n in before.values())
    wait_until(lambda: all(r["patients"] == campus_rows(a.target)["patients"]
                           for r in (campus_rows(x.target) for x in (b, c))), 30, "quiet ring")
    conn = sqlite3.connect(b.target, isolation_level=None, timeout=30)
    try:  # one row only b has, behind replication's back
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE _rs_state SET applying = 1 WHERE id = 1")
        conn.execute("INSERT INTO patients VALUES ('only-b', 'm', 'n', NULL, 'F', 'b', 'x')")
        conn.execute("UPDATE _rs_state SET applying = 0 WHERE id = 1")
        conn.execute("COMMIT")
    finally:
        conn.close()

    assert asyncio.run(scheduler_of(scheduled, b.name, tmp_path).once()) is False  # not first
    coordinator = scheduler_of(scheduled, a.name, tmp_path)
    assert asyncio.run(coordinator.once()) is True
    kept = coordinator.reports.latest()
    assert kept is not None and kept["coordinator"] == a.name and kept["exit"] == 1

    after = status(scheduled)
    for campus in (b.name, c.name):  # handed over, kept, shown, alerted
        v = after[campus]["verify"]
        assert (v["coordinator"], v["consistent"], v["diverged"]) == (a.name, False, 1), v
        assert any("found 1 diverged row" in alert for alert in after[campus]["alerts"])
    text = subprocess.run([*RINGSYNC, "ctl", "--cluster", str(scheduled.cluster_file),
                           "status"], capture_output=True, text=True, timeout=60).stdout
    assert "verify: last" in text and "1 diverged" in text
    history = subprocess.run([*RINGSYNC, "ctl", "--cluster", str(scheduled.cluster_file),
                              "verify", "--history", "--json"], capture_output=True, text=True,
                             timeout=60)
    assert history.returncode == 0, history.stderr
    doc = json.loads(history.stdout)
    assert doc["campus"] == b.name  # the first campus whose node keeps any report
    assert [r["coordinator"] for r in doc["reports"]] == [a.name]
