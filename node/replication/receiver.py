"""Receiver: the server side of a replication stream.

It checks the sender's Hello against its certificate, answers with this
node's journal vector, then validates and journals each batch before
acknowledging it. Nothing is acknowledged that is not durably journaled,
and nothing is journaled that was not checked whole first (every value
against the local column it goes to, the origin against the ring: see
node.replication.framecheck). Messages arrive as bytes and are parsed here,
so undecodable ones are refused with a clear INVALID_ARGUMENT. Stream
plumbing (reading, writing, heartbeats) lives in node.servicers.
"""

from __future__ import annotations

import logging

from google.protobuf.message import DecodeError

from node.codec import escape_peer_text, shapes_from_pb
from node.replication import PROTOCOL_VERSION
from node.replication.framecheck import (
    FrameChecker,
    FrameRefused,
    check_hello_tables,
    is_ring_origin,
)
from node.runtime import NodeRuntime
from node.schema import compare
from ringsync.errors import NotReady, PeerRejected
from ringsync.v1 import replication_pb2 as rpb
from ringsync.v1 import values_pb2 as pb

log = logging.getLogger(__name__)


class Receiver:
    def __init__(self, rt: NodeRuntime, peer_name: str) -> None:
        self.rt = rt
        self.peer_name = peer_name
        self.peer: str | None = None
        cluster = rt.config.cluster
        self.checker = FrameChecker(rt.campus, rt.engine.shapes(),
                                    lambda origin: is_ring_origin(cluster, origin))

    @staticmethod
    def decode(data: bytes) -> rpb.ReplicateRequest:
        """A stream message from its bytes (the stream is registered raw)."""
        try:
            return rpb.ReplicateRequest.FromString(data)
        except DecodeError:
            raise FrameRefused("undecodable", f"a message of {len(data)} bytes is not a "
                               f"ReplicateRequest (undecodable)") from None

    def welcome(self, request: rpb.ReplicateRequest) -> rpb.ReplicateResponse:
        if request.WhichOneof("msg") != "hello":
            raise FrameRefused("malformed",
                               "the first message of a replication stream must be Hello")
        hello = request.hello
        rt = self.rt
        if hello.campus != self.peer_name:
            raise PeerRejected(
                f"Hello says campus '{escape_peer_text(hello.campus, 60)}' but the certificate "
                f"is for '{escape_peer_text(self.peer_name, 60)}'"
            )
        if hello.cluster != rt.config.cluster.name:
            raise PeerRejected(
                f"sender belongs to cluster '{escape_peer_text(hello.cluster, 60)}', this node "
                f"to {rt.config.cluster.name!r}"
            )
        if hello.campus == rt.campus:
            raise PeerRejected("a node cannot replicate to itself")
        if hello.protocol_version != PROTOCOL_VERSION:
            raise FrameRefused(
                "bad_hello",
                f"sender speaks protocol {hello.protocol_version}, this node {PROTOCOL_VERSION}; "
                f"run the same ringsync version on every campus"
            )
        if hello.tables:
            check_hello_tables(hello.tables)
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
        """Decode and check every frame of a batch (FrameRefused for the first bad one)."""
        frames = []
        for i, raw in enumerate(batch.frames):
            try:
                frame = pb.TxnFrame.FromString(raw)
            except DecodeError:
                raise FrameRefused("undecodable", f"batch {batch.batch_id} holds an "
                                   f"undecodable frame (frame {i}, {len(raw)} bytes)") from None
            self.checker.check(frame, self.peer or self.peer_name)
            frames.append((frame, raw))
        return frames

    def _journal(self, batch: rpb.Batch) -> int:
        # Journal thread: checking every value of a big batch is CPU work that
        # must not hold up the event loop's other streams.
        return self.rt.journal.append_remote(self.parse(batch))

    async def accept(self, request: rpb.ReplicateRequest) -> rpb.ReplicateResponse:
        if request.WhichOneof("msg") != "batch":
            raise FrameRefused("malformed", "expected Batch after Hello")
        batch = request.batch
        stored = await self.rt.in_journal(self._journal, batch)
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
