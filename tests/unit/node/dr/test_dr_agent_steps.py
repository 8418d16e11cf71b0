"""DRAgent's steps (lease, fence, drains, leading) on the in-memory
RouteStore, with a node runtime reduced to what the agent uses
(node.dr.host.AgentRuntime): a fence that records what is stored in it.
The clock is the test's: leases expire when it moves them, never by wall
time; the agent's loops are not run, the test calls their steps."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from node.dr.agent import FENCE_MARGIN_SECONDS, DRAgent
from node.dr.sets import SetGuard
from ringsync.config import CampusEntry, ClusterConfig
from ringsync.dr.memstore import MemoryRouteStore
from ringsync.dr.moves import move_route
from ringsync.dr.routes import ACTIVE
from ringsync.dr.settings import DRSettings, ReplicationSet
from ringsync.dr.store import EtcdError

RING = ("a", "b")
TTL = 3


class Clock:
    def __init__(self, store: MemoryRouteStore) -> None:
        self.store = store
        self.now = store.now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Time passes for the nodes and for etcd alike."""
        self.now += seconds
        self.store.advance(seconds)


class Fence:
    """The database's fences as the engine keeps them: what was last stored."""

    own_fence_connection = False

    def __init__(self) -> None:
        self.until: float | None = None
        self.set_until: dict[str, tuple[float, int]] = {}
        self.sessions_ended = 0

    def set_fence(self, until: float) -> None:
        self.until = until

    def end_app_sessions(self) -> int:
        self.sessions_ended += 1
        return 2

    def set_set_fence(self, name: str, until: float, epoch: int) -> None:
        self.set_until[name] = (until, epoch)

    def wait_set_writers(self, name: str) -> None:
        return None

    def close_fence(self) -> None:
        return None


class Journal:
    def __init__(self, head: dict[str, int]) -> None:
        self.head = head

    def vector(self) -> dict[str, int]:
        return dict(self.head)


class Runtime:
    """The AgentRuntime of a node whose database always answers."""

    def __init__(self, campus: str, cluster: ClusterConfig) -> None:
        self.campus = campus
        self.config = SimpleNamespace(cluster=cluster, dr=cluster.dr)
        self.fence = Fence()
        self.engine = SimpleNamespace(fence=self.fence,
                                      source=SimpleNamespace(commit_position=lambda: 0))
        self.journal = Journal({campus: 0})
        self.sets = SetGuard(cluster.sets, campus)
        self.initialized = asyncio.Event()
        self.initialized.set()
        self.applied: dict[str, int] = {}
        self.journaled_through = 0

    def applied_vector(self) -> dict[str, int]:
        return {**self.applied, self.campus: self.journal.vector()[self.campus]}

    async def in_engine(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)

    in_fence = in_engine


def cluster(failover_after: float = 10.0) -> ClusterConfig:
    return ClusterConfig(
        path=Path("cluster.toml"), name="t", ring=RING, tables=("patients", "orders"),
        campuses=(CampusEntry("a", "127.0.0.1:7001", standby=("b",)),
                  CampusEntry("b", "127.0.0.1:7002", standby=("a",))),
        client_tls=None,
        dr=DRSettings(etcd=("127.0.0.1:2379",), failover_after=failover_after, lease_ttl=TTL),
        sets=(ReplicationSet("orders", ("orders",), "a", ("b",)),))


class Node:
    def __init__(self, campus: str, store: MemoryRouteStore, clock: Clock,
                 config: ClusterConfig) -> None:
        self.rt = Runtime(campus, config)
        self.healthy = True
        self.agent = DRAgent(self.rt, lambda: self.healthy, store=store, clock=clock)  # type: ignore

    async def step(self) -> None:
        """One round of the agent's loops: keep-alive, tick, fences, drains."""
        await self.agent._refresh_lease()
        await self.agent._tick()
        await asyncio.gather(*self.agent._drain_tasks)
        await self.agent._fence_in_step()


@pytest.fixture
def store() -> MemoryRouteStore:
    return MemoryRouteStore("t", now=1000.0)


@pytest.fixture
def clock(store: MemoryRouteStore) -> Clock:
    return Clock(store)


def nodes(store: MemoryRouteStore, clock: Clock,
          failover_after: float = 10.0) -> dict[str, Node]:
    config = cluster(failover_after)
    return {c: Node(c, store, clock, config) for c in RING}


async def test_the_fence_opens_to_the_lease_deadline_then_closes_when_the_lease_is_lost(
        store: MemoryRouteStore, clock: Clock) -> None:
    a = nodes(store, clock)["a"]
    await a.agent._fence_in_step()
    assert a.rt.fence.until == 0.0  # nothing proven yet
    await a.step()
    assert a.rt.fence.until == clock.now + TTL - FENCE_MARGIN_SECONDS
    assert a.agent.serving("a") and not a.agent.serving("b")
    ended = a.rt.fence.sessions_ended
    store.expire(a.agent._lease)  # etcd let the lease go (a was cut off for too long)
    await a.agent._refresh_lease()  # a new lease: the map read under the old one is void
    await a.agent._fence_in_step()
    assert a.rt.fence.until == 0.0 and a.rt.fence.sessions_ended == ended + 1
    assert not a.agent.serving("a")
    await a.step()  # the map read afresh under the new lease: open again
    assert a.agent.serving("a") and a.rt.fence.until > clock.now


async def test_a_node_cut_off_from_etcd_fences_when_its_lease_would_expire(
        store: MemoryRouteStore, clock: Clock) -> None:
    a = nodes(store, clock)["a"]
    await a.step()
    store.unreachable = True
    clock.now += TTL - FENCE_MARGIN_SECONDS - 0.1  # etcd's own clock is not needed here
    await a.agent._fence_in_step()
    assert a.agent.serving("a") and a.rt.fence.until > clock.now  # still proven
    clock.now += 0.2
    await a.agent._fence_in_step()
    assert a.rt.fence.until == 0.0 and not a.agent.serving("a")


async def test_an_unhealthy_database_is_fenced_and_reported(
        store: MemoryRouteStore, clock: Clock) -> None:
    a = nodes(store, clock)["a"]
    await a.step()
    a.healthy = False
    a.agent._next_member = 0.0
    await a.step()
    assert a.rt.fence.until == 0.0 and not a.agent.serving("a")
    assert not (await store.members())["a"].db_healthy


async def test_a_dead_campus_fails_over_after_failover_after_and_a_live_one_never(
        store: MemoryRouteStore, clock: Clock) -> None:
    a, b = nodes(store, clock).values()
    await a.step()
    await b.step()
    assert await store.leader() == "a"
    for _ in range(20):  # both live: 20 s and nothing moves
        clock.advance(1.0)
        await a.step()
        await b.step()
    assert {k: r.serving for k, r in (await store.routes()).items()} == {
        "a": "a", "b": "b", "set:orders": "a"}
    # b dies: its lease runs out, then the leader waits failover_after.
    clock.advance(TTL)
    await a.step()
    assert "b" not in await store.members()
    for _ in range(9):
        clock.advance(1.0)
        await a.step()
        assert (await store.routes())["b"].serving == "b"
    clock.advance(1.0)
    await a.step()
    moved = (await store.routes())["b"]
    assert (moved.serving, moved.state, moved.epoch) == ("a", ACTIVE, 2)
    await a.step()
    assert a.agent.serving("b") and a.agent.serving("a")


async def test_a_dead_leader_is_replaced_and_its_successor_counts_afresh(
        store: MemoryRouteStore, clock: Clock) -> None:
    a, b = nodes(store, clock).values()
    await a.step()
    await b.step()
    clock.advance(TTL)  # a dies; its lease and the leader key go
    await b.step()
    assert await store.leader() == "b"
    clock.advance(9.9)
    await b.step()
    assert (await store.routes())["a"].serving == "a"
    clock.advance(0.1)
    await b.step()
    assert (await store.routes())["a"].serving == "b"


async def test_an_etcd_member_loss_neither_fences_nor_fails_over(
        store: MemoryRouteStore, clock: Clock) -> None:
    """etcd keeps its majority: the calls in flight while the client moves to
    another member fail, for less than a lease; the leases stand."""
    a, b = nodes(store, clock, failover_after=1.0).values()
    await a.step()
    await b.step()
    leases = (a.agent._lease, b.agent._lease)
    store.unreachable = True
    clock.advance(1.0)  # the keep-alives of this second fail
    for node in (a, b):
        with pytest.raises(EtcdError):
            await node.agent._refresh_lease()
        await node.agent._fence_in_step()
        assert node.rt.fence.until > clock.now  # the lease still proves itself
    store.unreachable = False
    for _ in range(5):
        clock.advance(1.0)
        await a.step()
        await b.step()
    assert (a.agent._lease, b.agent._lease) == leases
    assert a.agent.serving("a") and b.agent.serving("b")
    assert {k: r.epoch for k, r in (await store.routes()).items()} == {
        "a": 1, "b": 1, "set:orders": 1}


async def test_no_failover_while_etcd_is_lost_nor_right_after_it_returns(
        store: MemoryRouteStore, clock: Clock) -> None:
    a, b = nodes(store, clock, failover_after=5.0).values()
    await a.step()
    await b.step()
    await a.step()  # the leader has seen b live
    store.unreachable = True
    clock.advance(60.0)  # every lease lapses meanwhile
    for node in (a, b):
        with pytest.raises(EtcdError):
            await node.agent._refresh_lease()
        await node.agent._fence_in_step()
        assert node.rt.fence.until == 0.0  # both fenced: nobody can prove its lease
    store.unreachable = False
    await a.step()  # a comes back first, and leads
    assert await store.leader() == "a"
    assert (await store.routes())["b"].serving == "b"  # b gets failover_after to return
    await b.step()
    for _ in range(10):
        clock.advance(1.0)
        await a.step()
        await b.step()
    assert {k: (r.serving, r.epoch) for k, r in (await store.routes()).items()} == {
        "a": ("a", 1), "b": ("b", 1), "set:orders": ("a", 1)}


@pytest.mark.parametrize("key", ["b", "set:orders"])
async def test_a_switchover_drains_and_completes_at_the_new_epoch(
        store: MemoryRouteStore, clock: Clock, key: str) -> None:
    a, b = nodes(store, clock).values()
    source, target = (b, a) if key == "b" else (a, b)
    for node in (a, b):
        await node.step()
    source.rt.journal.head[source.rt.campus] = 12  # what the source committed

    async def both() -> None:
        clock.advance(0.1)
        await source.step()
        await target.step()
        if (await store.members())[source.rt.campus].drained:
            target.rt.applied[source.rt.campus] = 12  # replication delivered the head

    result = await move_route(store, key, target.rt.campus, "switchover", 60.0, lambda _: None,
                              clock, both)
    assert result["ok"] and result["head"] == 12
    route = (await store.routes())[key]
    assert (route.serving, route.state, route.epoch) == (target.rt.campus, ACTIVE, 3)
    await source.step()
    await target.step()
    if key == "b":
        assert target.agent.serving("b") and not source.agent.serving("b")
        assert source.rt.fence.until == 0.0  # b serves nobody now: fenced
    else:
        assert route.tenures == ((1, "a", 12),) and route.writer_since == 3
        assert source.rt.fence.set_until["orders"][0] == 0.0
        until, epoch = target.rt.fence.set_until["orders"]
        assert until > clock.now and epoch == 3
