"""The in-memory RouteStore keeps the etcd semantics DR relies on: revisions,
compare-and-swap losing on a stale revision, keys that vanish with their
lease, writes on a dead lease refused, an outage raising EtcdError."""

from __future__ import annotations

import pytest

from ringsync.dr.memstore import MemoryRouteStore
from ringsync.dr.routes import DRAINING, Member, Route
from ringsync.dr.store import EtcdError


async def test_ensure_routes_creates_missing_routes_only() -> None:
    store = MemoryRouteStore()
    moved = store.put_route(Route("a", "b", epoch=4, reason="failover"))
    await store.ensure_routes(("a", "b"), now=10.0, set_writers={"set:s": "b"})
    routes = await store.routes()
    assert routes["a"] == moved  # never overwritten
    assert routes["b"].serving == "b" and routes["b"].since == 10.0
    assert routes["set:s"].serving == "b" and "configured writer" in routes["set:s"].reason


async def test_swap_route_wins_once_from_one_revision() -> None:
    store = MemoryRouteStore()
    await store.ensure_routes(("a", "b"), now=0.0)
    route = (await store.routes())["a"]
    first = route.moved(state=DRAINING, target="b")
    second = route.moved(serving="b")
    assert await store.swap_route(first, route.revision)
    assert not await store.swap_route(second, route.revision)  # stale revision
    stored = (await store.routes())["a"]
    assert stored.state == DRAINING and stored.revision > route.revision
    assert await store.swap_route(stored.moved(state="active"), stored.revision)


async def test_swap_of_an_absent_route_expects_revision_zero() -> None:
    store = MemoryRouteStore()
    assert not await store.swap_route(Route("a", "a"), 5)
    assert await store.swap_route(Route("a", "a"), 0)


async def test_member_and_leader_keys_vanish_with_their_lease() -> None:
    store = MemoryRouteStore()
    lease = await store.grant(3)
    other = await store.grant(3)
    await store.put_member(Member("a", db_healthy=True), lease)
    await store.put_member(Member("b", db_healthy=True), other)
    assert await store.campaign("a", lease) == "a"
    assert await store.campaign("b", other) == "a"  # a leads already
    store.advance(2.0)
    assert await store.keepalive(other) == 3  # b refreshes, a does not
    store.advance(1.0)
    assert sorted(await store.members()) == ["b"]
    assert await store.leader() is None
    assert await store.keepalive(lease) == 0
    with pytest.raises(EtcdError):
        await store.put_member(Member("a"), lease)
    assert await store.campaign("b", other) == "b"


async def test_revoke_and_expire_end_a_lease_at_once() -> None:
    store = MemoryRouteStore()
    lease = await store.grant(30)
    await store.put_member(Member("a"), lease)
    await store.revoke(lease)
    assert await store.members() == {}
    lease = await store.grant(30)
    await store.put_member(Member("a"), lease)
    store.expire(lease)
    assert await store.members() == {} and store.leases() == []


async def test_an_unreachable_store_raises_etcd_errors() -> None:
    store = MemoryRouteStore()
    store.unreachable = True
    for call in (store.routes(), store.members(), store.leader(), store.grant(3)):
        with pytest.raises(EtcdError):
            await call
