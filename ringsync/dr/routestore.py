"""RouteStore: what disaster recovery needs of the store that holds the
routing map, the members and the leader key.

The node's DR agent (node.dr.agent), its leader (node.dr.leading) and the
operator's moves (ringsync.dr.moves) read and write the routing map only
through this. ``DRStore`` (ringsync.dr.store) is the real one, etcd through
aetcd; ``MemoryRouteStore`` (ringsync.dr.memstore) keeps the same semantics
in memory, on an explicit clock, for unit tests.

The semantics every implementation keeps:

* every write bumps one store-wide revision; a route carries the revision
  it was last written at (``Route.revision``);
* ``swap_route`` stores a route only if it is still at the revision the
  writer read (0: it does not exist), so of two writers moving one route
  from the same state exactly one wins;
* a member report and the leader key live on a lease: they vanish when the
  lease expires (not refreshed within its ttl) or is revoked, and writing
  on an expired lease fails;
* a store that cannot answer raises ``EtcdError`` (ringsync.dr.store).
"""

from __future__ import annotations

from typing import Protocol

from ringsync.dr.routes import Member, Route


class RouteStore(Protocol):
    async def close(self) -> None: ...

    async def routes(self) -> dict[str, Route]:
        """Every stored route by its key (campus, or ``set:<name>``)."""
        ...

    async def members(self) -> dict[str, Member]:
        """The member report of every node whose lease is alive."""
        ...

    async def leader(self) -> str | None:
        """The elected leader's campus; None if there is none."""
        ...

    async def ensure_routes(self, ring: tuple[str, ...], now: float,
                            set_writers: dict[str, str] | None = None) -> None:
        """Create the route of every campus (itself) and set (its configured
        writer) that has none; never overwrite one."""
        ...

    async def swap_route(self, new: Route, expected_revision: int) -> bool:
        """Store ``new`` if its route is still at ``expected_revision``."""
        ...

    async def grant(self, ttl: int) -> int:
        """A new lease of ``ttl`` seconds; its id."""
        ...

    async def keepalive(self, lease_id: int) -> int:
        """Seconds the lease has left after this refresh; 0 if it already expired."""
        ...

    async def revoke(self, lease_id: int) -> None: ...

    async def put_member(self, member: Member, lease_id: int) -> None:
        """Publish this node's report on its lease."""
        ...

    async def campaign(self, campus: str, lease_id: int) -> str:
        """Become leader (on the lease) if nobody is; the leader's campus."""
        ...
