"""The operator's lossless route move (ringsync.dr.moves.move_route) against
the in-memory RouteStore: what it refuses, the happy path to ACTIVE at the
new epoch, and the rollback on timeout. The drain and the leader's part are
played by the test between polls (``pause``), with the real decision
(ringsync.dr.routes.complete_drains)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ringsync.dr.memstore import MemoryRouteStore
from ringsync.dr.moves import move_route
from ringsync.dr.routes import ACTIVE, DRAINING, Member, Route, complete_drains
from ringsync.errors import RingsyncError


def live(campus: str, healthy: bool = True, **fields: object) -> Member:
    return Member(campus, db_healthy=healthy, initialized=True, **fields)  # type: ignore


async def cluster(*members: Member, route: Route | None = None,
                  store: MemoryRouteStore | None = None) -> MemoryRouteStore:
    store = store or MemoryRouteStore()
    await store.ensure_routes(("a", "b", "c"), now=0.0, set_writers={"set:s": "a"})
    if route is not None:
        store.put_route(route)
    for m in members:
        await store.put_member(m, await store.grant(30))
    return store


class Ticks:
    """A clock that moves one second per reading: timeouts without wall time."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


async def nothing() -> None:
    return None


def said() -> tuple[list[str], Callable[[str], None]]:
    lines: list[str] = []
    return lines, lines.append


@pytest.mark.parametrize("members, route, refusal", [
    ((live("a"), live("b")), Route("a", "a", state=DRAINING, target="c"), "already moving"),
    ((live("a"), live("b")), Route("a", "b"), "already serves"),
    ((live("a"),), None, "b is not live and healthy"),
    ((live("a"), live("b", healthy=False)), None, "b is not live and healthy"),
    ((live("a"), Member("b", db_healthy=True)), None, "b is not live and healthy"),
    ((live("b"),), None, "a, which serves a now, is not live"),
])
async def test_move_refuses(members: tuple[Member, ...], route: Route | None,
                            refusal: str) -> None:
    store = await cluster(*members, route=route)
    before = await store.routes()
    with pytest.raises(RingsyncError, match=refusal):
        await move_route(store, "a", "b", "switchover", 60.0, print, Ticks(), nothing)
    assert await store.routes() == before  # nothing written


async def test_move_refuses_when_the_route_changed_meanwhile() -> None:
    class Raced(MemoryRouteStore):
        """Another writer moves the route between the move's read and its swap."""

        async def swap_route(self, new: Route, expected_revision: int) -> bool:
            self.put_route((await self.routes())[new.campus].moved(reason="someone else"))
            return await super().swap_route(new, expected_revision)

    store = await cluster(live("a"), live("b"), store=Raced())
    with pytest.raises(RingsyncError, match="changed meanwhile"):
        await move_route(store, "a", "b", "switchover", 60.0, print, Ticks(), nothing)
    assert (await store.routes())["a"].reason == "someone else"


@pytest.mark.parametrize("key", ["a", "set:s"])
async def test_move_is_lossless_and_ends_active_at_the_new_epoch(key: str) -> None:
    store = await cluster(live("a", journal={"a": 7}), live("b", applied={"a": 5}))
    epoch = (await store.routes())[key].epoch
    lines, say = said()
    polls = []

    async def world() -> None:
        """Between polls: a drains (head 7), b catches up, the leader moves the route."""
        polls.append(1)
        routes = await store.routes()
        if len(polls) == 1:
            await store.put_member(live("a", journal={"a": 7}, drained={key: [epoch + 1, 7]}),
                                   store.leases()[0])
        elif len(polls) == 2:  # b has applied only 5 of 7: the drain does not complete
            assert complete_drains(routes, await store.members(), 1.0) == []
            await store.put_member(live("b", applied={"a": 7}), store.leases()[1])
        else:
            for new in complete_drains(routes, await store.members(), 1.0):
                assert await store.swap_route(new, routes[new.campus].revision)

    result = await move_route(store, key, "b", "switchover", 60.0, say, Ticks(), world)
    route = (await store.routes())[key]
    assert (route.serving, route.state, route.epoch) == ("b", ACTIVE, epoch + 2)
    assert result["ok"] and result["head"] == 7 and result["epoch"] == epoch + 2
    assert result["from"] == "a" and result["to"] == "b" and result["fence_seconds"] is not None
    assert "lossless" in result["reason"]
    assert lines[0] == f"switchover: {key} from a to b: draining (epoch {epoch + 1})"
    assert "captured through seq 7" in lines[1]
    if key.startswith("set:"):
        assert route.writer_since == epoch + 2 and route.tenures[-1] == (1, "a", 7)


async def test_move_times_out_and_returns_the_route() -> None:
    store = await cluster(live("a"), live("b", applied={"a": 1}))
    with pytest.raises(RingsyncError, match="did not finish in 5s .*stays with a"):
        await move_route(store, "a", "b", "failback", 5.0, print, Ticks(), nothing)
    route = (await store.routes())["a"]
    assert (route.serving, route.state, route.target, route.epoch) == ("a", ACTIVE, "", 3)
    assert route.reason == "failback to b abandoned after 5s"
