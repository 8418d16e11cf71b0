"""The drain part of the DR agent (node.dr.agent.DRAgent mixes it in).

A planned move (ringsync.dr.moves) sets a route ``draining`` off this node.
For each such route (node.dr.decisions.drains_due) the agent, in a task of
its own, closes the fence that route kept open (the campus fence if this
database then serves nobody; a set's fence, then waits for the set's open
writers to finish), waits until capture has journaled every transaction
committed before, and reports that journal head in its member report
(``drained``): the leader moves the route once the target has applied it
(node.dr.leading).
"""

from __future__ import annotations

import asyncio
import logging

from node.dr.decisions import drains_due
from node.dr.setfencing import SetFencing
from ringsync.dr.routes import Route, is_set_route, writable_for
from ringsync.dr.routestore import RouteStore
from ringsync.dr.store import EtcdError

# Logged as the agent did before the drains were split out of it (operators grep it).
log = logging.getLogger("node.dr.agent")


class Draining(SetFencing):
    """Drain state and steps; DRAgent provides the attributes below (and
    SetFencing's), and waits for capture with SetFencing's."""

    store: RouteStore | None
    _drained: dict[str, list[int]]  # route -> [epoch, journal head] reported drained
    _draining: set[str]  # routes being drained now
    _drain_tasks: set[asyncio.Task[None]]
    _fenced_until: float
    _next_member: float

    async def _publish_member(self) -> None:
        raise NotImplementedError

    def _etcd_failed(self, error: Exception) -> None:
        raise NotImplementedError

    async def _drain(self, routes: dict[str, Route]) -> None:
        for route in drains_due(routes, self.me, self._drained, self._draining):
            self._draining.add(route.campus)
            task = asyncio.create_task(self._drain_one(route))
            self._drain_tasks.add(task)
            task.add_done_callback(self._drain_tasks.discard)

    async def _drain_one(self, route: Route) -> None:
        """Fence if this database now serves nobody, then report the head that
        the route's target must apply before the route moves."""
        rt = self.rt
        try:
            await self._fence_in_step()
            if is_set_route(route.campus):
                name = route.campus.removeprefix("set:")
                if self._set_fenced.get(name, 0.0) != 0.0:
                    log.error("drain of set %s: its fence could not be closed; not reporting "
                              "it drained (retrying)", name)
                    return
                # A transaction that wrote before the close commits before the head.
                await rt.in_engine(rt.engine.fence.wait_set_writers, name)
            elif not writable_for(self._routes(), self.me) and self._fenced_until != 0.0:
                log.error("drain of %s: this database could not be fenced; not reporting it "
                          "drained (retrying)", route.campus)
                return
            if not await self._capture_caught_up(f"drain of {route.campus}"):
                return
            head = rt.journal.vector().get(self.me, 0)
            self._drained[route.campus] = [route.epoch, head]
            log.info("route %s draining to %s: %s captured through seq %d", route.campus,
                     route.target, self.me, head)
            self._next_member = 0.0
            if self.store is not None:
                await self._publish_member()
        except (EtcdError, OSError) as e:
            self._etcd_failed(e)
        except Exception:
            log.exception("drain of %s failed; retrying", route.campus)
        finally:
            self._draining.discard(route.campus)
