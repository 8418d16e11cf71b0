"""The single-writer-set part of the DR agent (node.dr.agent.DRAgent mixes it in).

For each set (ringsync.dr.routes: route ``set:<name>``) it keeps the
database's set fence in step: open, to the lease deadline, only where the
set's route is active, on a fresh map, with a healthy database, under the
writer epoch capture stamps (raised only once capture has journaled what was
committed under the old one), once the previous writer's tenure is applied
through its base and this node's own stale changes are undone (node.dr.sets).
A deposed writer's node also fences first and lets capture catch up before
the applier may undo its stale tail.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from node.dr.host import AgentRuntime
from ringsync.dr.routes import ACTIVE, Route
from ringsync.dr.settings import DRSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

DRAIN_CAPTURE_TIMEOUT_SECONDS = 30.0


class SetFencing:
    """State and steps of the set fences; DRAgent provides the attributes below."""

    rt: AgentRuntime
    me: str
    settings: DRSettings
    db_healthy: Callable[[], bool]
    clock: Callable[[], float]  # wall time
    _fence_lock: asyncio.Lock
    _lease_deadline: float
    _set_fenced: dict[str, float]

    def map_fresh(self) -> bool:
        raise NotImplementedError

    def _routes(self) -> dict[str, Route]:
        raise NotImplementedError

    async def _fence_in_step(self) -> None:
        raise NotImplementedError

    def _set_writable_until(self, name: str) -> float:
        """A set opens here only while its route is active here (on a fresh map,
        with a healthy database, to the lease deadline), under the epoch capture
        stamps, once every earlier writer's tenure is applied through its base
        and this node's own stale changes are undone."""
        sets = self.rt.sets
        route = self._routes().get(sets.sets[name].route_key)
        if (route is None or route.serving != self.me or route.state != ACTIVE
                or not self.db_healthy() or not self.map_fresh()
                or sets.epochs.get(name) != route.writer_since
                or sets.own_tenures_pending(name)):
            return 0.0
        applied = self.rt.applied
        if any(writer != self.me and applied.get(writer, 0) < base
               for _, writer, base in route.tenures):
            return 0.0  # not every earlier writer's tenure is applied here yet
        return float("inf") if not self.settings.enabled else self._lease_deadline

    async def _fence_call(self, fn: Callable[..., T], *args: Any) -> T:
        """A fence write: on the engine's own fence connection and the node's
        fence thread where the engine has one (PostgreSQL: it never waits for a
        synchronous standby, nor long for a lock), so apply batches and
        commits waiting for a peer never delay it; else on the engine thread
        (SQLite: one connection)."""
        if self.rt.engine.fence.own_fence_connection:
            return await self.rt.in_fence(fn, *args)
        return await self.rt.in_engine(fn, *args)

    async def _set_fences_in_step(self) -> None:
        async with self._fence_lock:
            await self._set_fences_locked()

    async def _set_fences_locked(self) -> None:
        for name in self.rt.sets.sets:
            until = self._set_writable_until(name)
            if until != self._set_fenced.get(name):
                await self._store_set_fence(name, until)

    async def _store_set_fence(self, name: str, until: float) -> None:
        rt = self.rt
        was = self._set_fenced.get(name, 0.0)
        try:
            await self._fence_call(rt.engine.fence.set_set_fence, name, until,
                                   rt.sets.epochs.get(name, 0))
        except Exception as e:  # the database is down: it fences itself by its clock
            log.debug("cannot store the fence of set %s (%s)", name, e)
            return
        self._set_fenced[name] = until
        if (until > self.clock()) != (was > self.clock()):
            log.warning("set %s: %s (epoch %d)", name,
                        "this campus is its WRITER now" if until > self.clock() else
                        "writes here are refused (not its writer)",
                        rt.sets.epochs.get(name, 0))

    async def _capture_caught_up(self, why: str) -> bool:
        """Capture has journaled every transaction committed so far."""
        rt = self.rt
        position = await rt.in_engine(rt.engine.source.commit_position)
        deadline = time.monotonic() + DRAIN_CAPTURE_TIMEOUT_SECONDS
        while rt.journaled_through < position:
            if time.monotonic() > deadline:
                log.error("%s: capture did not reach %d in %.0fs", why, position,
                          DRAIN_CAPTURE_TIMEOUT_SECONDS)
                return False
            await asyncio.sleep(0.02)
        return True

    async def _prepare_set_epoch(self, name: str) -> None:
        """Before opening a set under a new writer epoch, capture journals what
        was committed under the old one (so stamps stay true), then capture
        starts stamping the new one."""
        sets = self.rt.sets
        route = self._routes().get(sets.sets[name].route_key)
        if (route is None or route.serving != self.me or route.state != ACTIVE
                or sets.epochs.get(name) == route.writer_since):
            return
        if await self._capture_caught_up(f"set {name}: opening epoch {route.writer_since}"):
            sets.epochs[name] = route.writer_since

    async def _sets_tick(self) -> None:
        sets = self.rt.sets
        for name in sets.sets:
            if sets.own_tenures_pending(name) and name not in sets.capture_ready:
                # Fenced first, then everything this database committed as the
                # set's writer journaled: then the applier can undo the stale tail.
                await self._fence_in_step()
                if self._set_fenced.get(name, 0.0) == 0.0 and await self._capture_caught_up(
                        f"set {name}: own stale changes"):
                    sets.capture_ready.add(name)
            elif not sets.own_tenures_pending(name):
                sets.capture_ready.discard(name)
            await self._prepare_set_epoch(name)
