"""The sender's redial: a backoff that grows while a campus stays down, and
signs of its return (its Hello at this node's receiver, the probe finding it
serving) that end the wait at once, each sign once, without letting a campus
that gives signs but fails the stream make the sender spin."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import cast

import pytest

from node.replication import PROTOCOL_VERSION
from node.replication.receiver import Receiver
from node.replication.resources import NodeResources
from node.replication.sender import RingSender
from node.replication.state import PeerReturn, Redial, ReplicationState
from ringsync.client import Credentials
from ringsync.config import NodeConfig
from ringsync.v1 import replication_pb2 as rpb

from .campus import Parts

TIMEOUT = 10.0  # bounds every wait for a wake; none is expected to come near it
NO_WAKE = 0.05  # a wait that must run its course (it ends on its own either way)


def hello(campus: str) -> rpb.ReplicateRequest:
    return rpb.ReplicateRequest(hello=rpb.Hello(campus=campus, cluster="unit",
                                                protocol_version=PROTOCOL_VERSION))


def signs(**counts: int) -> dict[str, PeerReturn]:
    return {campus: PeerReturn(n, "its Hello") for campus, n in counts.items()}


def redial() -> Redial:
    return Redial(1.0, 8.0, jitter=lambda: 0.5)  # every delay is exactly the backoff


def test_the_backoff_doubles_up_to_its_maximum_and_a_good_stream_resets_it() -> None:
    r = redial()
    assert [r.failed(took_hold=False) for _ in range(5)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    r.streamed()
    assert r.failed(took_hold=False) == 1.0
    jittered = Redial(2.0, 8.0, jitter=lambda: 0.0)
    assert jittered.failed(took_hold=False) == 1.0  # half the backoff at the least


def test_a_sign_wakes_once_and_resets_the_backoff() -> None:
    r = redial()
    r.attempt({})
    for _ in range(3):
        r.failed(took_hold=False)
    assert r.wake_for({}, ["b"]) is None
    assert r.wake_for(signs(b=1), ["b"]) == ("b", "its Hello")
    assert r.backoff == 1.0
    assert r.wake_for(signs(b=1), ["b"]) is None  # spent
    assert r.wake_for(signs(b=2), ["b"]) == ("b", "its Hello")  # a new Hello is a new sign


def test_signs_seen_before_an_attempt_are_spent_by_it() -> None:
    r = redial()
    r.attempt(signs(b=3))
    r.failed(took_hold=False)
    assert r.wake_for(signs(b=3), ["b"]) is None
    assert r.wake_for(signs(b=4), ["b"]) is not None


def test_only_the_wanted_campuses_wake_it_the_first_in_ring_order_first() -> None:
    r = redial()
    r.attempt({})
    r.failed(took_hold=False)
    assert r.wake_for(signs(c=1), ["b"]) is None  # c comes after the campus it waits for
    assert r.wake_for(signs(b=1, c=1), ["b", "c"]) == ("b", "its Hello")
    assert r.wake_for(signs(b=1, c=1), ["b", "c"]) == ("c", "its Hello")


def test_a_woken_attempt_that_fails_at_once_cannot_make_it_spin() -> None:
    r = redial()
    r.attempt({})
    for _ in range(3):
        r.failed(took_hold=False)  # backoff 8
    assert r.wake_for(signs(b=1), ["b"]) is not None
    r.attempt(signs(b=1))
    assert r.failed(took_hold=False) == 1.0  # from the minimum: the wake reset it
    # more signs come, but waking is off until this wait runs its course
    assert r.wake_for(signs(b=2), ["b"]) is None
    assert r.wake_for(signs(b=5), ["b"]) is None
    r.ran_out()
    r.attempt(signs(b=5))
    assert r.failed(took_hold=False) == 2.0
    # a wake again, but the backoff keeps growing while woken attempts fail
    assert r.wake_for(signs(b=6), ["b"]) is not None
    assert r.backoff == 4.0
    r.attempt(signs(b=6))
    assert r.failed(took_hold=False) == 4.0
    assert r.wake_for(signs(b=7), ["b"]) is None


def test_a_woken_stream_that_took_hold_leaves_waking_on() -> None:
    r = redial()
    r.attempt({})
    r.failed(took_hold=False)
    assert r.wake_for(signs(b=1), ["b"]) is not None
    r.attempt(signs(b=1))
    r.failed(took_hold=True)  # it streamed (acknowledged) before it broke
    assert r.wake_for(signs(b=2), ["b"]) is not None
    assert r.backoff == 1.0


def test_the_state_records_signs_of_ring_campuses_only() -> None:
    state = ReplicationState("a", ("a", "b", "c"))
    state.peer_back("b", "its Hello")
    state.peer_back("b", "its health check answers SERVING")
    state.peer_back("a", "its Hello")  # itself
    state.peer_back("z", "its Hello")  # not in the ring
    assert state.returns == {"b": PeerReturn(2, "its health check answers SERVING")}


@pytest.fixture
def sender(config: NodeConfig, res: NodeResources, state: ReplicationState) -> RingSender:
    return RingSender(config, res, state, cast(Credentials, None))  # nothing here dials


async def test_the_wait_ends_when_the_campus_says_hello_to_the_receiver(
        parts: Parts, sender: RingSender) -> None:
    parts.state.initialized.set()
    sender.redial.attempt(parts.state.returns)
    wait = asyncio.create_task(sender._wait_to_redial(3600.0, "b"))
    await asyncio.sleep(0)
    assert sender._waiting
    Receiver(parts, "b").welcome(hello("b"))  # b's sender reaches this node
    assert await asyncio.wait_for(wait, TIMEOUT) == ("b", "its Hello")
    assert not sender._waiting


async def test_a_campus_after_the_target_does_not_end_the_wait_one_before_it_does(
        parts: Parts, sender: RingSender) -> None:
    parts.state.initialized.set()
    sender.redial.attempt(parts.state.returns)
    Receiver(parts, "c").welcome(hello("c"))
    assert await sender._wait_to_redial(NO_WAKE, "b") is None  # ran its course
    sender.redial.attempt({})  # c's Hello unspent: the sender waits for c now
    assert await asyncio.wait_for(sender._wait_to_redial(3600.0, "c"), TIMEOUT) == (
        "c", "its Hello")


async def test_the_probe_reports_the_waited_for_target_serving_once_per_outage(
        sender: RingSender, state: ReplicationState) -> None:
    probes: list[str] = []

    async def serving(peer: str) -> bool:
        probes.append(peer)
        return True

    sender._probe = serving  # type: ignore[method-assign]  # the Health Check's answer
    sender.tuning = dataclasses.replace(sender.tuning, probe_interval_seconds=0.001)
    sender.target, sender._waiting = "b", True
    state.links["b"].down_since = time.monotonic()
    probe = asyncio.create_task(sender._probe_loop())
    try:
        async def probed(n: int) -> None:
            start = len(probes)
            while len(probes) < start + n:
                await asyncio.sleep(0.001)

        await asyncio.wait_for(probed(5), TIMEOUT)
        assert set(probes) == {"b"}  # c comes after the target: not probed
        assert state.returns["b"].count == 1
        state.links["b"].down_since = time.monotonic() + 1  # b came and went again
        await asyncio.wait_for(probed(5), TIMEOUT)
        assert state.returns["b"].count == 2
        sender._waiting = False  # dialling or streaming b: the probe leaves it alone
        before = len(probes)
        await asyncio.sleep(0.05)
        assert len(probes) == before and state.returns["b"].count == 2
    finally:
        probe.cancel()
