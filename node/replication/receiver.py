"""Receiver: the server side of a replication stream.

It checks the sender's Hello against its certificate, answers with this
node's journal vector, then validates and journals each batch before
acknowledging it. Nothing is acknowledged that is not durably journaled,
and nothing is journaled that was not checked whole first (every value
against the local column it goes to, the origin against the ring: see
node.replication.framecheck). Messages arrive as bytes and are parsed here,
so undecodable ones are refused with a clear INVALID_ARGUMENT. A welcomed
Hello is also a sign that its campus is back: it wakes this node's own
sender if that waits to redial the campus (ReplicationState.peer_back).
Stream plumbing (reading, writing, heartbeats) lives in node.servicers.
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
from node.replication.parts import NodeParts
from node.schema import compare
from ringsync.errors import NotReady, PeerRejected
from ringsync.v1 import replication_pb2 as rpb
from ringsync.v1 import values_pb2 as pb

log = logging.getLogger(__name__)


class Receiver:
    """One inbound stream: checks and journals through ``node.res``, reports
    what this campus holds from ``node.state``."""

    def __init__(self, node: NodeParts, peer_name: str) -> None:
        self.config, self.res, self.state = node.config, node.res, node.state
        self.campus = self.config.campus
        self.peer_name = peer_name
        self.peer: str | None = None
        cluster = self.config.cluster
        self.leaf = cluster.leaf(peer_name)
        self.shapes = self.res.engine.shapes()
        if self.leaf is None:
            self.checker = FrameChecker(self.campus, self.shapes,
                                        lambda origin: is_ring_origin(cluster, origin))
        else:  # a leaf sends up its own writes, of its route's tables, and nothing else
            name, tables = self.leaf.name, self.leaf.tables
            self.shapes = {t: s for t, s in self.shapes.items() if t in tables}
            self.checker = FrameChecker(self.campus, self.shapes, lambda origin: origin == name)

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
        cluster_name, campus, state = self.config.cluster.name, self.campus, self.state
        if hello.campus != self.peer_name:
            raise PeerRejected(
                f"Hello says campus '{escape_peer_text(hello.campus, 60)}' but the certificate "
                f"is for '{escape_peer_text(self.peer_name, 60)}'"
            )
        if hello.cluster != cluster_name:
            raise PeerRejected(
                f"sender belongs to cluster '{escape_peer_text(hello.cluster, 60)}', this node "
                f"to {cluster_name!r}"
            )
        if hello.campus == campus:
            raise PeerRejected("a node cannot replicate to itself")
        if self.config.leaf is not None:
            raise PeerRejected(f"campus {campus} is a leaf: it takes no Replicate streams (it "
                               f"follows its parent); remove it from the sender's ring")
        if self.leaf is not None and not self.leaf.uploads:
            raise PeerRejected(f"leaf {self.leaf.name} sends no writes up (uploads = false in "
                               f"{self.config.cluster.path}); its changes stay there")
        if self.leaf is not None and campus not in self.leaf.parents:
            raise PeerRejected(f"leaf {self.leaf.name} hangs from {', '.join(self.leaf.parents)}"
                               f", not from {campus}; add {campus} to its parents")
        if hello.protocol_version != PROTOCOL_VERSION:
            raise FrameRefused(
                "bad_hello",
                f"sender speaks protocol {hello.protocol_version}, this node {PROTOCOL_VERSION}; "
                f"run the same ringsync version on every campus"
            )
        if hello.tables:
            check_hello_tables(hello.tables)
            compare(campus, self.shapes, hello.campus, shapes_from_pb(hello.tables))
        if not state.initialized.is_set():
            raise NotReady(
                f"campus {campus} is joining the ring ({state.join.state} from "
                f"{state.join.donor or 'a donor'}); it takes replication once its copy is done"
            )
        self.peer = hello.campus
        log.info("replication stream from %s opened", self.peer)
        # It is back: a sender waiting out its backoff to reach it dials now.
        state.peer_back(self.peer, "its Hello")
        self.res.peer_returned.notify()
        return rpb.ReplicateResponse(
            welcome=rpb.Welcome(campus=campus, journal=rpb.Vector(seqs=self.res.journal.vector()))
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
        return self.res.journal.append_remote(self.parse(batch))

    async def accept(self, request: rpb.ReplicateRequest) -> rpb.ReplicateResponse:
        if request.WhichOneof("msg") != "batch":
            raise FrameRefused("malformed", "expected Batch after Hello")
        batch = request.batch
        stored = await self.res.in_journal(self._journal, batch)
        if stored:
            self.res.journal_changed.notify()
        return self.ack(batch.batch_id)

    def ack(self, batch_id: int = 0) -> rpb.ReplicateResponse:
        journal = self.res.journal.vector()
        known = {c: rpb.Vector(seqs=v) for c, v in self.state.known_snapshot(journal).items()}
        return rpb.ReplicateResponse(
            ack=rpb.Ack(
                batch_id=batch_id,
                journal=rpb.Vector(seqs=journal),
                applied=rpb.Vector(seqs=self.state.applied_vector(journal)),
                known=known,
            )
        )
