"""Receiver: the server side of a replication stream.

It checks the sender's Hello against its certificate, answers with this
node's journal vector, then validates and journals each batch before
acknowledging it. Nothing is acknowledged that is not durably journaled.
Stream plumbing (reading, writing, heartbeats) lives in node.servicers.
"""

from __future__ import annotations

import logging

from google.protobuf.message import DecodeError

from node.codec import check_frame, shapes_from_pb
from node.replication import PROTOCOL_VERSION
from node.runtime import NodeRuntime
from node.schema import compare
from ringsync.errors import NotReady, PeerRejected, ProtocolError
from ringsync.v1 import replication_pb2 as rpb
from ringsync.v1 import values_pb2 as pb

log = logging.getLogger(__name__)


class Receiver:
    def __init__(self, rt: NodeRuntime, peer_name: str) -> None:
        self.rt = rt
        self.peer_name = peer_name
        self.peer: str | None = None
        self.tables = set(rt.config.cluster.tables)

    def welcome(self, request: rpb.ReplicateRequest) -> rpb.ReplicateResponse:
        if request.WhichOneof("msg") != "hello":
            raise ProtocolError("the first message of a replication stream must be Hello")
        hello = request.hello
        rt = self.rt
        if hello.campus != self.peer_name:
            raise PeerRejected(
                f"Hello says campus {hello.campus!r} but the certificate is for {self.peer_name!r}"
            )
        if hello.cluster != rt.config.cluster.name:
            raise PeerRejected(
                f"sender belongs to cluster {hello.cluster!r}, this node to "
                f"{rt.config.cluster.name!r}"
            )
        if hello.campus == rt.campus:
            raise PeerRejected("a node cannot replicate to itself")
        if hello.protocol_version != PROTOCOL_VERSION:
            raise ProtocolError(
                f"sender speaks protocol {hello.protocol_version}, this node {PROTOCOL_VERSION}; "
                f"run the same ringsync version on every campus"
            )
        if hello.tables:
            compare(rt.campus, rt.engine.shapes(), hello.campus, shapes_from_pb(hello.tables))
        if not rt.initialized.is_set():
            raise NotReady(
                f"campus {rt.campus} is joining the ring ({rt.join.state} from "
                f"{rt.join.donor or 'a donor'}); it takes replication once its copy is done"
            )
        self.peer = hello.campus
        log.info("replication stream from %s opened", self.peer)
        return rpb.ReplicateResponse(
            welcome=rpb.Welcome(campus=rt.campus, journal=rpb.Vector(seqs=rt.journal.vector()))
        )

    def parse(self, batch: rpb.Batch) -> list[tuple[pb.TxnFrame, bytes]]:
        frames = []
        for raw in batch.frames:
            try:
                frame = pb.TxnFrame.FromString(raw)
            except DecodeError as e:
                raise ProtocolError(f"batch {batch.batch_id} holds an undecodable frame") from e
            check_frame(frame, self.tables)
            frames.append((frame, raw))
        return frames

    async def accept(self, request: rpb.ReplicateRequest) -> rpb.ReplicateResponse:
        if request.WhichOneof("msg") != "batch":
            raise ProtocolError("expected Batch after Hello")
        batch = request.batch
        frames = self.parse(batch)
        stored = await self.rt.in_journal(self.rt.journal.append_remote, frames)
        if stored:
            self.rt.journal_changed.notify()
        return self.ack(batch.batch_id)

    def ack(self, batch_id: int = 0) -> rpb.ReplicateResponse:
        rt = self.rt
        known = {c: rpb.Vector(seqs=v) for c, v in rt.known_snapshot().items()}
        return rpb.ReplicateResponse(
            ack=rpb.Ack(
                batch_id=batch_id,
                journal=rpb.Vector(seqs=rt.journal.vector()),
                applied=rpb.Vector(seqs=rt.applied_vector()),
                known=known,
            )
        )
