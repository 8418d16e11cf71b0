"""The routing map's pure decisions, the [dr] settings, and the drill's
two-writer detector (ringsync.dr.routes, ringsync.dr.settings, drill.checker)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ringsync.commands.drill.checker import Attempt, CampusClient, RouteHistory, StaleWriter
from ringsync.dr.routes import (
    ACTIVE,
    DRAIN_TIMEOUT_SECONDS,
    DRAINING,
    Member,
    Route,
    caught_up,
    complete_drains,
    down_nodes,
    failbacks,
    failovers,
    writable_for,
)
from ringsync.dr.settings import parse_dr, parse_standby
from ringsync.errors import ConfigError

RING = ("a", "b", "c")
STANDBY = {"a": ("b", "c"), "b": ("c", "a"), "c": ("a", "b")}


def live(*names: str, **kw) -> dict[str, Member]:
    return {n: Member(n, db_healthy=True, initialized=True, **kw) for n in names}


def home_routes() -> dict[str, Route]:
    return {c: Route(c, c, revision=i + 1) for i, c in enumerate(RING)}


def test_route_round_trips_through_its_stored_form():
    r = Route("a", "b", DRAINING, 7, "why", 12.5, "c", revision=99)
    assert Route.decode(r.encode(), 99) == r
    assert r.moved(serving="c").epoch == 8


def test_writable_only_for_active_routes_on_this_node():
    routes = home_routes()
    routes["a"] = routes["a"].moved(state=DRAINING, target="b")
    assert writable_for(routes, "a") == []
    assert writable_for(routes, "b") == ["b"]
    routes["c"] = routes["c"].moved(serving="b")
    assert writable_for(routes, "b") == ["b", "c"]


def test_no_failover_before_failover_after():
    members = live("b", "c")
    down = {"a": 100.0}
    assert down_nodes(members, RING) == {"a"}
    assert failovers(home_routes(), members, down, now=109.9, failover_after=10,
                     standby=STANDBY) == []


def test_failover_moves_to_first_live_standby_and_bumps_epoch():
    members = live("c")  # a dead, b dead too
    moves = failovers(home_routes(), members, {"a": 0.0, "b": 0.0}, now=11, failover_after=10,
                      standby=STANDBY)
    by_campus = {m.campus: m for m in moves}
    assert by_campus["a"].serving == "c" and by_campus["a"].epoch == 2
    assert by_campus["b"].serving == "c"
    assert "lost its etcd lease" in by_campus["a"].reason
    assert "c" not in by_campus


def test_failover_for_unhealthy_database_and_nowhere_to_go():
    members = live("b", "c")
    members["a"] = Member("a", db_healthy=False, initialized=True)
    moves = failovers(home_routes(), members, {"a": 0.0}, 20, 10, STANDBY)
    assert [(m.campus, m.serving) for m in moves] == [("a", "b")]
    assert "database down" in moves[0].reason
    assert failovers(home_routes(), {}, {"a": 0.0, "b": 0.0, "c": 0.0}, 20, 10, STANDBY) == []


def test_drain_completes_only_when_target_applied_the_drained_head():
    routes = home_routes()
    routes["a"] = routes["a"].moved(state=DRAINING, target="b", since=100.0)
    epoch = routes["a"].epoch
    members = live("a", "b", "c")
    assert complete_drains(routes, members, 101) == []  # a has not drained yet
    members["a"] = Member("a", True, True, drained={"a": [epoch, 50]})
    members["b"] = Member("b", True, True, applied={"a": 49})
    assert complete_drains(routes, members, 101) == []
    members["b"] = Member("b", True, True, applied={"a": 50})
    [moved] = complete_drains(routes, members, 101)
    assert (moved.serving, moved.state, moved.epoch) == ("b", ACTIVE, epoch + 1)
    members["a"] = Member("a", True, True, drained={"a": [epoch - 1, 50]})  # an older drain
    assert complete_drains(routes, members, 101) == []


def test_a_live_node_reporting_its_database_down_is_failed_over_only_once_fenced():
    members = live("b", "c")
    members["a"] = Member("a", db_healthy=False, initialized=True, writable=True)
    assert failovers(home_routes(), members, {"a": 0.0}, 20, 10, STANDBY) == []
    members["a"] = Member("a", db_healthy=False, initialized=True, writable=False)
    assert [m.serving for m in failovers(home_routes(), members, {"a": 0.0}, 20, 10,
                                         STANDBY)] == ["b"]


def test_drain_timeout_runs_on_the_leaders_clock():
    routes = home_routes()
    routes["a"] = routes["a"].moved(state=DRAINING, target="b", since=0.0)  # ctl's clock
    seen = {"a": DRAIN_TIMEOUT_SECONDS}  # the leader saw it begin later
    assert complete_drains(routes, live("a"), DRAIN_TIMEOUT_SECONDS + 1, seen) == []
    assert complete_drains(routes, live("a"), 2 * DRAIN_TIMEOUT_SECONDS + 1, seen)


def test_drain_that_cannot_finish_goes_back():
    routes = home_routes()
    routes["a"] = routes["a"].moved(state=DRAINING, target="b", since=0.0)
    [back] = complete_drains(routes, live("a"), DRAIN_TIMEOUT_SECONDS + 1)
    assert (back.serving, back.state) == ("a", ACTIVE)
    assert "abandoned" in back.reason


def test_caught_up_and_auto_failback():
    home = Member("a", True, True, journal={"a": 10}, applied={"b": 5, "c": 3})
    serving = Member("b", True, True, journal={"a": 10, "b": 6, "c": 3})
    assert not caught_up(home, serving)
    routes = home_routes()
    routes["a"] = routes["a"].moved(serving="b")
    assert failbacks(routes, {"a": home, "b": serving}, 5) == []
    home = Member("a", True, True, journal={"a": 10}, applied={"b": 6, "c": 3})
    [m] = failbacks(routes, {"a": home, "b": serving}, 5)
    assert (m.state, m.target, m.serving) == (DRAINING, "a", "b")


def test_dr_settings_are_checked(tmp_path: Path):
    p = tmp_path / "cluster.toml"
    ok = parse_dr({"etcd": ["127.0.0.1:2379"], "failover_after": 5, "lease_ttl": 2}, p)
    assert ok.enabled and ok.failover_after == 5.0
    assert not parse_dr({}, p).enabled
    for bad, words in (({"etcd": "x"}, "dr.etcd"), ({"etcd": ["nohost"]}, "host:port"),
                       ({"lease_ttl": 1}, "at least 2"), ({"failover_after": 2}, "shorter"),
                       ({"failback": "sometimes"}, "dr.failback"), ({"ettcd": []}, "unknown")):
        with pytest.raises(ConfigError, match=words):
            parse_dr(bad, p)
    assert parse_standby({}, "b", list(RING), p, "campus[1]") == ("c", "a")
    with pytest.raises(ConfigError, match="not another campus"):
        parse_standby({"standby": ["b"]}, "b", list(RING), p, "campus[1]")


def test_second_writer_is_a_stale_write_while_its_database_serves_nobody():
    history = RouteHistory("c", ("127.0.0.1:1",))
    # a serves itself until 5, then b serves a (a serves nobody) until 10, then a again.
    for i in range(150):
        t = i / 10
        history.samples.append((t, {"a": ("b" if 5 <= t < 10 else "a", "active"),
                                    "b": ("b", "active")}))
    stale = StaleWriter(node=type("N", (), {"name": "a"})())  # type: ignore[arg-type]
    stale.accepted = [(1.0, "x"), (5.2, "edge"), (12.0, "y")]
    assert stale.second_writer_times(history) == []
    stale.accepted.append((7.0, "w"))
    assert stale.second_writer_times(history) == [7.0]
    # b serving a does not make b's own database a second writer: b serves b.
    assert not history.serves_nobody("b", 7.0, 0.5)
    # No samples after the write: nothing can be concluded.
    assert not history.serves_nobody("a", 14.95, 0.5)


def test_recovery_seconds_is_the_end_of_the_last_failed_stretch():
    client = CampusClient("a", [])
    client.attempts = [Attempt(10.5, True, "a"), Attempt(11.0, False, "a"),
                       Attempt(12.0, False, ""), Attempt(14.0, True, "b"),
                       Attempt(14.5, True, "b")]
    assert client.recovery_seconds(10.0, 20.0) == pytest.approx(4.0)
    assert client.recovery_seconds(14.2, 20.0) == 0.0
