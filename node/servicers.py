"""gRPC servicers: translate messages, call the domain, map errors to status codes.

Kept thin on purpose: replication logic is in node.replication.receiver,
status in node.status. The replication, checksum, verify, conflict and
dead-letter RPCs are wrapped in ``answers_errors`` (node.rpcends): a
RingsyncError escaping one ends the call with the code its class names and
its message as the details; a scope denial is also written to the audit
trail, as is every action an operator takes here (``audit``). The status
and routes RPCs are not wrapped: an error there was never given a code (the
caller sees UNKNOWN), and that stays so.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import grpc
from google.protobuf.message import DecodeError

from node.auth import peer_identity
from node.conflicts.deadletter import DeadLetterQuery, DeadLetterRefused, act_in, describe
from node.conflicts.log import ConflictQuery
from node.conflicts.manual import ResolveRefused, resolve_parked
from node.dr.agent import DRAgent
from node.leaf.serve import serve_follow
from node.replication.receiver import Receiver
from node.replication.snapshot import serve_snapshot
from node.revocations import RevocationsRefused, publish
from node.rpcends import abort_for, answers_errors, audit, refused
from node.runtime import NodeRuntime
from node.scoping import caller_scope, report_in_scope, require, status_in_scope
from node.status import StatusCache, build_status, routing_map
from node.verify.answer import answer_verify
from node.verify.repair import RepairRefused, repair_row
from node.verify.reports import parse_report
from ringsync.errors import ProtocolError, RingsyncError
from ringsync.scopes import Scope
from ringsync.v1 import control_pb2 as cpb
from ringsync.v1 import control_pb2_grpc, replication_pb2_grpc
from ringsync.v1 import replication_pb2 as rpb

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 0.5
ACK_COALESCE_SECONDS = 0.02
WATCH_INTERVAL_SECONDS = 1.0


def _caller(context: grpc.aio.ServicerContext) -> str:
    """The name in the caller's certificate (campus, operator or script)."""
    identity = peer_identity(context)
    return identity.name if identity is not None else ""


class ReplicationServicer(replication_pb2_grpc.ReplicationServicer):
    def __init__(self, rt: NodeRuntime) -> None:
        self.rt = rt

    @answers_errors()
    async def Replicate(
        self, request_iterator: AsyncIterator[bytes], context: grpc.aio.ServicerContext,
    ) -> None:
        """Messages arrive as bytes (``add_replication_service``): the receiver
        parses them, so random bytes get INVALID_ARGUMENT, not a traceback."""
        receiver = Receiver(self.rt, _caller(context))
        write_lock = asyncio.Lock()

        async def send(msg: rpb.ReplicateResponse) -> None:
            async with write_lock:
                await context.write(msg)

        async def heartbeat() -> None:
            # Ack again whenever something was applied (so the sender's lag
            # figure is fresh), and at least every HEARTBEAT_SECONDS.
            ticket = self.rt.applied_changed.ticket()
            try:
                while True:
                    await self.rt.applied_changed.wait(ticket, HEARTBEAT_SECONDS)
                    ticket = self.rt.applied_changed.ticket()
                    await send(receiver.ack())
                    await asyncio.sleep(ACK_COALESCE_SECONDS)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the stream ended under it (refused,
                return  # aborted, closed): the handler reports why, once

        beat: asyncio.Task[None] | None = None
        try:
            first = await context.read()
            if first is grpc.aio.EOF:
                return
            await send(receiver.welcome(receiver.decode(first)))
            beat = asyncio.create_task(heartbeat())
            while True:
                request = await context.read()
                if request is grpc.aio.EOF:
                    return
                await send(await receiver.accept(receiver.decode(request)))
        except ProtocolError as e:  # logged once per peer and kind, in the refusal book
            self.rt.refused.record(receiver.peer or receiver.peer_name, e)
            await abort_for(context, e, quiet=True)
        finally:
            if beat is not None:
                beat.cancel()
            if receiver.peer:
                log.info("replication stream from %s closed", receiver.peer)

    @answers_errors()
    async def Follow(
        self, request_iterator: AsyncIterator[bytes], context: grpc.aio.ServicerContext,
    ) -> None:
        """A leaf's stream from this parent (node.leaf.serve); raw bytes as Replicate."""
        write_lock = asyncio.Lock()

        async def send(msg: rpb.FollowResponse) -> None:
            async with write_lock:
                await context.write(msg)

        async def requests() -> AsyncIterator[bytes]:
            while (data := await context.read()) is not grpc.aio.EOF:
                yield data

        peer = _caller(context)
        try:
            await serve_follow(self.rt, requests(), send, peer)
        except ProtocolError as e:  # logged once per peer and kind, in the refusal book
            self.rt.refused.record(peer, e)
            await abort_for(context, e, quiet=True)

    @answers_errors()
    async def Snapshot(
        self, data: bytes, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[rpb.SnapshotChunk]:
        try:
            request = rpb.SnapshotRequest.FromString(data)
        except DecodeError:
            raise ProtocolError(f"a SnapshotRequest of {len(data)} bytes is undecodable"
                                ) from None
        async for chunk in serve_snapshot(self.rt, request, _caller(context)):
            yield chunk


def add_replication_service(servicer: ReplicationServicer, server: grpc.aio.Server) -> None:
    """Register the Replication service with raw-bytes requests: a message that
    is not protobuf fails in the handler with a clear INVALID_ARGUMENT, not in
    gRPC's deserializer (UNKNOWN, a traceback in the log)."""
    handlers = {
        "Replicate": grpc.stream_stream_rpc_method_handler(
            servicer.Replicate, request_deserializer=None,
            response_serializer=rpb.ReplicateResponse.SerializeToString),
        "Follow": grpc.stream_stream_rpc_method_handler(
            servicer.Follow, request_deserializer=None,
            response_serializer=rpb.FollowResponse.SerializeToString),
        "Snapshot": grpc.unary_stream_rpc_method_handler(
            servicer.Snapshot, request_deserializer=None,
            response_serializer=rpb.SnapshotChunk.SerializeToString),
    }
    name = rpb.DESCRIPTOR.services_by_name["Replication"].full_name
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
    server.add_registered_method_handlers(name, handlers)


class ControlServicer(control_pb2_grpc.ControlServicer):
    def __init__(self, rt: NodeRuntime, cache: StatusCache, agent: DRAgent) -> None:
        self.rt = rt
        self.cache = cache
        self.agent = agent

    def _scope(self, context: grpc.aio.ServicerContext) -> Scope | None:
        return caller_scope(context, self.rt.config.cluster)

    async def _status(self, context: grpc.aio.ServicerContext) -> cpb.NodeStatus:
        return status_in_scope(await build_status(self.rt, self.cache, self.agent),
                               self._scope(context), self.rt.config.tables)

    async def GetStatus(
        self, request: cpb.StatusRequest, context: grpc.aio.ServicerContext
    ) -> cpb.NodeStatus:
        return await self._status(context)

    async def WatchStatus(
        self, request: cpb.StatusRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[cpb.NodeStatus]:
        while True:
            yield await self._status(context)
            await asyncio.sleep(WATCH_INTERVAL_SECONDS)

    @answers_errors()
    async def PublishRevocations(
        self, request: cpb.RevocationList, context: grpc.aio.ServicerContext
    ) -> cpb.RevocationStatus:
        rt = self.rt
        if rt.revocations is None or rt.credentials is None:
            raise RevocationsRefused("this node keeps no revocation list")
        try:
            status = await asyncio.to_thread(publish, rt.revocations, request.pem,
                                             rt.credentials)
        except RingsyncError as e:
            await audit(rt, context, "revocations", refused(e))
            raise
        await audit(rt, context, "revocations", "done", list_number=status.number,
                    revoked=status.revoked)
        log.info("revocation list number %d taken from %s (%d certificates revoked)",
                 status.number, peer_identity(context), status.revoked)
        return status

    async def GetRoutes(
        self, request: cpb.RoutesRequest, context: grpc.aio.ServicerContext
    ) -> cpb.RoutingMap:
        return routing_map(self.agent)

    async def WatchRoutes(
        self, request: cpb.RoutesRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[cpb.RoutingMap]:
        """The map now, then again whenever it (or this node's lease or fence)
        changes; re-checked at least every WATCH_INTERVAL_SECONDS."""
        last = None
        while True:
            ticket = self.agent.view.changed.ticket()
            current = routing_map(self.agent)
            if current != last:
                yield current
                last = current
            await self.agent.view.changed.wait(ticket, WATCH_INTERVAL_SECONDS)

    @answers_errors()
    async def Checksum(
        self, request: cpb.ChecksumRequest, context: grpc.aio.ServicerContext
    ) -> cpb.ChecksumResponse:
        scope = self._scope(context)
        tables = list(request.tables) or (scope.only(self.rt.config.tables) if scope
                                          else list(self.rt.config.tables))
        unknown = [t for t in tables if t not in self.rt.config.tables]
        if unknown:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"tables {unknown} are not replicated"
            )
        for t in tables:
            require(scope, t, "a checksum")

        sums, applied = await self.rt.in_engine(self.rt.engine.inspect.checksums, tables)
        out = [cpb.TableChecksum(table=t, rows=n, sha256=d) for t, (n, d) in sums.items()]
        return cpb.ChecksumResponse(
            campus=self.rt.campus, tables=out, applied=rpb.Vector(seqs=applied)
        )

    @answers_errors()
    async def Verify(
        self, request: cpb.VerifyRequest, context: grpc.aio.ServicerContext
    ) -> cpb.VerifyResponse:
        require(self._scope(context), request.table, "verification")
        return await answer_verify(self.rt, request)

    @answers_errors(quiet=(RepairRefused,))
    async def RepairRow(
        self, request: cpb.RepairRequest, context: grpc.aio.ServicerContext
    ) -> cpb.RepairResponse:
        who = _caller(context) or "unknown"
        require(self._scope(context), request.table, "a repair")
        rt = self.rt
        changes = request.action != "inspect"
        try:
            done = await rt.in_engine(repair_row, rt.engine.store, rt.resolver.rules,
                                      request.table, request.key, request.action)
        except RingsyncError as e:
            if changes:
                await audit(rt, context, "repair", refused(e), request.table, request.key,
                            repair_action=request.action)
            raise
        if done.standing is not None:  # inspect: nothing changed
            st = done.standing
            return cpb.RepairResponse(campus=rt.campus, table=done.table, key=done.key,
                                      row=done.row, recorded=st.recorded, rank=st.rank,
                                      hlc=st.hlc, origin=st.origin)
        await audit(rt, context, "repair", "done", done.table, done.key,
                    repair_action=request.action)
        log.warning("repair: %s %s %s by %s", request.action, done.table, done.key, who)
        return cpb.RepairResponse(campus=rt.campus, table=done.table, key=done.key,
                                  row=done.row)

    @answers_errors()
    async def RecordVerification(
        self, request: cpb.VerificationReport, context: grpc.aio.ServicerContext
    ) -> cpb.RecordVerificationResponse:
        await asyncio.to_thread(self.rt.verifier.reports.add, parse_report(request.json))
        return cpb.RecordVerificationResponse()

    @answers_errors()
    async def ListVerifications(
        self, request: cpb.VerificationsRequest, context: grpc.aio.ServicerContext
    ) -> cpb.VerificationsResponse:
        reports = await asyncio.to_thread(self.rt.verifier.reports.history)
        newest = reports[::-1][:request.limit or 10]
        scope = self._scope(context)
        return cpb.VerificationsResponse(campus=self.rt.campus, reports=[
            json.dumps(report_in_scope(r, scope), ensure_ascii=False) for r in newest])

    @answers_errors()
    async def ListConflicts(
        self, request: cpb.ConflictsRequest, context: grpc.aio.ServicerContext
    ) -> cpb.ConflictsResponse:
        if request.table and request.table not in self.rt.config.tables:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"table {request.table!r} is not replicated")
        scope = self._scope(context)
        require(scope, request.table, "the conflict log")
        query = ConflictQuery(request.table, request.campus, request.since, request.limit,
                              request.id, request.state)
        rows = [r for r in await self.rt.in_engine(self.rt.engine.store.conflicts, query)
                if scope is None or scope.table(r.table)]
        return cpb.ConflictsResponse(campus=self.rt.campus, conflicts=[
            cpb.ConflictEntry(
                id=r.id, at=r.at, table=r.table, key=r.key, kind=r.kind, rule=r.rule,
                winner=r.winner, local_origin=r.local_origin, local_hlc=r.local_hlc,
                remote_origin=r.remote_origin, remote_seq=r.remote_seq,
                remote_hlc=r.remote_hlc, local_row=r.local_row or "",
                remote_row=r.remote_row or "", skew_ms=r.skew_ms, state=r.state,
                resolution=r.resolution or "")
            for r in rows])

    @answers_errors(quiet=(ResolveRefused,))
    async def ResolveConflict(
        self, request: cpb.ResolveConflictRequest, context: grpc.aio.ServicerContext
    ) -> cpb.ResolveConflictResponse:
        who = _caller(context) or "unknown"
        rt = self.rt
        scope = self._scope(context)
        found = await rt.in_engine(rt.engine.store.conflicts, ConflictQuery(id=request.id))
        for entry in found:
            require(scope, entry.table, "resolving a conflict")
        table, key = (found[0].table, found[0].key) if found else ("", None)
        try:
            done = await rt.in_engine(resolve_parked, rt.engine.store, rt.resolver.rules,
                                      request.id, request.take, who)
        except RingsyncError as e:
            await audit(rt, context, "resolve-conflict", refused(e), table, key, id=request.id)
            raise
        await audit(rt, context, "resolve-conflict", "done", done.table, done.key,
                    id=request.id)
        log.info("conflict %d resolved by %s: %s", request.id, who, request.take[:200])
        return cpb.ResolveConflictResponse(campus=rt.campus, table=done.table, key=done.key,
                                           row=done.row)

    @answers_errors()
    async def ListDeadLetters(
        self, request: cpb.DeadLettersRequest, context: grpc.aio.ServicerContext
    ) -> cpb.DeadLettersResponse:
        rt = self.rt
        scope = self._scope(context)
        require(scope, request.table, "the dead-letter queue")
        query = DeadLetterQuery(request.id, request.table, request.state, request.limit)
        rows = [r for r in await rt.in_engine(rt.engine.store.dead_letter_list, query)
                if scope is None or scope.table(r.table)]
        described = [describe(r, rt.resolver) for r in rows]
        return cpb.DeadLettersResponse(campus=rt.campus, entries=[
            cpb.DeadLetter(id=e.id, at=e.at, origin=e.origin, seq=e.seq, table=e.table,
                           key=e.key, op=e.op, error=e.error, attempts=e.attempts,
                           state=e.state, actions=e.actions, row=d.row or "")
            for d in described for e in (d.entry,)])

    @answers_errors(quiet=(DeadLetterRefused,))
    async def ActOnDeadLetter(
        self, request: cpb.DeadLetterAction, context: grpc.aio.ServicerContext
    ) -> cpb.DeadLetterActionResult:
        who = _caller(context) or "unknown"
        rt = self.rt
        scope = self._scope(context)
        found = await rt.in_engine(rt.engine.store.dead_letter_list,
                                   DeadLetterQuery(id=request.id, limit=1))
        for entry in found:
            require(scope, entry.table, "acting on a dead letter")
        table, key = (found[0].table, found[0].key) if found else ("", None)
        try:
            outcome = await rt.in_engine(act_in, rt.engine.target.apply_session(),
                                         rt.resolver, request.id, request.action, who)
        except RingsyncError as e:
            await audit(rt, context, "dead-letter", refused(e), table, key, id=request.id,
                        dlq_action=request.action)
            raise
        await audit(rt, context, "dead-letter", ",".join(o.state for o in outcome), table, key,
                    id=request.id, dlq_action=request.action)
        results = [o.to_json_obj() for o in outcome]
        log.info("dead letter %d: %s by %s: %s", request.id, request.action, who, results)
        rt.journal_changed.notify()  # the applier re-reads which rows are still parked
        return cpb.DeadLetterActionResult(campus=rt.campus, outcome=json.dumps(results))
