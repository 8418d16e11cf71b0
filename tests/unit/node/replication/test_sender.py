"""The ring sender against a scripted successor: it says Hello, resumes
from the vector the Welcome gives, sends what the successor lacks (this
campus's transactions and the ones it relays, never the successor's own),
keeps to its window, learns from every Ack, and fails over when the
successor stays down."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any, cast

import grpc
import pytest

from node.model import CapturedChunk, Change, Op
from node.replication import PROTOCOL_VERSION
from node.replication.resources import NodeResources
from node.replication.sender import LinkLost, RingSender
from node.replication.state import ReplicationState
from ringsync.client import Credentials
from ringsync.config import NodeConfig
from ringsync.v1 import replication_pb2 as rpb
from ringsync.v1 import values_pb2 as pb

from .campus import insert_patient, patient

TIMEOUT = 10.0  # bounds every wait; none is expected to come near it


class ScriptedStream:
    """The client side of one Replicate call; the test plays the successor."""

    def __init__(self) -> None:
        self.sent: asyncio.Queue[rpb.ReplicateRequest] = asyncio.Queue()
        self.replies: asyncio.Queue[Any] = asyncio.Queue()
        self.acks_read = 0
        self.acks_read_at: dict[int, int] = {}  # batch id -> acks read when it was written
        self.cancelled = False

    async def write(self, msg: rpb.ReplicateRequest) -> None:
        if msg.WhichOneof("msg") == "batch":
            self.acks_read_at[msg.batch.batch_id] = self.acks_read
        await self.sent.put(msg)

    async def read(self) -> Any:
        reply = await self.replies.get()
        if reply is not grpc.aio.EOF and reply.WhichOneof("msg") == "ack":
            self.acks_read += 1
        return reply

    def cancel(self) -> None:
        self.cancelled = True

    async def next_sent(self) -> rpb.ReplicateRequest:
        return await asyncio.wait_for(self.sent.get(), TIMEOUT)

    async def next_batch(self) -> tuple[int, list[tuple[str, int]]]:
        """The next batch's id and its frames as (origin, seq)."""
        msg = await self.next_sent()
        assert msg.WhichOneof("msg") == "batch"
        frames = [pb.TxnFrame.FromString(f) for f in msg.batch.frames]
        return msg.batch.batch_id, [(f.origin, f.seq) for f in frames]


class ScriptedChannel:
    """A channel whose Replicate call is the scripted stream."""

    def __init__(self, stream: ScriptedStream) -> None:
        self.stream = stream

    def stream_stream(self, *args: Any, **kwargs: Any) -> Any:
        return lambda *a, **k: self.stream

    def unary_stream(self, *args: Any, **kwargs: Any) -> Any:
        return lambda *a, **k: None

    async def close(self) -> None:
        pass


class ScriptedCredentials:
    generation = 1  # never renewed (ringsync.client.Credentials.refresh)

    def __init__(self) -> None:
        self.streams: dict[str, ScriptedStream] = {}
        self.dialled: list[tuple[str, str]] = []

    def refresh(self) -> bool:
        return False

    def stream_to(self, peer: str) -> ScriptedStream:
        """The stream a dial of ``peer`` gets."""
        return self.streams.setdefault(peer, ScriptedStream())

    def channel(self, address: str, peer: str, options: object) -> ScriptedChannel:
        self.dialled.append((peer, address))
        return ScriptedChannel(self.stream_to(peer))


def welcome(journal: dict[str, int]) -> rpb.ReplicateResponse:
    return rpb.ReplicateResponse(welcome=rpb.Welcome(campus="b",
                                                     journal=rpb.Vector(seqs=journal)))


def ack(batch_id: int, journal: dict[str, int], applied: dict[str, int],
        known: dict[str, dict[str, int]] | None = None) -> rpb.ReplicateResponse:
    return rpb.ReplicateResponse(ack=rpb.Ack(
        batch_id=batch_id, journal=rpb.Vector(seqs=journal), applied=rpb.Vector(seqs=applied),
        known={c: rpb.Vector(seqs=v) for c, v in (known or {}).items()}))


def capture_local(res: NodeResources, n: int) -> None:
    """Journal campus a's own transaction number ``n``."""
    chunk = CapturedChunk([Change("patients", Op.INSERT, new=patient(f"a{n}", campus="a"))],
                          True, 1.0, n)
    res.journal.append_local([chunk], dict(res.engine.shapes()))


@pytest.fixture
def credentials() -> ScriptedCredentials:
    return ScriptedCredentials()


@pytest.fixture
def sender(config: NodeConfig, res: NodeResources, state: ReplicationState,
           credentials: ScriptedCredentials) -> RingSender:
    return RingSender(config, res, state, cast(Credentials, credentials))


async def test_it_sends_the_successor_what_it_lacks_and_learns_from_acks(
        res: NodeResources, state: ReplicationState, sender: RingSender,
        credentials: ScriptedCredentials) -> None:
    engine = res.engine
    capture_local(res, 1)
    capture_local(res, 2)
    res.journal.append_remote([insert_patient(engine, "c", 1, "c1"),
                               insert_patient(engine, "c", 2, "c2"),
                               insert_patient(engine, "b", 1, "b1")])
    assert sender.successors == ("b", "c") and set(state.links) == {"b", "c"}
    link = state.links["b"]
    stream = credentials.stream_to("b")
    task = asyncio.create_task(sender._stream("b", link))
    try:
        hello = await stream.next_sent()
        assert credentials.dialled == [("b", "127.0.0.1:7002")]
        assert (hello.hello.campus, hello.hello.cluster, hello.hello.protocol_version) == (
            "a", "unit", PROTOCOL_VERSION)
        assert {t.name for t in hello.hello.tables} == set(engine.shapes())

        acked = res.acks_changed.ticket()
        await stream.replies.put(welcome({"a": 1, "c": 1}))
        # a/1 and c/1 are there already, b/1 is b's own: a/2 and the relayed c/2
        assert await stream.next_batch() == (1, [("a", 2), ("c", 2)])
        assert link.state == "streaming" and link.down_since is None
        assert state.known["b"] == {"a": 1, "c": 1} and acked.is_set()

        acked = res.acks_changed.ticket()
        await stream.replies.put(ack(1, {"a": 2, "b": 1, "c": 2}, {"a": 2, "b": 1, "c": 1},
                                     known={"c": {"c": 2, "a": 1}}))
        await asyncio.wait_for(acked.wait(), TIMEOUT)
        assert link.peer_journal == {"a": 2, "b": 1, "c": 2}
        assert link.peer_applied == {"a": 2, "b": 1, "c": 1}
        assert link.last_ack > 0
        assert state.known["b"] == {"a": 2, "b": 1, "c": 2}
        assert state.known["c"] == {"c": 2, "a": 1}

        # a new local transaction: capture wakes the sender, which sends it next
        capture_local(res, 3)
        res.journal_changed.notify()
        assert await stream.next_batch() == (2, [("a", 3)])

        await stream.replies.put(grpc.aio.EOF)  # b goes away
        with pytest.raises(LinkLost, match="b closed the stream"):
            await asyncio.wait_for(task, TIMEOUT)
        assert stream.cancelled and link.state == "idle"
    finally:
        task.cancel()


async def test_it_keeps_no_more_than_its_window_unacknowledged(
        res: NodeResources, state: ReplicationState, sender: RingSender,
        credentials: ScriptedCredentials) -> None:
    engine = res.engine
    res.journal.append_remote([insert_patient(engine, "c", n, f"c{n}") for n in (1, 2, 3)])
    sender.tuning = dataclasses.replace(sender.tuning, window=1, batch_max_frames=1)
    stream = credentials.stream_to("b")
    task = asyncio.create_task(sender._stream("b", state.links["b"]))
    try:
        await stream.next_sent()  # Hello
        await stream.replies.put(welcome({}))
        for n in (1, 2, 3):
            assert await stream.next_batch() == (n, [("c", n)])
            # batch n went out only once the ack of batch n-1 was read
            assert stream.acks_read_at[n] == n - 1
            await stream.replies.put(ack(n, {"c": n}, {}))
    finally:
        task.cancel()


async def test_a_hello_not_answered_with_welcome_loses_the_link(
        state: ReplicationState, sender: RingSender, credentials: ScriptedCredentials) -> None:
    stream = credentials.stream_to("b")
    task = asyncio.create_task(sender._stream("b", state.links["b"]))
    await stream.next_sent()  # Hello
    await stream.replies.put(ack(0, {}, {}))
    with pytest.raises(LinkLost, match="did not answer Hello with Welcome"):
        await asyncio.wait_for(task, TIMEOUT)


def test_the_ring_heals_around_a_successor_down_too_long(
        state: ReplicationState, sender: RingSender) -> None:
    now = time.monotonic()
    heal = sender.tuning.heal_after_seconds
    assert sender.choose_target(now) == "b"
    state.links["b"].down_since = now - heal / 2  # not yet given up on
    assert sender.choose_target(now) == "b"
    state.links["b"].down_since = now - heal - 1
    assert sender.choose_target(now) == "c"
    # Everyone down: each in turn, the one dialled longest ago first, so a
    # campus further on that is back is found while the successor stays dead.
    state.links["c"].down_since = now - heal - 1
    assert sender.choose_target(now) == "b"
    sender._dialled.update(b=now - 2, c=now - 1)
    assert sender.choose_target(now) == "b"
    sender._dialled["b"] = now
    assert sender.choose_target(now) == "c"
