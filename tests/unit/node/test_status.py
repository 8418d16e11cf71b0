"""node.status: what a campus reports about itself, built from given runtime
state. Campus "a" of the ring a -> b -> c runs on a real SQLite database (the
demo LIS schema) and a real journal; no node process, no network."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from node.dr.agent import DRAgent
from node.engines.sqlite.engine import SQLiteEngine
from node.replication.journal import Journal
from node.runtime import LinkState, NodeRuntime
from node.status import StatusCache, apply_status, build_status, join_status, policies_text
from ringsync import __version__
from ringsync.commands.demo.lis import create_sqlite_database
from ringsync.config import load_node
from ringsync.v1 import control_pb2 as cpb
from tests.unit.configs import cluster_toml, node_toml

TABLES = ("patients", "lab_orders", "specimens", "lab_results")
CLUSTER = cluster_toml(("a", "b", "c"), extra='''
[conflicts.tables.lab_orders]
rule = "rank"
rank = { column = "priority", order = ["STAT", "routine"] }
''')
NODE = node_toml("a", extra='listen = "127.0.0.1:7001"\n')


@pytest.fixture
async def rt(tmp_path: Path) -> AsyncIterator[NodeRuntime]:
    (tmp_path / "cluster.toml").write_text(CLUSTER)
    (tmp_path / "node.toml").write_text(NODE)
    for name in ("ca.crt", "a.crt", "a.key"):  # load_node checks they exist; nothing dials
        (tmp_path / name).write_text("")
    create_sqlite_database(tmp_path / "a.db")
    config = load_node(tmp_path / "node.toml")
    engine = SQLiteEngine(tmp_path / "a.db", TABLES, "a")
    engine.open()
    journal = Journal(tmp_path / "journal.db", "a")
    journal.open()
    runtime = NodeRuntime(config, engine, journal)
    yield runtime
    runtime.shutdown_threads()
    journal.close()
    engine.close()


async def test_a_fresh_node_reports_itself_and_that_its_database_is_not_checked_yet(
    rt: NodeRuntime,
) -> None:
    s = await build_status(rt, StatusCache())
    assert (s.campus, s.address, s.engine, s.version) == ("a", "127.0.0.1:7001", "sqlite",
                                                         __version__)
    assert s.database.endswith("a.db")
    assert not s.database_healthy and s.database_error == "not checked yet"
    assert s.links == [] and s.row_counts == {} and s.alerts == []
    assert s.journal_transactions == 0 and dict(s.journal.seqs) == {}
    assert s.join.state == rt.join.state
    assert not s.HasField("routing")  # no DR agent given


async def test_what_the_monitor_cached_is_reported(rt: NodeRuntime) -> None:
    cache = StatusCache()
    cache.healthy, cache.error = True, ""
    cache.row_counts = {"patients": 3}
    cache.conflicts = {"logged": 4, "parked": 1, "flagged": 2, "delta_merged": 5}
    cache.dead_letters = {"parked": 2, "applied": 1, "skipped": 0, "stale_own": 7}
    cache.accounting = cpb.Accounting(received=9, applied=6, dead_lettered=3, balanced=True)
    cache.recorded = {"b": 4}
    s = await build_status(rt, cache)
    assert s.database_healthy and s.database_error == ""
    assert dict(s.row_counts) == {"patients": 3}
    assert (s.conflicts.logged, s.conflicts.parked, s.conflicts.flagged,
            s.conflicts.delta_merged) == (4, 1, 2, 5)
    assert (s.dead_letters.parked, s.dead_letters.applied, s.dead_letters.skipped) == (2, 1, 0)
    assert s.accounting == cache.accounting
    assert dict(s.apply.recorded.seqs) == {"b": 4}


async def test_an_apply_error_makes_the_database_unhealthy(rt: NodeRuntime) -> None:
    cache = StatusCache()
    cache.healthy, cache.error = True, ""
    rt.apply_error = "IntegrityError: the apply transaction failed"
    s = await build_status(rt, cache)
    assert not s.database_healthy
    assert s.database_error == "IntegrityError: the apply transaction failed"


async def test_a_password_in_a_database_error_is_not_reported(rt: NodeRuntime) -> None:
    cache = StatusCache()
    cache.error = ""
    rt.database_error = "cannot connect to postgresql://ringsync:s3cret@db:5432/lis"
    s = await build_status(rt, cache)
    assert "s3cret" not in s.database_error and "db:5432/lis" in s.database_error


async def test_links_report_their_state_and_an_idle_non_successor_is_standby(
    rt: NodeRuntime,
) -> None:
    rt.links["b"] = LinkState("b", successor=True, state="streaming")
    rt.links["c"] = LinkState("c", successor=False)
    rt.links["x"] = LinkState("x", successor=True, error="connection refused")
    s = await build_status(rt, StatusCache())
    got = {link.to: (link.state, link.successor, link.error, link.lag_transactions)
           for link in s.links}
    assert got == {"b": ("streaming", True, "", 0), "c": ("standby", False, "", 0),
                   "x": ("idle", True, "connection refused", 0)}


def test_policies_are_described_per_table(rt: NodeRuntime) -> None:
    text = policies_text(rt)
    assert text.split("; ") == [
        f"{t}: {rt.config.cluster.conflicts.policy(t).describe()}" for t in TABLES]
    assert "lab_orders: rank(priority: STAT > routine)" in text


def test_apply_status_counts_the_incomplete_transactions_and_the_oldest_age(
    rt: NodeRuntime,
) -> None:
    rt.incomplete[("b", 7)] = 1_000.0
    rt.incomplete[("c", 2)] = 1_030.0
    cache = StatusCache()
    cache.recorded = {"b": 6}
    a = apply_status(rt, cache, now=1_100.0)
    assert a.incomplete_transactions == 2 and a.oldest_incomplete_seconds == 100.0
    assert a.state == rt.apply_machine.state and dict(a.recorded.seqs) == {"b": 6}


def test_apply_status_without_incomplete_transactions_reports_zero_age(
    rt: NodeRuntime,
) -> None:
    a = apply_status(rt, StatusCache(), now=5_000.0)
    assert a.incomplete_transactions == 0 and a.oldest_incomplete_seconds == 0.0


def test_join_status_outside_a_copy_has_no_rate_and_no_eta(rt: NodeRuntime) -> None:
    rt.join.state, rt.join.donor, rt.join.table = "comparing", "b", "patients"
    rt.join.rows_total, rt.join.rows_copied, rt.join.detail = 100, 40, "comparing patients"
    j = join_status(rt)
    assert (j.state, j.donor, j.table, j.rows_copied, j.rows_total, j.detail) == (
        "comparing", "b", "patients", 40, 100, "comparing patients")
    assert j.rows_per_second == 0.0 and j.eta_seconds == 0.0


async def test_with_dr_off_the_routing_map_is_the_static_ring(rt: NodeRuntime) -> None:
    agent = DRAgent(rt, lambda: True)
    s = await build_status(rt, StatusCache(), agent)
    assert not s.routing.dr_enabled and s.routing.node == "a"
    assert {r.campus: r.serving for r in s.routing.routes} == {"a": "a", "b": "b", "c": "c"}
    assert list(s.routing.serving) == ["a"]
