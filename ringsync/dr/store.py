"""DRStore: the routing map, members and leader key in etcd, through aetcd
(the etcd RouteStore, ringsync.dr.routestore).

Every write of a route is a compare-and-swap on the key's revision, so two
writers (a leader and an operator, or two leaders around an election) can
never both move one route from the same state.

With ``[dr] etcd_tls`` the store dials etcd over TLS (aetcd itself dials in
plaintext only: ``TLSClient`` makes its channel): it trusts the cluster CA,
verifies the server name ``etcd.ringsync`` (etcd members' certificates are
issued with ``ringsync pki issue --role etcd``) and presents the caller's
own certificate, which etcd checks against the same CA
(``--client-cert-auth``).
"""

from __future__ import annotations

import ipaddress
from typing import Any

import aetcd
import aetcd.exceptions
import grpc
from aetcd import rpc, watcher

from ringsync.config import TLSFiles
from ringsync.dr.routes import Keys, Member, Route
from ringsync.pki import ETCD_SERVER_NAME, read_tls_files

EtcdError = aetcd.exceptions.ClientError


def _target(endpoints: tuple[str, ...]) -> tuple[str, int]:
    """aetcd dials ``host:port``; several IP endpoints become one gRPC target
    (``ipv4:a,b,c``) that fails over between members."""
    hosts = [e.rpartition(":")[0] for e in endpoints]
    port = int(endpoints[-1].rpartition(":")[2])
    if len(endpoints) == 1:
        return hosts[0], port
    try:
        for h in hosts:
            ipaddress.IPv4Address(h)
    except ValueError:
        return hosts[0], int(endpoints[0].rpartition(":")[2])  # DNS: the first member
    return "ipv4:" + ",".join(endpoints[:-1]) + "," + hosts[-1], port


class TLSClient(aetcd.Client):
    """aetcd's client over a TLS channel with a client certificate."""

    def __init__(self, credentials: grpc.ChannelCredentials, **kw: Any) -> None:
        super().__init__(**kw)
        self._credentials = credentials

    async def connect(self) -> None:
        if self._connected.is_set():
            return
        # Nothing here awaits: one connect runs to its end before another starts.
        target = f"{self._host}:{self._port}"
        options = [*self._options.items(), ("grpc.ssl_target_name_override", ETCD_SERVER_NAME)]
        self.channel = grpc.aio.secure_channel(target, self._credentials, options=options)
        self.kvstub = rpc.KVStub(self.channel)
        self.clusterstub = rpc.ClusterStub(self.channel)
        self.leasestub = rpc.LeaseStub(self.channel)
        self.maintenancestub = rpc.MaintenanceStub(self.channel)
        self._watcher = watcher.Watcher(rpc.WatchStub(self.channel), timeout=self._timeout,
                                        metadata=self.metadata)
        self._connected.set()


class DRStore:
    """The RouteStore of a real cluster: etcd at ``endpoints``, keys under
    ``/ringsync/<cluster>/`` (ringsync.dr.routes.Keys); ``tls``: the caller's
    own certificate, to dial etcd over TLS (``[dr] etcd_tls``)."""

    def __init__(self, cluster: str, endpoints: tuple[str, ...], timeout: float = 2.0,
                 tls: TLSFiles | None = None) -> None:
        host, port = _target(endpoints)
        self.endpoints = endpoints
        self.keys = Keys(cluster)
        options = {"grpc.initial_reconnect_backoff_ms": 200,
                   "grpc.max_reconnect_backoff_ms": 1000}
        if tls is None:
            self.client = aetcd.Client(host=host, port=port, timeout=timeout, options=options)
        else:
            ca, cert, key = read_tls_files(tls.ca, tls.cert, tls.key)
            creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key,
                                                 certificate_chain=cert)
            self.client = TLSClient(creds, host=host, port=port, timeout=timeout,
                                    options=options)

    async def close(self) -> None:
        await self.client.close()

    async def routes(self) -> dict[str, Route]:
        found = await self.client.get_prefix(self.keys.routes.encode())
        out = {}
        for kv in found:
            campus = kv.key.decode().removeprefix(self.keys.routes)
            out[campus] = Route.decode(kv.value, kv.mod_revision)
        return out

    async def members(self) -> dict[str, Member]:
        found = await self.client.get_prefix(self.keys.members.encode())
        return {kv.key.decode().removeprefix(self.keys.members): Member.decode(kv.value)
                for kv in found}

    async def leader(self) -> str | None:
        found = await self.client.get(self.keys.leader.encode())
        return found.value.decode() if found is not None else None

    async def ensure_routes(self, ring: tuple[str, ...], now: float,
                            set_writers: dict[str, str] | None = None) -> None:
        """Create the route of every campus that has none (it serves itself),
        and of every single-writer set (``set:<name>`` -> its configured writer)."""
        t = self.client.transactions
        wanted = {c: c for c in ring} | dict(set_writers or {})
        for name, serving in wanted.items():
            key = self.keys.route(name).encode()
            route = Route(name, serving, since=now, reason=(
                "initial: the set's configured writer" if name not in ring else
                "initial: every campus serves its own users"))
            await self.client.transaction(
                compare=[t.create(key) == 0], success=[t.put(key, route.encode())], failure=[])

    async def swap_route(self, new: Route, expected_revision: int) -> bool:
        """Store ``new`` if the route is still at ``expected_revision``."""
        t = self.client.transactions
        key = self.keys.route(new.campus).encode()
        ok, _ = await self.client.transaction(
            compare=[t.mod(key) == expected_revision], success=[t.put(key, new.encode())],
            failure=[])
        return bool(ok)

    async def grant(self, ttl: int) -> int:
        lease = await self.client.lease(ttl)
        return int(lease.id)

    async def keepalive(self, lease_id: int) -> int:
        """Seconds the lease has left after this refresh; 0 if it already expired."""
        reply: Any = await self.client.refresh_lease(lease_id)
        return int(reply.TTL) if reply is not None else 0

    async def revoke(self, lease_id: int) -> None:
        await self.client.revoke_lease(lease_id)

    async def put_member(self, member: Member, lease_id: int) -> None:
        await self.client.put(self.keys.member(member.campus).encode(), member.encode(),
                              lease=lease_id)

    async def campaign(self, campus: str, lease_id: int) -> str:
        """Become leader if nobody is; return the leader's name."""
        t = self.client.transactions
        key = self.keys.leader.encode()
        await self.client.transaction(
            compare=[t.create(key) == 0], success=[t.put(key, campus.encode(), lease=lease_id)],
            failure=[])
        found = await self.client.get(key)
        return found.value.decode() if found is not None else ""
