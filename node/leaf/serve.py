"""The parent's side of a leaf's Follow stream (node.leaf.follow is the other).

A leaf dials one of its parents and says, in its FollowHello, what its
journal holds. The parent checks it (certificate, cluster, protocol, that it
is a leaf of this campus, its tables against ours), answers with Welcome,
then walks its own journal from the first frame the leaf lacks and sends
what the leaf's route selects (node.leaf.route): every other origin's
frames, never the leaf's own. At most ``window`` batches go unacknowledged;
each Ack says what the leaf has journaled and applied, which status shows as
its lag and the pruner keeps frames for (within its retention). An idle
stream carries a heartbeat (batch_id 0, no frames) every HEARTBEAT_SECONDS.
A leaf that lacks a frame this journal no longer holds is refused with
FAILED_PRECONDITION: it must be re-seeded by a new initial load.

A route with [leaf.follows] judges a child row by its parent row as this
campus's database holds it (node.leaf.parents), so its frames are shaped on
the engine's thread and sent only once this campus has applied them (the
database is then never behind what it judges); a parent row moving into
or out of the subset ends the stream with the same FAILED_PRECONDITION:
the leaf copies its subset again, its rows' children with it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from google.protobuf.message import DecodeError

from node.codec import escape_peer_text, shapes_from_pb
from node.leaf.parents import ParentMoved
from node.leaf.route import LeafRoute
from node.leaf.state import RESEED_MARK, LeafLink
from node.replication import PROTOCOL_VERSION
from node.replication.framecheck import FrameRefused
from node.replication.journal_reads import Entry
from node.replication.parts import NodeParts
from node.schema import compare
from ringsync.errors import JournalError, NotReady, PeerRejected, ReseedNeeded
from ringsync.v1 import replication_pb2 as rpb
from ringsync.v1 import values_pb2 as pb

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 0.5
SILENCE_TIMEOUT_SECONDS = 6.0


def decode(data: bytes) -> rpb.FollowRequest:
    try:
        return rpb.FollowRequest.FromString(data)
    except DecodeError:
        raise FrameRefused("undecodable", f"a message of {len(data)} bytes is not a "
                           f"FollowRequest (undecodable)") from None


class LeafFeed:
    """One leaf's stream at this parent."""

    def __init__(self, node: NodeParts, peer_name: str) -> None:
        self.config, self.res, self.state = node.config, node.res, node.state
        self.campus = self.config.campus
        self.peer_name = peer_name
        self.link: LeafLink | None = None
        self.route: LeafRoute | None = None
        self.vector: dict[str, int] = {}

    def welcome(self, request: rpb.FollowRequest) -> rpb.FollowResponse:
        if request.WhichOneof("msg") != "hello":
            raise FrameRefused("malformed", "the first message of a Follow stream must be "
                                            "FollowHello")
        hello = request.hello
        name = escape_peer_text(hello.campus, 60)
        if hello.campus != self.peer_name:
            raise PeerRejected(f"FollowHello says campus '{name}' but the certificate is for "
                               f"'{escape_peer_text(self.peer_name, 60)}'")
        if hello.cluster != self.config.cluster.name:
            raise PeerRejected(f"leaf '{name}' belongs to cluster "
                               f"'{escape_peer_text(hello.cluster, 60)}', this node to "
                               f"{self.config.cluster.name!r}")
        leaf = self.config.cluster.leaf(hello.campus)
        if leaf is None:
            raise PeerRejected(f"'{name}' is not a [[leaf]] of {self.config.cluster.path}; "
                               f"ring members replicate with Replicate, not Follow")
        if self.campus not in leaf.parents:
            raise PeerRejected(f"leaf {leaf.name} hangs from {', '.join(leaf.parents)}, not "
                               f"from {self.campus}; add {self.campus} to its parents")
        if hello.route != leaf.fingerprint:
            raise PeerRejected(f"leaf {leaf.name} follows route {escape_peer_text(hello.route, 20)}"
                               f" but {self.config.cluster.path} here says route "
                               f"{leaf.fingerprint}; make cluster.toml the same on the leaf and "
                               f"its parents")
        if hello.protocol_version != PROTOCOL_VERSION:
            raise FrameRefused("bad_hello", f"leaf {leaf.name} speaks protocol "
                               f"{hello.protocol_version}, this node {PROTOCOL_VERSION}; run "
                               f"the same ringsync version on every campus")
        if not self.state.initialized.is_set():
            raise NotReady(f"campus {self.campus} is joining the ring; its leaves follow it "
                           f"once its copy is done")
        self.route = LeafRoute(leaf, {t: s for t, s in self.res.engine.shapes().items()
                                      if t in leaf.tables})
        compare(self.campus, self.route.shapes, leaf.name, shapes_from_pb(hello.tables))
        self.vector = dict(hello.journal.seqs)
        link = self.state.leaves.get(leaf.name)
        if link is None or link.parent != self.campus:
            link = self.state.leaves[leaf.name] = LeafLink(leaf.name, self.campus)
        link.route = self.route.counters
        link.online, link.connected_at, link.error = True, time.time(), ""
        link.seen(dict(self.vector), link.applied)
        self.link = link
        self.state.learn(leaf.name, self.vector)
        log.info("leaf %s follows this campus from %s", leaf.name, self.vector)
        return rpb.FollowResponse(welcome=rpb.Welcome(
            campus=self.campus, journal=rpb.Vector(seqs=self.res.journal.vector())))

    def take_ack(self, request: rpb.FollowRequest) -> int:
        """Record an Ack from the leaf; the batch it acknowledges (0: none)."""
        if request.WhichOneof("msg") != "ack":
            raise FrameRefused("malformed", "a leaf sends only Acks after FollowHello")
        assert self.link is not None
        ack = request.ack
        self.link.seen(dict(ack.journal.seqs), dict(ack.applied.seqs))
        self.state.learn(self.link.name, self.link.journal)
        self.res.acks_changed.notify()
        return int(ack.batch_id)

    def shaped(self, entries: list[Entry], now: dt.datetime) -> list[bytes]:
        """The journal frames the leaf lacks, as its route makes them (worker
        thread: decoding and filtering is CPU work)."""
        route, leaf, vector = self.route, self.peer_name, self.vector
        assert route is not None
        out = []
        for e in entries:
            if e.origin == leaf or e.seq <= vector.get(e.origin, 0):
                continue
            if route.passes_whole:
                route.counters.rows_sent += e.nchanges
                out.append(e.body)
                continue
            frame = pb.TxnFrame.FromString(e.body)  # our journal's: checked when it came in
            shaped = route.frame(frame, now, self._lookup if route.links else None)
            out.append(e.body if shaped is frame else shaped.SerializeToString())
        return out

    def _lookup(self, table: str, key: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """A parent row as this campus's database holds it (engine thread)."""
        return self.res.engine.store.read_version(table, key)[0]

    def applied(self, entries: list[Entry]) -> list[Entry]:
        """The leading ``entries`` this campus's database holds (a route with
        [leaf.follows] sends no frame before its parent rows are here)."""
        assert self.route is not None
        if not self.route.links:
            return entries
        done, skip = self.state.applied, (self.campus, self.peer_name)
        for i, e in enumerate(entries):
            if e.origin not in skip and e.seq > done.get(e.origin, 0):
                return entries[:i]
        return entries


async def serve_follow(node: NodeParts, requests: AsyncIterator[bytes],
                       send: Callable[[rpb.FollowResponse], Awaitable[None]],
                       peer_name: str) -> LeafFeed:
    """Run one Follow stream until the leaf goes or the stream fails."""
    feed = LeafFeed(node, peer_name)
    first = await anext(requests, None)
    if first is None:
        return feed
    await send(feed.welcome(decode(first)))
    try:
        await _pump(node, feed, requests, send)
    finally:
        if feed.link is not None:
            feed.link.online = False
            log.info("leaf %s stopped following this campus", feed.link.name)
    return feed


async def _pump(node: NodeParts, feed: LeafFeed, requests: AsyncIterator[bytes],
                send: Callable[[rpb.FollowResponse], Awaitable[None]]) -> None:
    res, tuning = node.res, node.config.replication
    assert feed.link is not None
    leaf = feed.link.name
    try:
        cursor = await res.in_journal(res.journal.start_pos, feed.vector)
    except JournalError as e:  # pruned past it: beyond its retention
        raise ReseedNeeded(f"leaf {leaf} {RESEED_MARK}: {e}") from None
    assert feed.route is not None
    follows = bool(feed.route.links)  # judged against the database: on its thread
    shape = res.in_engine if follows else asyncio.to_thread
    unacked: list[int] = []
    window_open = asyncio.Event()
    window_open.set()

    async def read_acks() -> None:
        while True:
            try:
                data = await asyncio.wait_for(anext(requests, None), SILENCE_TIMEOUT_SECONDS)
            except TimeoutError:
                raise PeerRejected(f"leaf {leaf} sent no Ack for "
                                   f"{SILENCE_TIMEOUT_SECONDS:.0f}s") from None
            if data is None:
                return
            acked = feed.take_ack(decode(data))
            while unacked and acked and unacked[0] <= acked:
                unacked.pop(0)
            if len(unacked) < tuning.window:
                window_open.set()

    reader = asyncio.create_task(read_acks(), name=f"acks-from-leaf-{leaf}")
    batch_id = 0
    try:
        while not reader.done():
            if len(unacked) >= tuning.window:
                window_open.clear()
                await _first(reader, window_open.wait())
                continue
            ticket = res.journal_changed.ticket()
            applied = res.applied_changed.ticket()
            entries = feed.applied(await res.in_journal(
                res.journal.entries_after, cursor, tuning.batch_max_frames,
                tuning.batch_max_bytes))
            if not entries:
                changed = [res.journal_changed.wait(ticket, HEARTBEAT_SECONDS)]
                if follows:  # or a frame waiting for this campus's apply
                    changed.append(res.applied_changed.wait(applied, HEARTBEAT_SECONDS))
                await _first(reader, *changed)
                if not reader.done():
                    await send(rpb.FollowResponse(batch=rpb.Batch(batch_id=0)))
                continue
            cursor = entries[-1].pos
            try:
                frames = await shape(feed.shaped, entries, dt.datetime.now(dt.UTC))
            except ParentMoved as e:
                feed.link.cascades += 1
                feed.link.last_cascade = str(e)
                log.info("leaf %s: %s; it copies its subset again", leaf, e)
                raise ReseedNeeded(f"leaf {leaf} {RESEED_MARK}: {e}") from None
            if not frames:
                continue
            batch_id += 1
            unacked.append(batch_id)
            await send(rpb.FollowResponse(batch=rpb.Batch(batch_id=batch_id, frames=frames)))
        reader.result()
    finally:
        reader.cancel()


async def _first(reader: asyncio.Task[None], *aws: Awaitable[object]) -> None:
    """Until one of ``aws`` is done, or the leaf's Ack reader is."""
    waiters = [asyncio.ensure_future(aw) for aw in aws]
    try:
        await asyncio.wait({*waiters, reader}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
