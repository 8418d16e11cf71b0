"""The receiver: a Hello is checked against the certificate, the cluster,
the protocol and the join; a batch is checked whole, journaled, and only
then acknowledged; what is refused is refused whole, and counted."""

from __future__ import annotations

import pytest

from node.codec import build_frame
from node.model import Change, Op
from node.replication import PROTOCOL_VERSION
from node.replication.framecheck import FrameRefused
from node.replication.receiver import Receiver
from ringsync.errors import NotReady, PeerRejected, ProtocolError
from ringsync.v1 import replication_pb2 as rpb

from .campus import Parts, insert_patient, patient


def hello(campus: str = "b", cluster: str = "unit",
          version: int = PROTOCOL_VERSION) -> rpb.ReplicateRequest:
    return rpb.ReplicateRequest(hello=rpb.Hello(campus=campus, cluster=cluster,
                                                protocol_version=version))


def batch(batch_id: int, *frames: bytes) -> rpb.ReplicateRequest:
    return rpb.ReplicateRequest(batch=rpb.Batch(batch_id=batch_id, frames=list(frames)))


@pytest.fixture
def receiver(parts: Parts) -> Receiver:
    parts.state.initialized.set()
    r = Receiver(parts, "b")
    r.welcome(hello())
    return r


def test_a_hello_that_disagrees_with_the_certificate_or_the_cluster_is_refused(
        parts: Parts) -> None:
    parts.state.initialized.set()
    with pytest.raises(PeerRejected, match="certificate is for 'b'"):
        Receiver(parts, "b").welcome(hello(campus="c"))
    with pytest.raises(PeerRejected, match="cluster 'other'"):
        Receiver(parts, "b").welcome(hello(cluster="other"))
    with pytest.raises(PeerRejected, match="cannot replicate to itself"):
        Receiver(parts, "a").welcome(hello(campus="a"))
    with pytest.raises(FrameRefused, match="protocol"):
        Receiver(parts, "b").welcome(hello(version=PROTOCOL_VERSION + 1))
    with pytest.raises(FrameRefused, match="must be Hello"):
        Receiver(parts, "b").welcome(batch(1))


def test_a_joining_campus_takes_no_stream(parts: Parts) -> None:
    parts.state.join.state, parts.state.join.donor = "copying", "c"
    with pytest.raises(NotReady, match="joining the ring \\(copying from c\\)"):
        Receiver(parts, "b").welcome(hello())


def test_welcome_says_what_the_journal_holds(parts: Parts) -> None:
    parts.state.initialized.set()
    parts.res.journal.append_remote([insert_patient(parts.res.engine, "c", 1, "p1")])
    welcome = Receiver(parts, "b").welcome(hello()).welcome
    assert welcome.campus == "a" and dict(welcome.journal.seqs) == {"c": 1}


async def test_a_batch_is_journaled_then_acknowledged_with_the_vectors(
        parts: Parts, receiver: Receiver) -> None:
    engine, state = parts.res.engine, parts.state
    state.applied = {"b": 1}
    state.learn("c", {"c": 7})
    ticket = parts.res.journal_changed.ticket()
    frames = [insert_patient(engine, "b", 1, "p1")[1], insert_patient(engine, "b", 2, "p2")[1]]
    ack = (await receiver.accept(receiver.decode(batch(5, *frames).SerializeToString()))).ack
    assert ticket.is_set()  # the applier and the sender are woken
    assert parts.res.journal.vector() == {"b": 2}
    assert ack.batch_id == 5
    assert dict(ack.journal.seqs) == {"b": 2}
    assert dict(ack.applied.seqs) == {"b": 1, "a": 0}
    assert {c: dict(v.seqs) for c, v in ack.known.items()} == {"c": {"c": 7}, "a": {"b": 2}}


async def test_a_batch_of_duplicates_is_acknowledged_without_waking_anyone(
        parts: Parts, receiver: Receiver) -> None:
    frame = insert_patient(parts.res.engine, "b", 1, "p1")[1]
    await receiver.accept(batch(1, frame))
    ticket = parts.res.journal_changed.ticket()
    ack = (await receiver.accept(batch(2, frame))).ack
    assert ack.batch_id == 2 and not ticket.is_set()


@pytest.mark.parametrize("bad,kind", [
    (b"\xff\xff\xff", "undecodable"),
    ("origin-outside-the-ring", "unknown_origin"),
    ("unknown-table", "bad_shape"),
    ("null-primary-key", "bad_value"),
])
async def test_a_bad_frame_refuses_its_whole_batch_and_is_counted(
        parts: Parts, receiver: Receiver, bad: bytes | str, kind: str) -> None:
    engine = parts.res.engine
    shapes = dict(engine.shapes())
    if bad == "origin-outside-the-ring":
        bad = insert_patient(engine, "zz", 1, "p9")[1]
    elif bad == "unknown-table":
        shapes = {**shapes, "secrets": shapes["patients"].__class__(
            "secrets", ("id",), (0,))}
        bad = build_frame("b", 2, 0, True, 1.0, [Change("secrets", Op.INSERT, new=("x",))],
                          shapes).SerializeToString()
    elif bad == "null-primary-key":
        row = list(patient("p9"))
        row[0] = None
        bad = build_frame("b", 2, 0, True, 1.0, [Change("patients", Op.INSERT,
                                                        new=tuple(row))],
                          shapes).SerializeToString()
    assert isinstance(bad, bytes)
    good = insert_patient(engine, "b", 1, "p1")[1]
    with pytest.raises(ProtocolError) as refused:
        await receiver.accept(batch(1, good, bad))
    assert parts.res.journal.vector() == {}  # not even the good frame before it
    # node.servicers records every refusal in the state status shows
    parts.state.refused.record("b", refused.value)
    assert isinstance(refused.value, FrameRefused)
    assert parts.state.refused.total == 1
    assert refused.value.kind == kind and parts.state.refused.by_kind == {kind: 1}


def test_an_undecodable_message_is_refused_by_name(receiver: Receiver) -> None:
    with pytest.raises(FrameRefused, match="not a ReplicateRequest") as refused:
        receiver.decode(b"\x0a\xff")
    assert refused.value.kind == "undecodable"
