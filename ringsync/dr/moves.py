"""Planned route moves (switchover, switchback, failback), as an operator starts them.

A move is lossless: the route goes ``draining``; the node serving the
campus fences its database (if it then serves nobody else), ends the
application sessions and reports the journal head it captured through;
the DR leader moves the route once the target has applied that head.
``move`` starts the move and follows it, reporting each step and the time
taken; `ringsync ctl`, the console and the drill all move routes with it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ringsync.config import ClusterConfig
from ringsync.dr.routemap import open_store
from ringsync.dr.routes import ACTIVE, DRAINING, Route
from ringsync.dr.routestore import RouteStore
from ringsync.dr.store import EtcdError
from ringsync.errors import RingsyncError

MOVE_TIMEOUT_SECONDS = 60.0
POLL_SECONDS = 0.1


async def _poll_pause() -> None:
    await asyncio.sleep(POLL_SECONDS)


async def move(cluster: ClusterConfig, campus: str, to: str, kind: str, timeout: float,
               say: Any) -> dict[str, Any]:
    """Start a lossless move of ``campus``'s route (or a set's: ``set:<name>``)
    to ``to`` and follow it to the end."""
    set_keys = [s.route_key for s in cluster.sets]
    if campus.startswith("set:") and campus not in set_keys:
        raise RingsyncError(f"{cluster.path} has no single-writer set "
                            f"{campus.removeprefix('set:')!r}; sets: "
                            f"{', '.join(s.name for s in cluster.sets) or 'none'}")
    if (campus not in cluster.ring and campus not in set_keys) or to not in cluster.ring:
        raise RingsyncError(f"campuses are {', '.join(cluster.ring)}")
    store = open_store(cluster)
    try:
        return await move_route(store, campus, to, kind, timeout, say)
    except EtcdError as e:
        raise RingsyncError(f"etcd did not answer ({e}); the route is where etcd last "
                            f"stored it: check with `ringsync ctl route`") from None
    finally:
        await store.close()


async def move_route(store: RouteStore, campus: str, to: str, kind: str, timeout: float,
                     say: Any, clock: Callable[[], float] = time.monotonic,
                     pause: Callable[[], Awaitable[None]] = _poll_pause) -> dict[str, Any]:
    """Move ``campus``'s route on ``store``: refuse unless it is active, its
    serving node is live and ``to`` is live and healthy; set it draining (a
    compare-and-swap); then, after each ``pause``, read the map and report
    the drain and the result; past ``timeout`` (on ``clock``) return the
    route to where it was and raise."""
    routes, members = await store.routes(), await store.members()
    route = routes.get(campus) or Route(campus, campus)
    if route.state != ACTIVE:
        raise RingsyncError(f"{campus}'s route is already moving ({route.state} to "
                            f"{route.target}); wait for it, then retry")
    if route.serving == to:
        raise RingsyncError(f"{to} already serves {campus}'s users; nothing to do")
    target = members.get(to)
    if target is None or not target.db_healthy or not target.initialized:
        raise RingsyncError(f"{to} is not live and healthy (its node holds no etcd lease or "
                            f"reports its database down); pick another target")
    if route.serving not in members:
        raise RingsyncError(f"{route.serving}, which serves {campus} now, is not live: a "
                            f"lossless move needs it; automatic failover handles a dead campus")
    started, source = clock(), route.serving
    draining = route.moved(state=DRAINING, target=to, since=time.time(),
                           reason=f"{kind} to {to} requested by an operator")
    if not await store.swap_route(draining, route.revision):
        raise RingsyncError(f"{campus}'s route changed meanwhile; look again with "
                            f"`ringsync ctl route`")
    say(f"{kind}: {campus} from {source} to {to}: draining (epoch {draining.epoch})")
    fenced_at = caught_at = None
    head = 0
    while True:
        await pause()
        elapsed = clock() - started
        routes, members = await store.routes(), await store.members()
        now_route = routes[campus]
        drained = members[source].drained.get(campus) if source in members else None
        if fenced_at is None and drained is not None and drained[0] == draining.epoch:
            fenced_at, head = elapsed, drained[1]
            fenced = ("its set fence closed" if campus.startswith("set:")
                      else "fenced if it serves nobody else")
            say(f"  {source} drained for {campus} ({fenced}), "
                f"captured through seq {head} ({elapsed:.2f}s)")
        if now_route.epoch > draining.epoch:
            ok = now_route.serving == to and now_route.state == ACTIVE
            if ok and caught_at is None:
                caught_at = elapsed
            say(f"  route {campus}: {now_route.serving} ({now_route.reason}) ({elapsed:.2f}s)")
            return {"campus": campus, "from": source, "to": to, "kind": kind, "ok": ok,
                    "seconds": round(elapsed, 3),
                    "fence_seconds": round(fenced_at, 3) if fenced_at is not None else None,
                    "head": head, "epoch": now_route.epoch, "reason": now_route.reason}
        if elapsed > timeout:
            back = now_route.moved(state=ACTIVE, target="", since=time.time(),
                                   reason=f"{kind} to {to} abandoned after {timeout:.0f}s")
            await store.swap_route(back, now_route.revision)
            applied = members[to].applied.get(source, 0) if to in members else 0
            raise RingsyncError(f"{kind} did not finish in {timeout:.0f}s ({to} applied "
                                f"{source} up to {applied} of {head or '?'}); the route "
                                f"stays with {source}")
