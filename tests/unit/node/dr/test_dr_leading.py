"""The DR leader's decisions (node.dr.leading.Leadership) against built
routing maps and member reports, as Patroni tests Ha against built Cluster
values: no etcd, no node, the clock passed in."""

from __future__ import annotations

from pathlib import Path

from node.dr.leading import Leadership, store_moves
from ringsync.config import CampusEntry, ClusterConfig
from ringsync.dr.memstore import MemoryRouteStore
from ringsync.dr.routes import ACTIVE, DRAIN_TIMEOUT_SECONDS, DRAINING, Member, Route
from ringsync.dr.settings import DRSettings, ReplicationSet

RING = ("a", "b", "c")


def cluster(failback: str = "manual") -> ClusterConfig:
    campuses = tuple(CampusEntry(c, f"127.0.0.1:{7000 + i}",
                                 standby=tuple(x for x in RING if x != c))
                     for i, c in enumerate(RING))
    return ClusterConfig(
        path=Path("cluster.toml"), name="t", ring=RING, tables=("patients", "orders"),
        campuses=campuses, client_tls=None,
        dr=DRSettings(etcd=("127.0.0.1:2379",), failover_after=10.0, failback=failback),
        sets=(ReplicationSet("orders", ("orders",), "a", ("b",)),))


def leader(failback: str = "manual") -> Leadership:
    c = cluster(failback)
    return Leadership(c, c.dr)


def live(campus: str, healthy: bool = True, **fields: object) -> Member:
    return Member(campus, db_healthy=healthy, initialized=True, **fields)  # type: ignore


def routes(*changed: Route) -> dict[str, Route]:
    out = {c: Route(c, c, revision=1) for c in RING}
    out["set:orders"] = Route("set:orders", "a", revision=1)
    out.update({r.campus: r for r in changed})
    return out


def test_a_dead_campus_fails_over_only_after_failover_after() -> None:
    lead = leader()
    members = {"a": live("a"), "c": live("c")}  # b's lease is gone
    assert lead.moves(routes(), members, now=100.0) == []
    assert lead.moves(routes(), members, now=109.9) == []
    [moved] = lead.moves(routes(), members, now=110.0)
    assert (moved.campus, moved.serving, moved.state, moved.epoch) == ("b", "a", ACTIVE, 2)
    assert moved.reason == "failover: b lost its etcd lease for 10.0s"


def test_a_live_campus_never_fails_over() -> None:
    lead = leader()
    members = {c: live(c) for c in RING}
    for now in (0.0, 10.0, 1000.0, 100000.0):
        assert lead.moves(routes(), members, now) == []


def test_a_campus_that_comes_back_restarts_the_count() -> None:
    lead = leader()
    without_b = {"a": live("a"), "c": live("c")}
    assert lead.moves(routes(), without_b, now=0.0) == []
    assert lead.moves(routes(), without_b | {"b": live("b")}, now=9.0) == []
    assert lead.moves(routes(), without_b, now=12.0) == []  # down again since 12
    assert [m.campus for m in lead.moves(routes(), without_b, now=22.0)] == ["b"]


def test_an_unhealthy_node_still_open_is_waited_for() -> None:
    lead = leader()
    members = {"a": live("a"), "b": live("b", healthy=False, writable=True), "c": live("c")}
    assert lead.moves(routes(), members, now=0.0) == []
    assert lead.moves(routes(), members, now=50.0) == []  # not fenced yet: no failover
    members["b"] = live("b", healthy=False)  # fenced now
    [moved] = lead.moves(routes(), members, now=51.0)
    assert moved.serving == "a" and "reported its database down" in moved.reason


def test_a_new_leader_counts_from_its_own_first_look() -> None:
    """Members vanish together when etcd loses its majority (every lease
    lapses); the leader after the outage counts down-time from what it saw
    itself, so the nodes have failover_after to come back before anything moves."""
    lead = leader()
    nobody_but_me = {"a": live("a")}
    assert lead.moves(routes(), nobody_but_me, now=0.0) == []
    lead.forget()  # lost the leadership during the outage
    assert lead.moves(routes(), nobody_but_me, now=500.0) == []
    assert lead.moves(routes(), {c: live(c) for c in RING}, now=505.0) == []
    assert lead.moves(routes(), {c: live(c) for c in RING}, now=1000.0) == []


def draining(campus: str, source: str, target: str, epoch: int = 2) -> Route:
    return Route(campus, source, state=DRAINING, target=target, epoch=epoch,
                 reason=f"switchover to {target} requested by an operator", revision=5)


def test_a_drain_completes_only_once_the_target_applied_the_drained_head() -> None:
    lead = leader()
    moving = routes(draining("a", "a", "b"))
    head = {"a": live("a", journal={"a": 7}, drained={"a": [2, 7]}), "c": live("c")}
    assert lead.moves(moving, head | {"b": live("b", applied={"a": 6})}, now=1.0) == []
    assert lead.moves(moving, {"a": live("a", journal={"a": 7}), "b": live("b", applied={"a": 9}),
                               "c": live("c")}, now=2.0) == []  # a has not reported drained
    assert lead.moves(moving, head | {"b": live("b", applied={"a": 7}), "c": live("c")} | {
        "a": live("a", drained={"a": [1, 7]})}, now=3.0) == []  # drained for an older epoch
    [moved] = lead.moves(moving, head | {"b": live("b", applied={"a": 7})}, now=4.0)
    assert (moved.serving, moved.state, moved.epoch, moved.target) == ("b", ACTIVE, 3, "")
    assert moved.reason == "switchover from a: lossless (a drained at seq 7)"


def test_a_drain_that_never_catches_up_is_abandoned_on_the_leaders_clock() -> None:
    lead = leader()
    moving = routes(draining("a", "a", "b"))
    members = {"a": live("a", drained={"a": [2, 7]}), "b": live("b"), "c": live("c")}
    assert lead.moves(moving, members, now=1000.0) == []  # first seen now, whatever its since
    assert lead.moves(moving, members, now=1000.0 + DRAIN_TIMEOUT_SECONDS) == []
    [back] = lead.moves(moving, members, now=1000.1 + DRAIN_TIMEOUT_SECONDS)
    assert (back.serving, back.state, back.epoch) == ("a", ACTIVE, 3)
    assert back.reason.startswith("move to b abandoned")


def test_switchover_of_a_set_ends_the_writers_tenure_at_the_drained_head() -> None:
    lead = leader()
    moving = routes(draining("set:orders", "a", "b"))
    members = {"a": live("a", drained={"set:orders": [2, 40]}), "b": live("b", applied={"a": 40}),
               "c": live("c")}
    [moved] = lead.moves(moving, members, now=1.0)
    assert (moved.campus, moved.serving, moved.state) == ("set:orders", "b", ACTIVE)
    assert moved.writer_since == 3 and moved.tenures == ((1, "a", 40),)


def failed_over() -> dict[str, Route]:
    return routes(Route("b", "a", epoch=2, reason="failover: b lost its etcd lease", revision=3))


def test_failback_waits_for_the_operator_when_manual() -> None:
    back = {"a": live("a", journal={"a": 9}), "b": live("b", applied={"a": 9}), "c": live("c")}
    assert leader("manual").moves(failed_over(), back, now=1.0) == []


def test_automatic_failback_drains_home_once_caught_up() -> None:
    lead = leader("auto")
    behind = {"a": live("a", journal={"a": 9}), "b": live("b", applied={"a": 8}), "c": live("c")}
    assert lead.moves(failed_over(), behind, now=1.0) == []
    caught_up = behind | {"b": live("b", applied={"a": 9})}
    [home] = lead.moves(failed_over(), caught_up, now=2.0)
    assert (home.campus, home.serving, home.state, home.target) == ("b", "a", DRAINING, "b")
    assert home.reason == "failback: b is back and caught up"


async def test_two_leaders_from_one_read_store_one_move() -> None:
    store = MemoryRouteStore()
    await store.ensure_routes(RING, now=0.0, set_writers={"set:orders": "a"})
    for m in (live("a"), live("c")):
        await store.put_member(m, await store.grant(30))
    read = await store.routes()
    members = await store.members()
    first, second = leader(), leader()
    for lead in (first, second):
        assert lead.moves(read, members, now=0.0) == []
    mine = first.moves(read, members, now=10.0)
    theirs = second.moves(read, members, now=10.0)
    assert [m.campus for m in mine] == [m.campus for m in theirs] == ["b"]
    assert await store_moves(store, read, mine) == mine
    assert await store_moves(store, read, theirs) == []  # its revision is stale
    after = await store.routes()
    assert after["b"].epoch == 2 and after["b"].serving == "a"
    assert {k: r for k, r in after.items() if k != "b"} == {k: r for k, r in read.items()
                                                             if k != "b"}


async def test_of_two_moves_of_one_route_only_the_first_is_stored() -> None:
    store = MemoryRouteStore()
    route = store.put_route(Route("a", "a"))
    first = route.moved(serving="b", reason="first")
    second = route.moved(serving="c", reason="second")
    assert await store_moves(store, {"a": route}, [first, second]) == [first]
    assert (await store.routes())["a"].reason == "first"
