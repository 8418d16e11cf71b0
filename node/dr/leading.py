"""Leadership: what the elected DR leader decides each tick, and how it
stores those decisions (node.dr.agent runs it on the leader only).

From the routing map, the live members and the clock the leader moves
routes: automatic failover of a campus whose node has been down for
``failover_after``, completion (or abandonment) of drains and of set
revokes, and automatic failback when configured (the rules themselves are
ringsync.dr.routes). The timers behind them (since when a node is down,
when a drain or revoke began) are the leader's own observations, on its
own clock: a node that stops leading forgets them. Each move is stored by
compare-and-swap on the revision the leader read, so a concurrent writer
(an operator, or another leader around an election) wins or loses whole.
"""

from __future__ import annotations

import logging

from ringsync.config import ClusterConfig
from ringsync.dr.routes import (
    DRAINING,
    REVOKING,
    Member,
    Route,
    complete_drains,
    complete_revokes,
    down_nodes,
    failbacks,
    failovers,
)
from ringsync.dr.routestore import RouteStore
from ringsync.dr.settings import DRSettings

# Logged as the agent did before the leader was split out of it (operators grep it).
log = logging.getLogger("node.dr.agent")


class Leadership:
    def __init__(self, cluster: ClusterConfig, settings: DRSettings) -> None:
        self.ring = cluster.ring
        self.settings = settings
        self.standby = {c.name: c.standby for c in cluster.campuses}
        # A set's writer may fail over to any standby, or back to its configured writer.
        self.standby.update({s.route_key: (s.writer, *s.standby) for s in cluster.sets})
        self.down_since: dict[str, float] = {}
        self.drain_seen: dict[tuple[str, int], float] = {}  # when a drain began
        self.revoke_seen: dict[tuple[str, int], float] = {}  # when a revoke began

    def forget(self) -> None:
        """Not the leader (any more): the next tenure starts its timers afresh."""
        self.down_since.clear()
        self.drain_seen.clear()
        self.revoke_seen.clear()

    def moves(self, routes: dict[str, Route], members: dict[str, Member],
              now: float) -> list[Route]:
        """The routes to move now, in the order to try them (a route may appear
        twice: the first one stored wins)."""
        down = down_nodes(members, self.ring)
        for campus in self.ring:
            if campus in down:
                self.down_since.setdefault(campus, now)
            else:
                self.down_since.pop(campus, None)
        moves = failovers(routes, members, self.down_since, now,
                          self.settings.failover_after, self.standby)
        draining = {(c, r.epoch) for c, r in routes.items() if r.state == DRAINING}
        self.drain_seen = {k: self.drain_seen.get(k, now) for k in draining}
        moves += complete_drains(routes, members, now,
                                 {c: t for (c, _), t in self.drain_seen.items()})
        revoking = {(c, r.epoch) for c, r in routes.items() if r.state == REVOKING}
        self.revoke_seen = {k: self.revoke_seen.get(k, now) for k in revoking}
        moves += complete_revokes(routes, members, now,
                                  {c: t for (c, _), t in self.revoke_seen.items()})
        if self.settings.failback == "auto":
            moves += failbacks(routes, members, now)
        return moves


async def store_moves(store: RouteStore, routes: dict[str, Route],
                      moves: list[Route]) -> list[Route]:
    """Store each move if its route is still as read (at most one per route);
    the moves stored."""
    done: dict[str, Route] = {}
    for new in moves:
        if new.campus in done:
            continue
        if await store.swap_route(new, routes[new.campus].revision):
            done[new.campus] = new
            log.warning("route %s -> %s (%s, epoch %d): %s", new.campus, new.serving,
                        new.state, new.epoch, new.reason)
    return list(done.values())
