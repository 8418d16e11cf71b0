"""A parent's two streams with a leaf over real gRPC and mTLS (the in-process
campus "a" of tests.unit.node.test_servicers_grpc): what a leaf may send up,
who may follow, and what a Follow stream carries."""

from __future__ import annotations

import asyncio

import grpc

from node.codec import build_frame, decode_changes, shapes_to_pb
from node.model import Change, Op
from node.replication import PROTOCOL_VERSION
from ringsync.v1 import replication_pb2 as rpb
from ringsync.v1 import replication_pb2_grpc
from ringsync.v1 import values_pb2 as pb
from tests.unit.node.test_servicers_grpc import Campus, refusal

PATIENT_FY = ("p1", "m1", "Ada", None, "F", "fy", "t")
PATIENT_HZ = ("p2", "m2", "Bo", None, "M", "hz", "t")


def shapes(c: Campus, *tables: str) -> list[pb.TableShape]:
    return shapes_to_pb(s for t, s in c.rt.engine.shapes().items() if t in tables)


async def upload(c: Campus, leaf: str, *frames: pb.TxnFrame) -> rpb.ReplicateResponse:
    async with c.client("node", leaf) as ch:
        call = replication_pb2_grpc.ReplicationStub(ch).Replicate(timeout=10)
        await call.write(rpb.ReplicateRequest(hello=rpb.Hello(
            campus=leaf, cluster="unit", protocol_version=PROTOCOL_VERSION,
            tables=shapes(c, "patients"))))
        welcome = await call.read()
        assert welcome.WhichOneof("msg") == "welcome"
        await call.write(rpb.ReplicateRequest(batch=rpb.Batch(
            batch_id=1, frames=[f.SerializeToString() for f in frames])))
        return await call.read()


def frame(c: Campus, origin: str, seq: int, *changes: Change) -> pb.TxnFrame:
    return build_frame(origin, seq, 0, True, 1.0, changes, dict(c.rt.engine.shapes()))


async def test_a_leaf_sends_up_its_own_frames_of_its_tables_and_nothing_else(
        campus: Campus) -> None:
    campus.rt.state.initialized.set()
    own = frame(campus, "sat", 1, Change("patients", Op.INSERT, new=PATIENT_FY))
    ack = await upload(campus, "sat", own)
    assert dict(ack.ack.journal.seqs)["sat"] == 1  # journaled: the ring carries it on
    forged = frame(campus, "b", 1, Change("patients", Op.INSERT, new=PATIENT_HZ))
    e = await refusal(upload(campus, "sat", forged))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "origin 'b'" in e.details()
    other_table = frame(campus, "sat", 2, Change("lab_orders", Op.INSERT, new=(
        "o1", "p1", "GLU", "STAT", "ordered", "a", "t")))
    e = await refusal(upload(campus, "sat", other_table))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "lab_orders" in e.details()
    assert campus.rt.journal.vector() == {"sat": 1}
    assert campus.rt.refused.by_kind == {"unknown_origin": 1, "bad_shape": 1}


async def test_only_a_leaf_of_this_campus_may_send_up_or_follow(campus: Campus) -> None:
    campus.rt.state.initialized.set()
    e = await refusal(upload(campus, "far", frame(campus, "far", 1)))
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED
    assert e.details() == "leaf far hangs from b, not from a; add a to its parents"
    for who, says in (("b", "'b' is not a [[leaf]]"), ("far", "hangs from b, not from a")):
        async with campus.client("node", who) as ch:
            call = replication_pb2_grpc.ReplicationStub(ch).Follow(timeout=10)
            await call.write(rpb.FollowRequest(hello=rpb.FollowHello(
                campus=who, cluster="unit", protocol_version=PROTOCOL_VERSION)))
            e = await refusal(call.read())
        assert e.code() == grpc.StatusCode.PERMISSION_DENIED and says in e.details()


async def test_a_follow_stream_carries_the_route_and_keeps_seqs_gapless(campus: Campus) -> None:
    campus.rt.state.initialized.set()
    journal = campus.rt.journal
    journal.append_remote([(f, f.SerializeToString()) for f in (
        frame(campus, "b", 1, Change("patients", Op.INSERT, new=PATIENT_FY)),
        frame(campus, "b", 2, Change("patients", Op.INSERT, new=PATIENT_HZ)),
        frame(campus, "b", 3, Change("lab_orders", Op.INSERT, new=(
            "o1", "p1", "GLU", "STAT", "ordered", "b", "t"))),
        frame(campus, "sat", 1, Change("patients", Op.INSERT, new=PATIENT_FY)))])
    async with campus.client("node", "sat") as ch:
        call = replication_pb2_grpc.ReplicationStub(ch).Follow(timeout=10)
        await call.write(rpb.FollowRequest(hello=rpb.FollowHello(
            campus="sat", cluster="unit", protocol_version=PROTOCOL_VERSION,
            tables=shapes(campus, "patients"), journal=rpb.Vector(seqs={"sat": 1}),
            route=campus.rt.config.cluster.leaf("sat").fingerprint)))  # type: ignore[union-attr]
        welcome = await call.read()
        batch = (await asyncio.wait_for(call.read(), 10)).batch
        await call.write(rpb.FollowRequest(ack=rpb.Ack(
            batch_id=batch.batch_id, journal=rpb.Vector(seqs={"b": 3, "sat": 1}))))
        await asyncio.sleep(0)
        call.cancel()
    assert welcome.welcome.campus == "a"
    got = [pb.TxnFrame.FromString(f) for f in batch.frames]
    assert [(f.origin, f.seq) for f in got] == [("b", 1), ("b", 2), ("b", 3)]  # never its own
    rows = [[c.new for c in decode_changes(f)[1]] for f in got]
    assert rows == [[PATIENT_FY], [], []]  # outside the filter, other tables: empty frames


async def test_a_leaf_whose_cluster_file_says_another_route_is_refused(campus: Campus) -> None:
    campus.rt.state.initialized.set()
    async with campus.client("node", "sat") as ch:
        call = replication_pb2_grpc.ReplicationStub(ch).Follow(timeout=10)
        await call.write(rpb.FollowRequest(hello=rpb.FollowHello(
            campus="sat", cluster="unit", protocol_version=PROTOCOL_VERSION,
            tables=shapes(campus, "patients"), route="0123456789abcdef")))
        e = await refusal(call.read())
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "follows route 0123456789abcdef" in e.details() and "same on the leaf" in e.details()
