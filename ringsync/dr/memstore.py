"""MemoryRouteStore: a RouteStore (ringsync.dr.routestore) held in memory,
for unit tests of the DR agent, its leader and the operator's moves.

It keeps etcd's semantics where DR depends on them: one store-wide revision
bumped by every write, compare-and-swap of a route on its revision (a stale
revision loses), keys attached to leases that vanish with them, writes on
a dead lease refused. Time is explicit: leases expire when a test moves the
store's clock (``advance``) or ends one (``expire``), never by wall time.
``unreachable`` makes every call fail as an etcd outage does.
"""

from __future__ import annotations

from dataclasses import dataclass

from ringsync.dr.routes import Keys, Member, Route
from ringsync.dr.store import EtcdError


class StoreUnreachable(EtcdError):
    """Raised by every call while the store is ``unreachable``."""


@dataclass
class _Entry:
    value: bytes
    mod_revision: int
    lease: int = 0


@dataclass
class _Lease:
    ttl: int
    expires_at: float


class MemoryRouteStore:
    def __init__(self, cluster: str = "test", now: float = 0.0) -> None:
        self.keys = Keys(cluster)
        self.now = now
        self.revision = 1  # etcd's first revision
        self.unreachable = False
        self.closed = False
        self._kv: dict[str, _Entry] = {}
        self._leases: dict[int, _Lease] = {}
        self._next_lease = 0x1000

    # -- the test's controls -------------------------------------------------

    def advance(self, seconds: float) -> None:
        """Move the store's clock; leases not refreshed within their ttl expire."""
        self.now += seconds
        for lease_id, lease in list(self._leases.items()):
            if lease.expires_at <= self.now:
                self.expire(lease_id)

    def expire(self, lease_id: int) -> None:
        """End a lease now (as etcd does once its ttl ran out), and its keys with it."""
        if self._leases.pop(lease_id, None) is not None:
            self._bump()
            for key in [k for k, e in self._kv.items() if e.lease == lease_id]:
                del self._kv[key]

    def leases(self) -> list[int]:
        return sorted(self._leases)

    def put_route(self, route: Route) -> Route:
        """Store ``route`` unconditionally (a test's starting state); as stored."""
        self._put(self.keys.route(route.campus), route.encode())
        return Route.decode(route.encode(), self.revision)

    # -- RouteStore ----------------------------------------------------------

    async def close(self) -> None:
        self.closed = True

    async def routes(self) -> dict[str, Route]:
        self._check()
        return {k.removeprefix(self.keys.routes): Route.decode(e.value, e.mod_revision)
                for k, e in sorted(self._kv.items()) if k.startswith(self.keys.routes)}

    async def members(self) -> dict[str, Member]:
        self._check()
        return {k.removeprefix(self.keys.members): Member.decode(e.value)
                for k, e in sorted(self._kv.items()) if k.startswith(self.keys.members)}

    async def leader(self) -> str | None:
        self._check()
        found = self._kv.get(self.keys.leader)
        return found.value.decode() if found is not None else None

    async def ensure_routes(self, ring: tuple[str, ...], now: float,
                            set_writers: dict[str, str] | None = None) -> None:
        self._check()
        wanted = {c: c for c in ring} | dict(set_writers or {})
        for name, serving in wanted.items():
            key = self.keys.route(name)
            if key not in self._kv:
                self._put(key, Route(name, serving, since=now, reason=(
                    "initial: the set's configured writer" if name not in ring else
                    "initial: every campus serves its own users")).encode())

    async def swap_route(self, new: Route, expected_revision: int) -> bool:
        self._check()
        key = self.keys.route(new.campus)
        found = self._kv.get(key)
        if (found.mod_revision if found is not None else 0) != expected_revision:
            return False
        self._put(key, new.encode())
        return True

    async def grant(self, ttl: int) -> int:
        self._check()
        self._next_lease += 1
        self._leases[self._next_lease] = _Lease(ttl, self.now + ttl)
        return self._next_lease

    async def keepalive(self, lease_id: int) -> int:
        self._check()
        lease = self._leases.get(lease_id)
        if lease is None:
            return 0
        lease.expires_at = self.now + lease.ttl
        return lease.ttl

    async def revoke(self, lease_id: int) -> None:
        self._check()
        self.expire(lease_id)

    async def put_member(self, member: Member, lease_id: int) -> None:
        self._check()
        self._live(lease_id)
        self._put(self.keys.member(member.campus), member.encode(), lease_id)

    async def campaign(self, campus: str, lease_id: int) -> str:
        self._check()
        self._live(lease_id)
        if self.keys.leader not in self._kv:
            self._put(self.keys.leader, campus.encode(), lease_id)
        return self._kv[self.keys.leader].value.decode()

    # -- inside ----------------------------------------------------------------

    def _check(self) -> None:
        if self.unreachable:
            raise StoreUnreachable("etcd unreachable (the test cut it off)")

    def _live(self, lease_id: int) -> None:
        if lease_id not in self._leases:
            raise EtcdError("etcdserver: requested lease not found")

    def _bump(self) -> None:
        self.revision += 1

    def _put(self, key: str, value: bytes, lease: int = 0) -> None:
        self._bump()
        self._kv[key] = _Entry(value, self.revision, lease)
