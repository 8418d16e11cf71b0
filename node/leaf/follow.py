"""The leaf's side of its Follow stream: the ring's changes, as its route selects them.

A leaf dials its parent (it may sit behind NAT or a weak link: nobody dials
it), says what its journal holds, and journals what the parent sends, after
the same checks a ring member makes of a peer's frames
(node.replication.framecheck: every value against the local column it goes
to, origins against the cluster file). Each batch is acknowledged once
durably journaled; the applier applies it like any foreign transaction.

When the parent stays unreachable for ``heal_after_seconds`` the leaf
follows its next standby parent, and returns to the first as soon as it
answers again (each attempt starts with the first parent not given up on).
The leaf's own writes go up separately, through the ordinary sender aimed at
the same parents (node.replication.sender).

A leaf whose route changed since it copied its subset, or that a parent
refuses because it lacks what the parent no longer keeps (past its
retention: FAILED_PRECONDITION), copies its subset again before it follows
(node.leaf.reseed).
"""

from __future__ import annotations

import asyncio
import logging
import time

import grpc
from google.protobuf.message import DecodeError

from node.codec import shapes_to_pb
from node.leaf.reseed import Reseeder
from node.leaf.state import RESEED_MARK, LeafLink, route_change
from node.replication import PROTOCOL_VERSION
from node.replication.framecheck import FrameChecker, FrameRefused, is_ring_origin
from node.replication.resources import NodeResources
from node.replication.state import Redial, ReplicationState
from ringsync.client import Credentials, describe_rpc_error
from ringsync.config import NodeConfig
from ringsync.errors import ProtocolError, RingsyncError
from ringsync.v1 import replication_pb2 as rpb
from ringsync.v1 import replication_pb2_grpc
from ringsync.v1 import values_pb2 as pb

log = logging.getLogger(__name__)

WELCOME_TIMEOUT_SECONDS = 5.0
# The parent sends a heartbeat every half second while idle: this long
# without anything means the link is dead.
SILENCE_TIMEOUT_SECONDS = 6.0


class LinkLost(Exception):
    pass


class LeafFollower:
    """Follows one parent at a time; journals through ``res``; shows the link
    in ``state.leaves[campus]``."""

    def __init__(self, config: NodeConfig, res: NodeResources, state: ReplicationState,
                 credentials: Credentials) -> None:
        leaf = config.leaf
        if leaf is None:
            raise ValueError(f"{config.campus} is not a leaf")
        self.config, self.res, self.state = config, res, state
        self.campus, self.parents = config.campus, leaf.parents
        self.route = leaf.fingerprint
        self.credentials = credentials
        self.tuning = config.replication
        cluster = config.cluster
        self.checker = FrameChecker(
            self.campus, res.engine.shapes(),
            lambda origin: origin != self.campus and is_ring_origin(cluster, origin))
        self.down_since: dict[str, float] = {}
        self.reported: dict[str, str] = {}  # parent -> the failure last logged for it
        self.link = state.leaves.setdefault(self.campus, LeafLink(self.campus, self.parents[0]))
        self.redial = Redial(self.tuning.reconnect_min_seconds, self.tuning.reconnect_max_seconds)
        self.reseeder = Reseeder(config, res, state, credentials, self.link)

    def choose_parent(self, now: float) -> str:
        """The first parent that is up or not yet given up on."""
        for parent in self.parents:
            down = self.down_since.get(parent)
            if down is None or now - down < self.tuning.heal_after_seconds:
                return parent
        # All given up on: start again from the first, and forget the outages.
        self.down_since.clear()
        return self.parents[0]

    async def run(self) -> None:
        leaf = self.config.leaf
        assert leaf is not None
        channels: dict[str, grpc.aio.Channel] = {}
        made_with: dict[str, int] = {}  # parent -> the credentials' generation
        changed = await asyncio.to_thread(route_change, self.config.data_dir, leaf)
        reseed_why = changed  # what it holds is not what the route selects: copy again
        try:
            while True:
                parent = self.choose_parent(time.monotonic())
                self.credentials.refresh()  # a renewed certificate: a new connection
                if parent in channels and made_with[parent] != self.credentials.generation:
                    await channels.pop(parent).close()
                channel = channels.get(parent)
                if channel is None:
                    opts = [("grpc.max_receive_message_length", self.tuning.max_message_bytes),
                            ("grpc.max_send_message_length", self.tuning.max_message_bytes),
                            ("grpc.use_local_subchannel_pool", 1)]
                    channel = channels[parent] = self.credentials.channel(
                        self.config.peer_address(parent), parent, opts)
                    made_with[parent] = self.credentials.generation
                self.link.parent = parent
                took_hold = False
                try:
                    if reseed_why:
                        self.link.blocked, self.link.error = True, reseed_why
                        await self.reseeder.run(parent, reseed_why)
                        reseed_why, self.link.blocked = "", False
                    took_hold = await self._follow(parent, channel)
                    error = f"{parent} ended the stream"
                except asyncio.CancelledError:
                    raise
                except grpc.aio.AioRpcError as e:
                    error = describe_rpc_error(e)
                    if (e.code() == grpc.StatusCode.FAILED_PRECONDITION  # past its retention
                            and RESEED_MARK in (e.details() or "")):  # (not a schema mismatch)
                        reseed_why = error
                    if e.code() == grpc.StatusCode.UNAVAILABLE:  # redial on a fresh channel
                        await channels.pop(parent).close()
                except (LinkLost, RingsyncError) as e:
                    error = str(e)
                except Exception as e:  # a bug: logged with its traceback; the leaf follows on
                    log.exception("following %s failed unexpectedly", parent)
                    error = f"{type(e).__name__}: {e}"
                self.link.online, self.link.error = False, error
                if took_hold:
                    self.down_since.pop(parent, None)
                    self.reported.pop(parent, None)
                if self.reported.get(parent) != error:  # a new failure, not each attempt
                    self.reported[parent] = error
                    log.warning("following %s stopped: %s", parent, error)
                self.down_since.setdefault(parent, time.monotonic())
                await asyncio.sleep(self.redial.failed(took_hold))
        finally:
            for channel in channels.values():
                await channel.close()

    async def _follow(self, parent: str, channel: grpc.aio.Channel) -> bool:
        """One stream; True once the parent sent something after Welcome."""
        res = self.res
        stub = replication_pb2_grpc.ReplicationStub(channel)
        call = stub.Follow()
        took_hold = False
        try:
            await call.write(rpb.FollowRequest(hello=rpb.FollowHello(
                campus=self.campus, cluster=self.config.cluster.name,
                protocol_version=PROTOCOL_VERSION,
                tables=shapes_to_pb(res.engine.shapes().values()),
                journal=rpb.Vector(seqs=res.journal.vector()), route=self.route)))
            try:  # a link that takes the connection and carries nothing (a cut, a proxy)
                first = await asyncio.wait_for(call.read(), WELCOME_TIMEOUT_SECONDS)
            except TimeoutError:
                raise LinkLost(f"no Welcome from {parent} within "
                               f"{WELCOME_TIMEOUT_SECONDS:.0f}s") from None
            if first is grpc.aio.EOF or first.WhichOneof("msg") != "welcome":
                raise LinkLost(f"{parent} did not answer FollowHello with Welcome")
            self.state.learn(parent, dict(first.welcome.journal.seqs))
            self.link.online, self.link.error = True, ""
            self.link.connected_at = time.time()
            log.info("following %s", parent)
            while True:
                try:
                    msg = await asyncio.wait_for(call.read(), SILENCE_TIMEOUT_SECONDS)
                except TimeoutError:
                    raise LinkLost(f"nothing from {parent} for "
                                   f"{SILENCE_TIMEOUT_SECONDS:.0f}s") from None
                if msg is grpc.aio.EOF:
                    return took_hold
                if msg.WhichOneof("msg") != "batch":
                    raise FrameRefused("malformed", f"{parent} sent {msg.WhichOneof('msg')} "
                                                    f"inside a Follow stream")
                if not took_hold:
                    took_hold = True
                    self.redial.streamed()
                batch = msg.batch
                if batch.frames:
                    stored = await res.in_journal(self._journal, batch, parent)
                    if stored:
                        res.journal_changed.notify()
                    await call.write(self._ack(batch.batch_id))
                elif batch.batch_id == 0:
                    await call.write(self._ack(0))
        except ProtocolError as e:
            self.state.refused.record(parent, e)
            raise
        finally:
            call.cancel()

    def _journal(self, batch: rpb.Batch, parent: str) -> int:
        """Journal thread: check every frame whole, keep those not held yet."""
        frames = []
        for i, raw in enumerate(batch.frames):
            try:
                frame = pb.TxnFrame.FromString(raw)
            except DecodeError:
                raise FrameRefused("undecodable", f"batch {batch.batch_id} from {parent} holds "
                                   f"an undecodable frame (frame {i}, {len(raw)} bytes)"
                                   ) from None
            self.checker.check(frame, parent)
            frames.append((frame, raw))
        return self.res.journal.append_remote(self.res.journal.unseen(frames))

    def _ack(self, batch_id: int) -> rpb.FollowRequest:
        journal = self.res.journal.vector()
        self.link.seen(journal, self.state.applied_vector(journal))
        return rpb.FollowRequest(ack=rpb.Ack(
            batch_id=batch_id, journal=rpb.Vector(seqs=journal),
            applied=rpb.Vector(seqs=self.link.applied)))
