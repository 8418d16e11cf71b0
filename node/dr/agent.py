"""DRAgent: the node's part in disaster recovery, one loop per node.

Every tick (DR on, i.e. the cluster file lists etcd endpoints) it

1. keeps this node's etcd lease alive and publishes its member report
   (database health, vectors, drains) on that lease;
2. reads the routing map;
3. keeps the database's fence in step: application writes are allowed only
   until ``last lease refresh sent + lease_ttl``, and only while some
   campus's route is active on this node. The guard is in the database
   (node.engines.*fence), so a node that dies or is cut off from the etcd
   majority leaves a database that fences itself when the lease would have
   expired, without any action of ours;
4. drains: for a route moving off this node it fences (if it then serves
   nobody), ends application sessions, waits for capture to journal every
   transaction committed before, and reports its journal head;
5. as the elected leader (a lease-backed key), moves routes: automatic
   failover (ringsync.dr.routes.failovers), completing drains, and automatic
   failback when configured (node.dr.leading);
6. keeps each single-writer set's fence in step: open (to the same lease
   deadline) only where the set's route is active, after this database holds
   the previous writer's tenure through its base and has undone its own stale
   changes, under the route's writer epoch (stored with the fence, stamped by
   capture; node.dr.sets).

With DR off the routing map is static (every campus serves itself), the
fence is lifted for ever, and the agent only answers ``serving``.

The pure decisions (is the map fresh, until when may the database take
writes, what to drain) are node.dr.decisions; the leader's are
node.dr.leading; the drains (4.) are node.dr.draining and the set fences
(6.) node.dr.setfencing, both mixed in. The agent talks to etcd through a RouteStore
(ringsync.dr.routestore) and reads the node through an AgentRuntime
(node.dr.host); both, and the clock, can be given (unit tests).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from node.dr.decisions import map_fresh, writable_until
from node.dr.draining import Draining
from node.dr.host import AgentRuntime
from node.dr.leading import Leadership, store_moves
from node.replication.resources import Notifier
from ringsync.dr.routes import Member, Route, is_set_route, static_routes
from ringsync.dr.routestore import RouteStore
from ringsync.dr.store import DRStore, EtcdError

log = logging.getLogger(__name__)

TICK_SECONDS = 0.2
MEMBER_REFRESH_SECONDS = 0.5
# Margin for the database clock running faster than etcd's between refreshes.
FENCE_MARGIN_SECONDS = 0.3


@dataclass
class DRView:
    """What status, the HTTP endpoint and WatchRoutes show of DR at this node."""

    enabled: bool
    routes: dict[str, Route]
    leader: str = ""
    lease_ok: bool = False
    writable_until: float = 0.0
    error: str = ""
    changed: Notifier = field(default_factory=Notifier)


class DRAgent(Draining):
    def __init__(self, rt: AgentRuntime, db_healthy: Callable[[], bool],
                 store: RouteStore | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        """``store``: the routing store to use with DR on (default: etcd at the
        cluster file's endpoints, opened by ``run``); ``clock``: wall time."""
        self.rt = rt
        self.db_healthy = db_healthy
        self.clock = clock
        self.me = rt.campus
        self.cluster = rt.config.cluster
        self.settings = rt.config.dr
        # With DR on, nothing is served until the routing map was read from etcd.
        self.set_writers = {s.route_key: s.writer for s in self.cluster.sets}
        self.view = DRView(self.settings.enabled, {} if self.settings.enabled
                           else static_routes(self.cluster.ring, self.set_writers))
        self.store: RouteStore | None = store
        self._lease = 0
        self._lease_deadline = 0.0  # wall clock: our lease is certainly alive before this
        self._next_keepalive = 0.0  # wall clock: when to refresh the lease next
        self._next_member = 0.0
        self._fenced_until = -1.0  # what we last stored in the database
        self._drained: dict[str, list[int]] = {}
        self._draining: set[str] = set()
        self.leadership = Leadership(self.cluster, self.settings)
        self._fence_lock = asyncio.Lock()
        self._routes_read_at = 0.0  # wall clock of the last map read under the current lease
        self._drain_tasks: set[asyncio.Task[None]] = set()
        self._set_fenced: dict[str, float] = {}  # set -> writable_until last stored
        self._fence_wanted = Notifier()  # the lease loop (and the tick) wake the fence loop

    # -- what others ask ---------------------------------------------------

    def serving(self, campus: str) -> bool:
        """This node's database serves ``campus``'s users right now (and can prove it)."""
        route = self.view.routes.get(campus)
        if route is None or route.serving != self.me or route.state != "active":
            return False
        return self.db_healthy() and self.map_fresh()

    # -- the loop ----------------------------------------------------------

    async def run(self) -> None:
        # A joining campus's copy holds a transaction on the engine's connection:
        # the fence is not touched (nor the campus claimed) before the join is done.
        await self.rt.initialized.wait()
        self.rt.sets.update(self.view.routes, self.map_fresh, self.settings.enabled)
        if not self.settings.enabled:
            await self._store_fence(float("inf"))
            for name in self.rt.sets.sets:
                await self._prepare_set_epoch(name)
            await self._set_fences_in_step()
            log.info("disaster recovery is off (no [dr] etcd in %s): every campus serves its "
                     "own users; automatic failover is OFF", self.cluster.path)
            return
        log.info("disaster recovery on: etcd %s, failover after %.1fs, lease %ds",
                 ",".join(self.settings.etcd), self.settings.failover_after,
                 self.settings.lease_ttl)
        if self.store is None:
            self.store = DRStore(self.cluster.name, self.settings.etcd,
                                 timeout=max(1.0, self.settings.lease_ttl / 3),
                                 tls=self.rt.config.tls if self.settings.etcd_tls else None)
        # Until the lease is proven, this database takes no application writes.
        await self._store_fence(0.0)
        for name in self.rt.sets.sets:
            await self._store_set_fence(name, 0.0)
        lease = asyncio.create_task(self._lease_loop(), name="dr-lease")
        fence = asyncio.create_task(self._fence_loop(), name="dr-fence")
        reader = asyncio.create_task(self._routes_loop(), name="dr-routes")
        try:
            while True:
                if self._lease:
                    try:
                        await self._tick()
                        self.view.error = ""
                    except (EtcdError, OSError) as e:
                        self._etcd_failed(e)
                    except Exception:  # a bug or an engine error: log it, keep fencing
                        log.exception("DR tick failed")
                self._fence_wanted.notify()
                await asyncio.sleep(TICK_SECONDS)
        finally:
            lease.cancel()
            fence.cancel()
            reader.cancel()
            await asyncio.gather(lease, fence, reader, return_exceptions=True)
            await self._goodbye()

    async def _lease_loop(self) -> None:
        """Keep the lease alive on its own schedule (every lease_ttl / 3), never
        behind the routing work, so a slow link to etcd does not fence a
        healthy campus, and never behind a database write: the fence loop
        extends the database's deadline right after each refresh. (Awaiting the
        fence write here once let a set fence write, blocked by an application
        whose synchronous commit waited for a dead successor, hold back the
        keep-alive until the lease expired: sync mode fenced a healthy campus.)"""
        while True:
            try:
                await self._refresh_lease()
            except (EtcdError, OSError) as e:
                self._etcd_failed(e)
                await asyncio.sleep(TICK_SECONDS)
                continue
            except Exception:  # never let the keep-alive die silently
                log.exception("DR lease refresh failed")
                await asyncio.sleep(TICK_SECONDS)
                continue
            self._fence_wanted.notify()
            await asyncio.sleep(max(0.0, self._next_keepalive - self.clock()))

    async def _fence_loop(self) -> None:
        """Extend (or close) the fences right after each lease refresh, and at
        least every tick; on the engine's fence connection and thread
        (``_fence_call``), so neither apply nor a commit waiting for a peer
        delays it."""
        while True:
            ticket = self._fence_wanted.ticket()
            try:
                await self._fence_in_step()
            except Exception:  # never let the fence extension die silently
                log.exception("DR fence extension failed")
            await self._fence_wanted.wait(ticket, TICK_SECONDS)

    def _etcd_failed(self, error: Exception) -> None:
        text = f"etcd unreachable ({type(error).__name__}: {error})".strip()
        if text != self.view.error:
            log.warning("%s; this campus stops claiming routes when its lease would expire", text)
        self.view.error = text
        self.view.lease_ok = self.clock() < self._lease_deadline

    async def _read_routes(self) -> dict[str, Route] | None:
        """Read the routing map; keep it (and its freshness, dated when the read
        began) unless the lease was re-granted meanwhile or a read begun later
        was kept already. None if not kept."""
        assert self.store is not None
        now = self.clock()
        lease = self._lease
        routes = await self.store.routes()
        if len(routes) < len(self.cluster.ring) + len(self.set_writers):
            await self.store.ensure_routes(self.cluster.ring, now, self.set_writers)
            routes = await self.store.routes()
        if lease != self._lease:  # re-granted meanwhile: this read may predate a failover
            return None
        if now < self._routes_read_at:  # the routes loop kept a newer read meanwhile
            return self.view.routes
        self._set_routes(routes)
        self._routes_read_at = now
        return routes

    async def _routes_loop(self) -> None:
        """Keep the map fresh on its own schedule: the tick also leads, drains
        and publishes, a few etcd round trips that at 200 ms per hop (the
        wan-soak drill) took longer than the lease, so the map went stale and
        a healthy campus's fence closed between ticks."""
        while True:
            if self._lease:
                try:
                    if await self._read_routes() is not None:
                        self._fence_wanted.notify()
                except (EtcdError, OSError) as e:
                    self._etcd_failed(e)
                except Exception:
                    log.exception("DR routing map read failed")
            await asyncio.sleep(TICK_SECONDS)

    async def _tick(self) -> None:
        assert self.store is not None
        routes = await self._read_routes()
        if routes is None:
            return
        await self._drain(routes)
        if self.rt.sets.enabled:
            await self._sets_tick()
        if self.clock() >= self._next_member:
            await self._publish_member()
        leader = await self.store.campaign(self.me, self._lease)
        if leader != self.view.leader:
            log.info("DR leader: %s", leader or "none")
            self.view.leader = leader
            self.view.changed.notify()
        if leader == self.me:
            await self._lead(routes)
        else:  # a leader's timers are its own observations: start afresh next time
            self.leadership.forget()

    async def _refresh_lease(self) -> None:
        assert self.store is not None
        ttl = self.settings.lease_ttl
        sent = self.clock()
        left = await self.store.keepalive(self._lease) if self._lease else 0
        if left <= 0:
            if self._lease:
                log.warning("etcd lease %x expired; taking a new one", self._lease)
            sent = self.clock()
            self._lease = await self.store.grant(ttl)
            self._next_member = 0.0  # the member key went with the old lease
            # The map read under the old lease may be stale (we may have been failed
            # over meanwhile): nothing opens again before it is read afresh.
            self._routes_read_at = 0.0
            self._set_routes({})
        self._lease_deadline = sent + ttl - FENCE_MARGIN_SECONDS
        self._next_keepalive = sent + ttl / 3
        self.view.lease_ok = True

    def _set_routes(self, routes: dict[str, Route]) -> None:
        if routes != self.view.routes:
            for campus, route in routes.items():
                old = self.view.routes.get(campus)
                if old is None or old.epoch != route.epoch:
                    log.info("route %s: served by %s (%s, epoch %d): %s", campus,
                             route.serving, route.state, route.epoch, route.reason)
            self.view.routes = routes
            self.rt.sets.update(routes, self.map_fresh)
            self.view.changed.notify()

    # -- fencing -----------------------------------------------------------

    def _routes(self) -> dict[str, Route]:
        return self.view.routes

    def map_fresh(self) -> bool:
        """The routing map was read under the current, live lease within one
        lease length (always, with DR off)."""
        return map_fresh(self.clock(), enabled=self.settings.enabled,
                         lease_ok=self.view.lease_ok, lease_deadline=self._lease_deadline,
                         routes_read_at=self._routes_read_at, lease_ttl=self.settings.lease_ttl)

    def _writable_until(self) -> float:
        return writable_until(self.view.routes, self.me, self.clock(),
                              db_healthy=self.db_healthy(), lease_deadline=self._lease_deadline,
                              routes_read_at=self._routes_read_at,
                              lease_ttl=self.settings.lease_ttl)

    async def _fence_in_step(self) -> None:
        async with self._fence_lock:
            await self._fence_locked()
            await self._set_fences_locked()

    async def _fence_locked(self) -> None:
        until = self._writable_until()
        if until == self._fenced_until:
            return
        was_open = self._fenced_until != 0.0
        await self._store_fence(until)
        if until == 0.0 and was_open and self._fenced_until == 0.0:
            try:
                ended = await self._fence_call(self.rt.engine.fence.end_app_sessions)
            except Exception as e:  # e.g. the role may not end other sessions
                log.error("campus database FENCED, but its application sessions could not "
                          "be ended: %s", e)
                return
            log.warning("campus database FENCED (serves no campus, or lease lost); "
                        "%d application session(s) ended", ended)

    async def _store_fence(self, until: float) -> None:
        try:
            await self._fence_call(self.rt.engine.fence.set_fence, until)
            self._fenced_until = until
            self.view.writable_until = until
            self.view.changed.notify()
        except Exception as e:  # the database is down: it fences itself by its clock
            log.debug("cannot store the fence (%s); the stored deadline stands", e)

    # -- membership and leadership -----------------------------------------

    async def _publish_member(self) -> None:
        assert self.store is not None
        rt = self.rt
        member = Member(
            campus=self.me, db_healthy=self.db_healthy(),
            initialized=rt.initialized.is_set(), writable=self._writable_until() > self.clock(),
            journal=rt.journal.vector() if rt.initialized.is_set() else {},
            applied=rt.applied_vector() if rt.initialized.is_set() else {},
            drained=dict(self._drained),
            sets_open=sorted(self.rt.sets.sets[n].route_key for n, until in
                             self._set_fenced.items() if until > self.clock()),
            seen={k: r.epoch for k, r in self.view.routes.items() if is_set_route(k)},
            at=self.clock())
        await self.store.put_member(member, self._lease)
        self._next_member = self.clock() + MEMBER_REFRESH_SECONDS

    async def _lead(self, routes: dict[str, Route]) -> None:
        assert self.store is not None
        members = await self.store.members()
        await store_moves(self.store, routes,
                          self.leadership.moves(routes, members, self.clock()))

    async def _goodbye(self) -> None:
        """Stopping cleanly: fence, and give the lease back so failover need not wait."""
        await self._store_fence(0.0)
        for name in self.rt.sets.sets:
            await self._store_set_fence(name, 0.0)
        fence = self.rt.engine.fence
        if fence.own_fence_connection:
            try:
                await self.rt.in_fence(fence.close_fence)
            except Exception:
                pass
        if self.store is not None:
            try:
                if self._lease:
                    await asyncio.wait_for(self.store.revoke(self._lease), 2.0)
            except (EtcdError, OSError, TimeoutError):
                pass
            await self.store.close()
