"""The node's own DR decisions (node.dr.decisions): when the map is fresh,
until when the database may take writes, what to drain."""

from __future__ import annotations

from node.dr.decisions import drains_due, map_fresh, writable_until
from ringsync.dr.routes import DRAINING, Route

TTL = 3.0
ROUTES = {"a": Route("a", "a"), "b": Route("b", "a", epoch=2), "c": Route("c", "c"),
          "set:s": Route("set:s", "c")}


def fresh(now: float, **overrides: object) -> bool:
    args: dict[str, object] = dict(enabled=True, lease_ok=True, lease_deadline=100.0,
                                   routes_read_at=98.0, lease_ttl=TTL)
    return map_fresh(now, **(args | overrides))  # type: ignore


def until(routes: dict[str, Route], me: str, now: float, **overrides: object) -> float:
    args: dict[str, object] = dict(db_healthy=True, lease_deadline=100.0, routes_read_at=98.0,
                                   lease_ttl=TTL)
    return writable_until(routes, me, now, **(args | overrides))  # type: ignore


def test_the_map_is_fresh_only_under_a_live_lease_within_a_lease_length() -> None:
    assert fresh(99.0)
    assert not fresh(99.0, lease_ok=False)
    assert not fresh(100.0)  # the lease may be gone
    assert not fresh(99.0, routes_read_at=95.9)  # read more than a lease ago
    assert fresh(1e9, enabled=False, lease_ok=False)  # DR off: the static map


def test_the_database_opens_to_the_lease_deadline_while_a_route_is_active_here() -> None:
    assert until(ROUTES, "a", 99.0) == 100.0
    assert until(ROUTES, "c", 99.0) == 100.0
    assert until(ROUTES, "b", 99.0) == 0.0  # b's users are served by a: b serves nobody


def test_the_database_fences_when_the_lease_or_the_map_or_the_database_fails() -> None:
    assert until(ROUTES, "a", 100.0) == 0.0  # the lease may have expired
    assert until(ROUTES, "a", 99.0, routes_read_at=95.0) == 0.0  # a stale map
    assert until(ROUTES, "a", 99.0, db_healthy=False) == 0.0  # being failed over
    draining = ROUTES | {"a": Route("a", "a", state=DRAINING, target="c"),
                         "b": Route("b", "c")}
    assert until(draining, "a", 99.0) == 0.0  # its last route is moving off it


def test_a_set_route_alone_does_not_open_the_campus_fence() -> None:
    assert until({"set:s": Route("set:s", "c")}, "c", 99.0) == 0.0


def test_drains_due_are_the_routes_moving_off_this_node_not_drained_yet() -> None:
    routes = {"a": Route("a", "a", state=DRAINING, target="b", epoch=4),
              "b": Route("b", "b", state=DRAINING, target="a", epoch=2),
              "c": Route("c", "a", epoch=3),
              "set:s": Route("set:s", "a", state=DRAINING, target="c", epoch=6)}
    assert [r.campus for r in drains_due(routes, "a", {}, set())] == ["a", "set:s"]
    assert [r.campus for r in drains_due(routes, "a", {"a": [4, 10]}, set())] == ["set:s"]
    assert [r.campus for r in drains_due(routes, "a", {"a": [3, 10]}, {"set:s"})] == ["a"]
