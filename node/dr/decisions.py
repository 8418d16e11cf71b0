"""The DR agent's own decisions at one node, as pure functions of the
routing map, this node's lease and the clock (node.dr.agent applies them).

* ``map_fresh``: the routing map may be trusted (read under the current,
  live lease within one lease length);
* ``writable_until``: the deadline to store in the database's fence (0.0:
  fenced): open only while some campus's route is active here, on a fresh
  map, with a healthy database, and never past the lease's certain life;
* ``drains_due``: the routes draining off this node it has not drained yet.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from ringsync.dr.routes import DRAINING, Route, writable_for


def map_fresh(now: float, *, enabled: bool, lease_ok: bool, lease_deadline: float,
              routes_read_at: float, lease_ttl: float) -> bool:
    """Always true with DR off (the static map)."""
    return not enabled or (lease_ok and now < lease_deadline
                           and now - routes_read_at <= lease_ttl)


def writable_until(routes: Mapping[str, Route], me: str, now: float, *, db_healthy: bool,
                   lease_deadline: float, routes_read_at: float, lease_ttl: float) -> float:
    """Open only on a map read under the current lease within one lease
    length, with a route active here and the database reported healthy
    (a node reporting it down is being failed over)."""
    if (not writable_for(dict(routes), me) or not db_healthy
            or now - routes_read_at > lease_ttl):
        return 0.0
    return lease_deadline if now < lease_deadline else 0.0


def drains_due(routes: Mapping[str, Route], me: str, drained: Mapping[str, list[int]],
               draining: Collection[str]) -> list[Route]:
    """Routes moving off this node, not yet reported drained at their
    current epoch, and not being drained right now."""
    return [route for campus, route in routes.items()
            if route.state == DRAINING and route.serving == me
            and drained.get(campus, [0])[0] != route.epoch and campus not in draining]
