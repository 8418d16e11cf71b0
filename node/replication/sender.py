"""Ring sender: stream journal frames to the ring successor, healing around it.

One sender per node. It dials the first campus after itself in ring order
(a leaf: its parent, and sends only its own transactions; node.leaf);
if that campus stays unreachable for ``heal_after_seconds`` it dials the
next one, and so on, so the ring heals around a dead campus. A probe keeps
trying the skipped campuses and the sender returns to the successor as soon
as it answers.

After a failed attempt the sender waits out a growing backoff (``Redial``),
but a campus that is back ends the wait at once: its Hello reaching this
node's receiver, or the probe (which also tries the target while the sender
waits) finding it serving. Before each attempt a channel stuck in gRPC's own
reconnect backoff is replaced, so our backoff alone paces the redials.

On each connection the receiver first says which transactions it holds
(its journal vector); the sender walks its journal from the first frame the
receiver lacks and sends batches of frames, keeping at most ``window``
batches unacknowledged. Each Ack carries the receiver's journal and applied
vectors (used for lag and flow control) and what it knows of every other
campus (used for journal pruning).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable

import grpc

from node.codec import shapes_to_pb
from node.replication import PROTOCOL_VERSION
from node.replication.resources import NodeResources
from node.replication.state import LinkState, Redial, ReplicationState
from node.replication.vectors import Vector
from ringsync.client import Credentials, describe_rpc_error
from ringsync.config import NodeConfig
from ringsync.errors import JournalError
from ringsync.v1 import replication_pb2 as rpb
from ringsync.v1 import replication_pb2_grpc

log = logging.getLogger(__name__)

WELCOME_TIMEOUT_SECONDS = 5.0
# No Ack or heartbeat for this long means the link is dead.
SILENCE_TIMEOUT_SECONDS = 6.0
IDLE_WAIT_SECONDS = 0.5


class LinkLost(Exception):
    pass


class RingSender:
    """The sending loop: reads the journal through ``res``, keeps the links and
    what it learns from acknowledgements in ``state``."""

    def __init__(self, config: NodeConfig, res: NodeResources, state: ReplicationState,
                 credentials: Credentials) -> None:
        self.config, self.res, self.state = config, res, state
        self.campus = config.campus
        self.credentials = credentials
        self.tuning = config.replication
        leaf = config.leaf
        # A leaf sends up only its own writes, to its parent (standby parents
        # in turn, as a ring member heals around a dead successor).
        self.only_origin = leaf.name if leaf is not None else None
        self.successors = (leaf.parents if leaf is not None
                           else config.cluster.successors(config.campus))
        for i, peer in enumerate(self.successors):
            state.links[peer] = LinkState(to=peer, successor=(i == 0))
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._made_with: dict[str, int] = {}  # peer -> the credentials' generation
        self._switch = asyncio.Event()
        self.target: str | None = None
        self.redial = Redial(self.tuning.reconnect_min_seconds,
                             self.tuning.reconnect_max_seconds)
        self._waiting = False  # in the wait before redialling self.target
        self._took_hold = False  # the current attempt's stream was acknowledged
        # Campus -> the down_since of the outage its SERVING answer was reported for.
        self._probe_reported: dict[str, float] = {}
        self._dialled: dict[str, float] = {}  # campus -> when it was last dialled

    def _channel(self, peer: str) -> grpc.aio.Channel:
        channel = self._channels.get(peer)
        if channel is None:
            # gRPC's own reconnect backoff grows to two minutes while a peer is
            # down; keep it within ours, so a campus back up is found soon.
            # (grpc.min_reconnect_backoff_ms is left alone: gRPC uses it as
            # the connect timeout, which a slow WAN link needs.) Its own pool
            # of subchannels: a channel made to replace one stuck in that
            # backoff must not inherit the old one's subchannel (gRPC shares
            # subchannels between channels of the same address and options).
            opts = [
                ("grpc.use_local_subchannel_pool", 1),
                ("grpc.max_send_message_length", self.tuning.max_message_bytes),
                ("grpc.max_receive_message_length", self.tuning.max_message_bytes),
                ("grpc.initial_reconnect_backoff_ms",
                 int(self.tuning.reconnect_min_seconds * 1000)),
                ("grpc.max_reconnect_backoff_ms", int(self.tuning.reconnect_max_seconds * 1000)),
            ]
            address = self.config.peer_address(peer)
            channel = self.credentials.channel(address, peer, opts)
            self._channels[peer] = channel
            self._made_with[peer] = self.credentials.generation
        return channel

    async def _renew_channel(self, peer: str, woken: bool = False) -> None:
        """Replace the channel to ``peer`` if it sits in gRPC's reconnect
        backoff (TRANSIENT_FAILURE) or, after a sign that the peer is back,
        in a connection attempt begun before it was (CONNECTING), or if this
        node's certificate was renewed since it was made (its TLS connection
        still presents the old one)."""
        channel = self._channels.get(peer)
        if channel is None:
            return
        stuck = {grpc.ChannelConnectivity.TRANSIENT_FAILURE}
        if woken:
            stuck.add(grpc.ChannelConnectivity.CONNECTING)
        self.credentials.refresh()
        renewed = self._made_with.get(peer) != self.credentials.generation
        if renewed or channel.get_state(try_to_connect=False) in stuck:
            del self._channels[peer]  # before the await: nobody picks up the closing one
            await channel.close()

    def choose_target(self, now: float) -> str:
        """The first campus in ring order that is up or not yet given up on;
        when every one is given up on, each in turn (the one dialled longest
        ago). Always the successor then would never find a campus further on
        that is back: a campus cut off from the ring while its successor
        died would wait for that successor, not resume with the next one."""
        for peer in self.successors:
            down = self.state.links[peer].down_since
            if down is None or now - down < self.tuning.heal_after_seconds:
                return peer
        return min(self.successors, key=lambda peer: self._dialled.get(peer, -math.inf))

    async def run(self) -> None:
        probe = asyncio.create_task(self._probe_loop(), name="ring-probe")
        redial = self.redial
        woken: str | None = None  # a campus that is back: dial it next
        try:
            while True:
                target = woken or self.choose_target(time.monotonic())
                self.target = target
                self._dialled[target] = time.monotonic()
                link = self.state.links[target]
                self._switch.clear()
                await self._renew_channel(target, woken=woken is not None)
                woken = None
                redial.attempt(self.state.returns)
                self._took_hold = streamed = False
                try:
                    streamed = await self._stream(target, link)
                except asyncio.CancelledError:
                    raise
                except grpc.aio.AioRpcError as e:
                    self._mark_down(link, describe_rpc_error(e))
                except (LinkLost, JournalError) as e:
                    self._mark_down(link, str(e))
                except Exception as e:
                    log.exception("link to %s failed unexpectedly", target)
                    self._mark_down(link, f"{type(e).__name__}: {e}")
                if streamed:
                    redial.streamed()
                    continue
                back = await self._wait_to_redial(redial.failed(self._took_hold), target)
                if back is not None:
                    woken, sign = back
                    log.info("%s is back (%s); reconnecting now", woken, sign)
        finally:
            probe.cancel()
            channels, self._channels = list(self._channels.values()), {}
            for channel in channels:
                await channel.close()

    async def _wait_to_redial(self, delay: float, target: str) -> tuple[str, str] | None:
        """Wait ``delay`` seconds, or until ``target`` or a campus before it in
        the ring is back: then that campus and the sign (see ``Redial``)."""
        wanted = self.successors[: self.successors.index(target) + 1]
        deadline = time.monotonic() + delay
        self._waiting = True
        try:
            while True:
                ticket = self.res.peer_returned.ticket()
                back = self.redial.wake_for(self.state.returns, wanted)
                if back is not None:
                    return back
                left = deadline - time.monotonic()
                if left <= 0:
                    self.redial.ran_out()
                    return None
                await self.res.peer_returned.wait(ticket, left)
        finally:
            self._waiting = False

    def _peer_back(self, peer: str, sign: str) -> None:
        self.state.peer_back(peer, sign)
        self.res.peer_returned.notify()

    def _mark_down(self, link: LinkState, error: str) -> None:
        if link.down_since is None:
            link.down_since = time.monotonic()
            log.warning("link %s -> %s down: %s", self.campus, link.to, error)
        link.state = "down"
        link.error = error

    async def _probe_loop(self) -> None:
        """Retry skipped campuses; switch back as soon as a better one answers.
        While the sender waits to redial its target, probe the target too: its
        answering SERVING is a sign it is back (reported once per outage)."""
        while True:
            await asyncio.sleep(self.tuning.probe_interval_seconds)
            current = self.target
            for peer in self.successors:
                if peer == current and not self._waiting:
                    break  # streaming or dialling it: only campuses ahead matter
                link = self.state.links[peer]
                if link.down_since is None:
                    continue
                serving = await self._probe(peer)
                if peer == current:
                    down_since = link.down_since
                    if (serving and self._waiting and down_since is not None
                            and self._probe_reported.get(peer) != down_since):
                        self._probe_reported[peer] = down_since  # once per outage
                        self._peer_back(peer, "its health check answers SERVING")
                    break
                if serving:
                    log.info("%s answers again; returning the ring to it", peer)
                    link.down_since = None
                    self._switch.set()
                    self._peer_back(peer, "its health check answers SERVING")
                    break

    async def _probe(self, peer: str) -> bool:
        """Does ``peer`` answer that it takes replication? (one cheap Health Check)"""
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        await self._renew_channel(peer)
        try:
            stub = health_pb2_grpc.HealthStub(self._channel(peer))
            reply = await stub.Check(
                health_pb2.HealthCheckRequest(service="ringsync.v1.Replication"),
                timeout=1.0,
            )
        except grpc.aio.AioRpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    async def _stream(self, target: str, link: LinkState) -> bool:
        res, state = self.res, self.state
        link.state = "connecting"
        stub = replication_pb2_grpc.ReplicationStub(self._channel(target))
        call = stub.Replicate()
        try:
            await call.write(
                rpb.ReplicateRequest(
                    hello=rpb.Hello(
                        campus=self.campus,
                        cluster=self.config.cluster.name,
                        protocol_version=PROTOCOL_VERSION,
                        tables=shapes_to_pb(res.engine.shapes().values()),
                    )
                )
            )
            try:  # a link that takes the connection and carries nothing (a cut, a proxy)
                first = await asyncio.wait_for(call.read(), WELCOME_TIMEOUT_SECONDS)
            except TimeoutError:
                raise LinkLost(f"no Welcome from {target} within "
                               f"{WELCOME_TIMEOUT_SECONDS:.0f}s") from None
            if first is grpc.aio.EOF or first.WhichOneof("msg") != "welcome":
                raise LinkLost(f"{target} did not answer Hello with Welcome")
            peer_journal = dict(first.welcome.journal.seqs)
            link.peer_journal = peer_journal
            state.learn(target, peer_journal)
            res.acks_changed.notify()
            cursor = await res.in_journal(res.journal.start_pos, peer_journal)
            link.down_since = None
            link.state = "streaming" if link.successor else "healing"
            link.error = ""
            log.info("streaming %s -> %s from journal position %d", self.campus, target, cursor)
            await self._pump(call, target, link, cursor, peer_journal)
            return True
        finally:
            call.cancel()
            if link.state in ("streaming", "healing"):
                link.state = "idle"

    async def _pump(
        self, call: grpc.aio.StreamStreamCall, target: str, link: LinkState,
        cursor: int, peer_journal: Vector,
    ) -> None:
        res, state = self.res, self.state
        in_flight: deque[tuple[int, int, int]] = deque()  # (batch_id, txns, rows)
        window_open = asyncio.Event()
        window_open.set()
        batch_id = 0

        async def read_acks() -> None:
            while True:
                try:
                    resp = await asyncio.wait_for(call.read(), SILENCE_TIMEOUT_SECONDS)
                except TimeoutError:
                    raise LinkLost(f"no acknowledgement from {target} for "
                                   f"{SILENCE_TIMEOUT_SECONDS:.0f}s") from None
                if resp is grpc.aio.EOF:
                    raise LinkLost(f"{target} closed the stream")
                ack = resp.ack
                self._took_hold = True
                link.peer_journal = dict(ack.journal.seqs)
                link.peer_applied = dict(ack.applied.seqs)
                link.last_ack = time.time()
                state.learn(target, link.peer_journal)
                for campus, vector in ack.known.items():
                    state.learn(campus, dict(vector.seqs))
                res.acks_changed.notify()
                while ack.batch_id and in_flight and in_flight[0][0] <= ack.batch_id:
                    _, txns, rows = in_flight.popleft()
                    link.txns.add(txns)
                    link.rows.add(rows)
                if len(in_flight) < self.tuning.window:
                    window_open.set()

        reader = asyncio.create_task(read_acks(), name=f"acks-from-{target}")
        try:
            while True:
                if self._switch.is_set():
                    log.info("leaving %s for a campus earlier in the ring", target)
                    return
                if reader.done():
                    reader.result()  # raises the reader's error
                    return
                if len(in_flight) >= self.tuning.window:
                    window_open.clear()
                    await self._wait_any(window_open.wait(), reader)
                    continue
                ticket = res.journal_changed.ticket()
                entries = await res.in_journal(
                    res.journal.entries_after, cursor, self.tuning.batch_max_frames,
                    self.tuning.batch_max_bytes,
                )
                if not entries:
                    await self._wait_any(res.journal_changed.wait(ticket, IDLE_WAIT_SECONDS),
                                         reader)
                    continue
                cursor = entries[-1].pos
                only = self.only_origin
                sent = [
                    e for e in entries
                    if e.origin != target and e.seq > peer_journal.get(e.origin, 0)
                    and (only is None or e.origin == only)
                ]
                if not sent:
                    continue
                batch_id += 1
                frames = [e.body for e in sent]
                rows = sum(e.nchanges for e in sent)
                txns = sum(1 for e in sent if e.final)
                in_flight.append((batch_id, txns, rows))
                await call.write(
                    rpb.ReplicateRequest(batch=rpb.Batch(batch_id=batch_id, frames=frames))
                )
        finally:
            reader.cancel()

    async def _wait_any(self, aw: Awaitable[object], reader: asyncio.Task[None]) -> None:
        waiter = asyncio.ensure_future(aw)
        switch = asyncio.ensure_future(self._switch.wait())
        try:
            await asyncio.wait({waiter, reader, switch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            switch.cancel()
