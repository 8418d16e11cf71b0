"""Joining the ring: how a campus with a new journal gets its first data.

Until its journal is initialized a node replicates nothing: its receiver
refuses streams (the ring heals around it) and capture, apply, send and
prune wait. The joiner decides how to start:

* The database already records an applied vector (a copy committed just
  before a crash): adopt it.
* ``join.seed`` and no initialized campus answers: this campus's data starts
  the ring; adopt what the database holds.
* Otherwise ask a donor (``join.donor``, or the nearest initialized
  predecessor) for a snapshot. An empty database takes a full copy. One that
  already holds rows is compared table by table first (digests at the same
  snapshot): equal data is adopted as is; different data is refused with a
  report, unless ``join.on_mismatch`` says which side wins: "take-donor"
  replaces it with a copy, "keep-local" journals the difference from the
  donor's data to this campus's as this campus's own next transaction.

The copy is applied in one database transaction that also records the
snapshot's vector, so a crash leaves either nothing or the whole copy; the
journal then adopts that vector as its heads and the ring streams the rest.
A keep-local join adopts the vector and its difference in one journal
transaction first; the database records the vector right after (and again
at the next start if the node died in between).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import ExitStack
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from node.codec import check_frame, decode_changes, shapes_to_pb
from node.engines.base import ApplySession
from node.hlc import HybridClock
from node.leaf.state import record_route
from node.model import Change, Op, TableShape
from node.replication.batch import to_local_order
from node.replication.resources import NodeResources
from node.replication.state import ReplicationState
from node.replication.transient import until_answered
from node.replication.vectors import Vector
from ringsync.client import Credentials, describe_rpc_error
from ringsync.config import NodeConfig
from ringsync.errors import JoinRefused, ProtocolError, RingsyncError
from ringsync.v1 import control_pb2, control_pb2_grpc, replication_pb2_grpc
from ringsync.v1 import replication_pb2 as rpb
from ringsync.v1 import values_pb2 as pb

log = logging.getLogger(__name__)

RETRY_SECONDS = 1.0
STATUS_TIMEOUT_SECONDS = 2.0
IN_RING = "in-ring"


class _CopyAborted(Exception):
    pass


def mismatch_report(campus: str, donor: str, local: dict[str, tuple[int, str]],
                    theirs: dict[str, tuple[int, str]]) -> str:
    lines = [f"campus {campus} already holds data that differs from {donor}'s; refusing to "
             f"join so nothing is overwritten:",
             f"  {'table':<24} {'rows here':>10} {'rows at ' + donor:>16}  digests"]
    for table in sorted(set(local) | set(theirs)):
        (n_here, d_here), (n_there, d_there) = local.get(table, (0, "")), theirs.get(table, (0, ""))
        verdict = "equal" if d_here == d_there else f"{d_here[:10]} vs {d_there[:10]}  DIFFER"
        lines.append(f"  {table:<24} {n_here:>10} {n_there:>16}  {verdict}")
    lines.append(
        f"Choose which side wins in this node's config and start it again: "
        f"join.on_mismatch = \"take-donor\" replaces this campus's rows with {donor}'s; "
        f"join.on_mismatch = \"keep-local\" sends this campus's rows to every campus.")
    return "\n".join(lines)


class Joiner:
    """Initializes the journal (``res``), reporting progress in ``state.join``
    and setting ``state.initialized`` when the campus is in the ring."""

    def __init__(self, config: NodeConfig, res: NodeResources, state: ReplicationState,
                 clock: HybridClock, credentials: Credentials) -> None:
        self.config, self.res, self.state, self.clock = config, res, state, clock
        self.credentials = credentials
        self._channels: dict[str, grpc.aio.Channel] = {}

    def _channel(self, campus: str) -> grpc.aio.Channel:
        if campus not in self._channels:
            self._channels[campus] = self.credentials.channel(
                self.config.peer_address(campus), campus,
                [("grpc.max_receive_message_length",
                  self.config.replication.max_message_bytes)])
        return self._channels[campus]

    async def run(self) -> None:
        try:
            if not self.res.journal.initialized:
                await self._initialize()
                if self.config.leaf is not None:  # the route its subset was copied with
                    record_route(self.config.data_dir, self.config.leaf)
        finally:
            await self.close()
        await until_answered("recording the vector the journal adopted", self._record_adopted,
                             self._waiting)
        self.state.join.state, self.state.join.detail = IN_RING, ""
        self.state.initialized.set()

    async def _initialize(self) -> None:
        res, state = self.res, self.state
        applied = await until_answered(
            "reading the applied vector", lambda: res.in_engine(res.engine.target.applied_vector),
            self._waiting)
        if applied:
            log.info("the database already holds a copy at %s; initializing the journal", applied)
            await res.in_journal(res.journal.adopt, applied)
            return
        first_round = True
        while True:
            donor = await self._find_donor()
            if donor is None and self.config.join.seed and first_round:
                log.info("no initialized campus answers and join.seed is set: this campus's data "
                         "starts the ring")
                await res.in_journal(res.journal.adopt, {})
                return
            first_round = False
            if donor is None:
                await asyncio.sleep(RETRY_SECONDS)
                continue
            try:
                vector, local_changes = await self._join_from(donor)
            except JoinRefused:
                raise
            except (RingsyncError, grpc.aio.AioRpcError) as e:
                text = describe_rpc_error(e) if isinstance(e, grpc.aio.AioRpcError) else str(e)
                state.join.state, state.join.detail = "waiting", f"copy from {donor} failed: {text}"
                log.warning("initial load from %s failed, retrying: %s", donor, text)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            await res.in_journal(res.journal.adopt, vector, local_changes,
                                 dict(res.engine.shapes()), self.clock.now())
            log.info("joined the ring from %s at %s", donor, vector)
            return

    def _candidates(self) -> list[str]:
        config = self.config
        if config.join.donor:
            return [config.join.donor]
        if config.leaf is not None:  # a leaf copies its subset from a parent
            return list(config.leaf.parents)
        ring = config.cluster.ring
        i = ring.index(config.campus)
        return [ring[(i - k) % len(ring)] for k in range(1, len(ring))]  # nearest predecessor first

    async def _find_donor(self) -> str | None:
        state = self.state
        notes = []
        for campus in self._candidates():
            stub = control_pb2_grpc.ControlStub(self._channel(campus))
            try:
                status = await stub.GetStatus(control_pb2.StatusRequest(),
                                              timeout=STATUS_TIMEOUT_SECONDS)
            except grpc.aio.AioRpcError as e:
                notes.append(f"{campus} {describe_rpc_error(e)}")
                continue
            if status.join.state == IN_RING:
                return campus
            notes.append(f"{campus} is {status.join.state or 'not in the ring'}")
        state.join.state = "waiting"
        state.join.detail = "waiting for an initialized campus to copy from: " + "; ".join(notes)
        return None

    async def _open(self, donor: str, digests_only: bool
                    ) -> tuple[grpc.aio.UnaryStreamCall, rpb.SnapshotHeader]:
        res, state = self.res, self.state
        stub = replication_pb2_grpc.ReplicationStub(self._channel(donor))
        leaf = self.config.leaf
        call = stub.Snapshot(rpb.SnapshotRequest(
            campus=state.campus, tables=shapes_to_pb(res.engine.shapes().values()),
            digests_only=digests_only, route=leaf.fingerprint if leaf is not None else ""))
        first = await call.read()
        if first is grpc.aio.EOF or first.WhichOneof("part") != "header":
            raise ProtocolError(f"{donor} sent no snapshot header")
        return call, first.header

    async def _join_from(self, donor: str) -> tuple[Vector, list[list[Change]]]:
        """The vector to adopt, and changes to journal as this campus's own."""
        res, state = self.res, self.state
        state.join.donor = donor
        await res.in_journal(res.journal.discard_backlog)  # of an earlier, abandoned attempt
        counts = await res.in_engine(res.engine.inspect.row_counts)
        if not any(counts.values()):
            return await self._copy(donor, replace=False), []
        if self.config.leaf is not None:  # its rows cannot be compared with a route's view
            if self.config.join.on_mismatch == "take-donor":
                return await self._copy(donor, replace=True), []
            raise JoinRefused(
                f"leaf {state.campus} holds {sum(counts.values())} rows in its route's tables "
                f"but has no journal: a leaf starts on empty tables and copies its subset from "
                f"a parent; empty them, or set join.on_mismatch = \"take-donor\" in "
                f"{self.config.path} to replace them with the copy")
        state.join.state, state.join.detail = "comparing", f"{sum(counts.values())} rows here"
        call, header = await self._open(donor, digests_only=True)
        theirs = {}
        async for msg in _rest(call, _Backlog(res, donor)):
            if msg.WhichOneof("part") != "digest":
                raise ProtocolError(f"{donor} sent rows when digests were asked for")
            theirs[msg.digest.table] = (msg.digest.rows, msg.digest.sha256)
        local, _ = await res.in_engine(res.engine.inspect.checksums, list(res.engine.shapes()))
        vector = dict(header.vector.seqs)
        if local == theirs:
            log.info("data here equals %s's at %s: joining without a copy", donor, vector)
            return vector, []
        report = mismatch_report(state.campus, donor, local, theirs)
        policy = self.config.join.on_mismatch
        if policy == "take-donor":
            log.warning("%s\njoin.on_mismatch = take-donor: replacing this campus's rows", report)
            return await self._copy(donor, replace=True), []
        if policy == "keep-local":
            log.warning("%s\njoin.on_mismatch = keep-local: sending the difference to the ring",
                        report)
            return await self._difference(donor)
        state.join.state, state.join.detail = "refused", report
        raise JoinRefused(report)

    def _waiting(self, text: str) -> None:
        """Status while the database does not answer (node.replication.transient)."""
        self.state.join.detail = text

    async def _record_adopted(self) -> None:
        """Make the database record the vector the journal adopted (a keep-local
        join adopts in the journal first; this also repairs a crash in between)."""
        res, state = self.res, self.state
        adopted = await res.in_journal(res.journal.adopted)
        applied = await res.in_engine(res.engine.target.applied_vector)
        behind = {o: s for o, s in adopted.items()
                  if o != state.campus and s > applied.get(o, 0)}
        if not behind:
            return

        def write() -> None:
            with res.engine.target.apply_session() as session:
                for origin, seq in behind.items():
                    session.advance(origin, seq)
        await res.in_engine(write)

    async def _difference(self, donor: str) -> tuple[Vector, list[list[Change]]]:
        """Changes that turn the donor's snapshot into this campus's data.

        Journaled as this campus's next transaction, they reach every campus,
        so this campus's rows win. Holds the donor's rows in memory.
        """
        res, state = self.res, self.state
        progress = state.join
        call, header = await self._open(donor, digests_only=False)
        progress.state, progress.detail = "copying", "reading the donor's rows to compare"
        progress.rows_copied, progress.rows_total = 0, sum(header.row_counts.values())
        progress.copy_started = time.monotonic()
        local = res.engine.shapes()
        theirs: dict[str, dict[tuple[Any, ...], tuple[Any, ...]]] = {t: {} for t in local}
        async for changes in _copied_rows(call, _Backlog(res, donor), local):
            for c in changes:
                assert c.new is not None  # _copied_rows lets only inserts through
                theirs[c.table][local[c.table].key_of(c.new)] = c.new
            progress.rows_copied += len(changes)
            progress.rows.add(len(changes))
        out: list[Change] = []
        for table, shape in local.items():
            other = theirs[table]
            for row in await res.in_engine(res.engine.inspect.rows, table):
                old = other.pop(shape.key_of(row), None)
                if old is None:
                    out.append(Change(table, Op.INSERT, new=row))
                elif old != row:
                    out.append(Change(table, Op.UPDATE, new=row, old=old))
            out.extend(Change(table, Op.DELETE, old=old) for old in other.values())
        size = self.config.replication.frame_max_changes
        log.info("keep-local: %d changes make %s's data into this campus's", len(out), donor)
        return dict(header.vector.seqs), [out[i:i + size] for i in range(0, len(out), size)]

    async def close(self) -> None:
        """Close the channels this joiner opened."""
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await channel.close()

    async def copy_again(self, donor: str, check_own: bool = True) -> Vector:
        """A leaf's re-seed (node.leaf.reseed): its route's tables replaced by a
        new copy of its subset, in one database transaction that also sets the
        applied vector to the copy's; its own origin's entry is left alone.
        Refused (CopyBehind, nothing changed) if the copy lacks a transaction of
        this leaf that its journal holds (``check_own``: a leaf that sends its
        writes up): its own writes must go up first."""
        return await self._copy(donor, replace=True, reseed=True, check_own=check_own)

    async def _copy(self, donor: str, replace: bool, reseed: bool = False,
                    check_own: bool = False) -> Vector:
        res, state = self.res, self.state
        progress = state.join
        call, header = await self._open(donor, digests_only=False)
        progress.state, progress.detail = "copying", ""
        progress.rows_copied, progress.rows_total = 0, sum(header.row_counts.values())
        progress.copy_started = time.monotonic()
        log.info("copying %d rows from %s at %s", progress.rows_total, donor,
                 dict(header.vector.seqs))
        local = res.engine.shapes()
        stack = ExitStack()
        session: ApplySession = await res.in_engine(stack.enter_context,
                                                    res.engine.target.apply_session())
        committed = False
        try:
            if replace:
                for table in local:
                    await res.in_engine(session.clear, table)
            async for changes in _copied_rows(call, _Backlog(res, donor), local):
                await res.in_engine(session.apply, changes)
                if changes:
                    progress.table = changes[-1].table
                progress.rows_copied += len(changes)
                progress.rows.add(len(changes))
            await res.in_engine(session.mark_base_versions)
            vector = dict(header.vector.seqs)
            own = res.journal.vector().get(state.campus, 0)
            if check_own and vector.get(state.campus, 0) < own:
                raise CopyBehind(f"{donor}'s copy holds {state.campus}'s transactions up to "
                                 f"{vector.get(state.campus, 0)}, its journal up to {own}")
            for origin, seq in vector.items():
                if seq > 0 and not (reseed and origin == state.campus):
                    await res.in_engine(session.advance, origin, seq)
            await res.in_engine(stack.close)  # commit
            committed = True
        finally:
            if not committed:
                await res.in_engine(_roll_back, stack)
        log.info("copied %d rows from %s", progress.rows_copied, donor)
        return vector


class CopyBehind(RingsyncError):
    """A leaf's new copy lacks some of its own transactions: upload, then copy again."""


class _Backlog:
    """Stores the donor's journal frames that arrive after the copy's rows."""

    def __init__(self, res: NodeResources, donor: str) -> None:
        self.res, self.donor = res, donor
        self.pending: list[tuple[pb.TxnFrame, bytes]] = []

    async def add(self, body: bytes) -> None:
        try:
            frame = pb.TxnFrame.FromString(body)
        except DecodeError as e:
            raise ProtocolError(f"{self.donor} sent an undecodable journal frame") from e
        check_frame(frame, self.res.engine.shapes())
        self.pending.append((frame, body))
        if len(self.pending) >= 256:
            await self.flush()

    async def flush(self) -> None:
        if self.pending:
            await self.res.in_journal(self.res.journal.add_backlog, self.pending)
            self.pending = []


async def _rest(call: grpc.aio.UnaryStreamCall, backlog: _Backlog
                ) -> AsyncIterator[rpb.SnapshotChunk]:
    """The messages after the header (the header was taken with ``read``);
    journal frames go to ``backlog``, stored by the time this ends."""
    while (msg := await call.read()) is not grpc.aio.EOF:
        if msg.WhichOneof("part") == "journal_frame":
            await backlog.add(msg.journal_frame)
        else:
            yield msg
    await backlog.flush()


async def _copied_rows(call: grpc.aio.UnaryStreamCall, backlog: _Backlog,
                       local: Mapping[str, TableShape]) -> AsyncIterator[list[Change]]:
    """The copy's rows, frame by frame, validated and in local column order."""
    donor = backlog.donor
    async for msg in _rest(call, backlog):
        if msg.WhichOneof("part") != "frame":
            raise ProtocolError(f"{donor} sent {msg.WhichOneof('part')} inside a copy")
        try:
            frame = pb.TxnFrame.FromString(msg.frame)
        except DecodeError as e:
            raise ProtocolError(f"{donor} sent an undecodable frame in a copy") from e
        shapes, changes = decode_changes(frame)
        if any(c.op is not Op.INSERT or c.new is None for c in changes):
            raise ProtocolError(f"{donor} sent a change that is not an insert in a copy")
        yield to_local_order(shapes, changes, local)


def _roll_back(stack: ExitStack) -> None:
    try:
        stack.__exit__(_CopyAborted, _CopyAborted("initial load aborted"), None)
    except _CopyAborted:
        pass
