"""Async mTLS client of the node API, shared by nodes, ctl, console and demo.

Channels verify the server's certificate against the campus they dial
(``<campus>.node.ringsync``), so an address that answers with another
campus's node, or with a certificate from another CA, is refused.
Create channels inside the running event loop (grpc/grpc#32480).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from ringsync.config import ClusterConfig, TLSFiles
from ringsync.errors import ConfigError, RingsyncError
from ringsync.pki import node_server_name, read_tls_files
from ringsync.v1 import control_pb2, control_pb2_grpc

# gRPC's default reconnect backoff grows to two minutes; a campus that comes
# back must be seen within seconds.
RECONNECT_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.initial_reconnect_backoff_ms", 300),
    ("grpc.min_reconnect_backoff_ms", 300),
    ("grpc.max_reconnect_backoff_ms", 2_000),
]
KEEPALIVE_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]


class Credentials:
    """A PEM triple turned into gRPC channel credentials, read again when its
    files change (a renewed certificate is used without a restart).

    ``refresh`` re-reads the files if one of them changed since they were read
    and takes them only if they pass the same checks as at start (and
    ``check``, e.g. a node's that the certificate is for its campus); a pair
    that does not is not taken, and ``error`` says why. ``generation`` counts
    the pairs taken: a holder of channels replaces those made with an older
    one. Safe to call from any thread (gRPC's certificate fetcher calls it)."""

    def __init__(self, files: TLSFiles, check: Callable[[bytes], None] | None = None) -> None:
        self.files = files
        self.check = check
        self.ca, self.cert, self.key = read_tls_files(files.ca, files.cert, files.key)
        if check is not None:
            check(self.cert)
        self.generation = 1
        self.error = ""
        self._lock = threading.Lock()
        self._seen = self._stamp()

    def _stamp(self) -> tuple[tuple[int, int], ...]:
        out = []
        for path in (self.files.ca, self.files.cert, self.files.key):
            try:
                info = path.stat()
                out.append((info.st_mtime_ns, info.st_size))
            except OSError:
                out.append((0, 0))
        return tuple(out)

    def refresh(self) -> bool:
        """Take the files again if they changed and pass the checks; True if taken."""
        if not hasattr(self, "_seen"):  # made by hand from PEM bytes: nothing to re-read
            return False
        with self._lock:
            stamp = self._stamp()
            if stamp == self._seen:
                return False
            self._seen = stamp
            try:
                ca, cert, key = read_tls_files(self.files.ca, self.files.cert, self.files.key)
                if self.check is not None:
                    self.check(cert)
            except RingsyncError as e:
                self.error = f"{e} (the certificate in use stays)"
                return False
            self.error = ""
            if (ca, cert, key) == (self.ca, self.cert, self.key):
                return False
            self.ca, self.cert, self.key = ca, cert, key
            self.generation += 1
            return True

    def channel(
        self, address: str, campus: str, extra_options: Sequence[tuple[str, Any]] = ()
    ) -> grpc.aio.Channel:
        self.refresh()
        creds = grpc.ssl_channel_credentials(
            root_certificates=self.ca, private_key=self.key, certificate_chain=self.cert
        )
        name = node_server_name(campus)
        options = [
            ("grpc.ssl_target_name_override", name),
            ("grpc.default_authority", name),
            *RECONNECT_OPTIONS,
            *KEEPALIVE_OPTIONS,
            *extra_options,
        ]
        return grpc.aio.secure_channel(address, creds, options=options)


@dataclass
class NodeReply:
    campus: str
    address: str
    status: control_pb2.NodeStatus | None
    error: str | None


class ClusterClient:
    """Status and checksums from every campus of a cluster file."""

    def __init__(self, cluster: ClusterConfig, timeout: float = 3.0) -> None:
        if cluster.client_tls is None:
            raise ConfigError(
                f"{cluster.path}: no [client] section with ca, cert and key; ctl and console "
                f"need an operator or viewer certificate (ringsync pki issue --role operator)"
            )
        self.cluster = cluster
        self.timeout = timeout
        self._creds = Credentials(cluster.client_tls)
        self._channels: dict[str, grpc.aio.Channel] = {}

    def _stub(self, campus: str) -> control_pb2_grpc.ControlStub:
        channel = self._channels.get(campus)
        if channel is None:
            channel = self._creds.channel(self.cluster.address_of(campus), campus,
                                          [("grpc.max_receive_message_length", 16 << 20)])
            self._channels[campus] = channel
        return control_pb2_grpc.ControlStub(channel)

    async def status_of(self, campus: str) -> NodeReply:
        address = self.cluster.address_of(campus)
        try:
            status = await self._stub(campus).GetStatus(
                control_pb2.StatusRequest(), timeout=self.timeout
            )
            return NodeReply(campus, address, status, None)
        except grpc.aio.AioRpcError as e:
            return NodeReply(campus, address, None, describe_rpc_error(e))

    async def status_all(self) -> list[NodeReply]:
        return list(await asyncio.gather(*(self.status_of(c) for c in self.cluster.ring)))

    async def checksum(self, campus: str) -> control_pb2.ChecksumResponse:
        return await self._stub(campus).Checksum(
            control_pb2.ChecksumRequest(), timeout=max(self.timeout, 30.0)
        )

    async def verify(self, campus: str, table: str, bits: int,
                     buckets: list[int] | None = None,
                     incremental: bool = False, route: str = "") -> control_pb2.VerifyResponse:
        """One verification scan of one table at one campus (no deadline
        shorter than a big table's scan: ten minutes); ``route``: a leaf's
        name, to ask its parent for the rows that leaf's route selects."""
        return await self._stub(campus).Verify(control_pb2.VerifyRequest(
            table=table, bits=bits, buckets=buckets or [], incremental=incremental,
            route=route), timeout=max(self.timeout, 600.0))

    async def record_verification(self, campus: str, report: dict[str, Any]) -> None:
        """Hand a scheduled verification's report to a node to keep (nodes only)."""
        await self._stub(campus).RecordVerification(control_pb2.VerificationReport(
            json=json.dumps(report, ensure_ascii=False)), timeout=max(self.timeout, 30.0))

    async def verifications(self, campus: str, limit: int = 10
                            ) -> control_pb2.VerificationsResponse:
        return await self._stub(campus).ListVerifications(
            control_pb2.VerificationsRequest(limit=limit), timeout=max(self.timeout, 10.0))

    async def repair_row(self, campus: str, table: str, key: str,
                         action: str) -> control_pb2.RepairResponse:
        return await self._stub(campus).RepairRow(control_pb2.RepairRequest(
            table=table, key=key, action=action), timeout=max(self.timeout, 30.0))

    async def conflicts(self, campus: str,
                        request: control_pb2.ConflictsRequest) -> control_pb2.ConflictsResponse:
        return await self._stub(campus).ListConflicts(request, timeout=max(self.timeout, 10.0))

    async def resolve_conflict(self, campus: str, conflict_id: int,
                               take: str) -> control_pb2.ResolveConflictResponse:
        return await self._stub(campus).ResolveConflict(
            control_pb2.ResolveConflictRequest(id=conflict_id, take=take),
            timeout=max(self.timeout, 30.0))

    async def dead_letters(self, campus: str, request: control_pb2.DeadLettersRequest
                           ) -> control_pb2.DeadLettersResponse:
        return await self._stub(campus).ListDeadLetters(request, timeout=max(self.timeout, 10.0))

    async def act_on_dead_letter(self, campus: str, entry_id: int,
                                 action: str) -> control_pb2.DeadLetterActionResult:
        return await self._stub(campus).ActOnDeadLetter(
            control_pb2.DeadLetterAction(id=entry_id, action=action),
            timeout=max(self.timeout, 60.0))

    async def publish_revocations(self, campus: str,
                                  pem: bytes) -> control_pb2.RevocationStatus:
        """Push the CA's revocation list to one node (operators)."""
        return await self._stub(campus).PublishRevocations(
            control_pb2.RevocationList(pem=pem), timeout=max(self.timeout, 10.0))

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()


def describe_rpc_error(e: grpc.aio.AioRpcError) -> str:
    code = e.code()
    if code == grpc.StatusCode.UNAVAILABLE:
        return f"unreachable ({e.details()})"
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return f"permission denied: {e.details()}"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return "no answer before the deadline"
    return f"{code.name}: {e.details()}"
