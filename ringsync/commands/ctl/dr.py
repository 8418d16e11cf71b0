"""`ringsync ctl route|switchover|switchback|failback`: the routing map and planned moves.

    ringsync ctl --cluster cluster.toml route [--json]
    ringsync ctl --cluster cluster.toml switchover --campus A --to B [--json]
    ringsync ctl --cluster cluster.toml switchover --set S --to B [--json]
    ringsync ctl --cluster cluster.toml switchback --campus A [--json]
    ringsync ctl --cluster cluster.toml failback --campus A [--json]

A move is lossless: the route goes ``draining``; the node serving the
campus fences its database (if it then serves nobody else), ends the
application sessions and reports the journal head it captured through;
the DR leader moves the route once the target has applied that head.
This command starts the move and follows it, printing each step and the
time taken; ``switchback`` and ``failback`` move a campus's users home.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from ringsync.config import ClusterConfig
from ringsync.dr.routes import ACTIVE, DRAINING, Route, static_routes
from ringsync.dr.store import DRStore, EtcdError
from ringsync.errors import RingsyncError

MOVE_TIMEOUT_SECONDS = 60.0


def add_parser(sub: Any) -> None:
    route = sub.add_parser("route", help="which node serves each campus's users")
    route.add_argument("--json", action="store_true", help="print JSON")
    for name, text in (("switchover", "move a campus's users to another campus, losslessly"),
                       ("switchback", "move a switched-over campus's users back home"),
                       ("failback", "move a failed-over campus's users back home once it "
                                    "has caught up")):
        c = sub.add_parser(name, help=text)
        if name == "switchover":
            which = c.add_mutually_exclusive_group(required=True)
            which.add_argument("--campus", help="the campus whose users move")
            which.add_argument("--set", dest="set_name", metavar="SET",
                               help="a single-writer set whose writer moves (the old writer "
                                    "is fenced for it, its changes applied at the new one)")
            c.add_argument("--to", required=True, help="the campus that will serve them")
        else:
            c.add_argument("--campus", required=True, help="the campus whose users move")
        c.add_argument("--timeout", type=float, default=MOVE_TIMEOUT_SECONDS,
                       help=f"give up (and leave the route where it was) after this many "
                            f"seconds (default {MOVE_TIMEOUT_SECONDS:.0f})")
        c.add_argument("--json", action="store_true", help="print one JSON object")


def _store(cluster: ClusterConfig) -> DRStore:
    if not cluster.dr.enabled:
        raise RingsyncError(
            f"disaster recovery is off in {cluster.path} (no [dr] etcd endpoints): every campus "
            f"serves its own users and nothing can move; see the README's disaster-recovery "
            f"section")
    return DRStore(cluster.name, cluster.dr.etcd)


async def routes_of(cluster: ClusterConfig) -> dict[str, Any]:
    if not cluster.dr.enabled:
        return {"dr": False, "failover": "off: no etcd configured",
                "routes": [r.to_dict() for r in static_routes(
                    cluster.ring, {x.route_key: x.writer for x in cluster.sets}).values()]}
    store = _store(cluster)
    try:
        routes, members = await store.routes(), await store.members()
        leader = await store.client.get(store.keys.leader.encode())
    except EtcdError as e:
        raise RingsyncError(f"etcd at {', '.join(cluster.dr.etcd)} did not answer ({e}); "
                            f"check that its members run") from None
    finally:
        await store.close()
    return {
        "dr": True, "failover": f"automatic after {cluster.dr.failover_after:g}s",
        "leader": leader.value.decode() if leader is not None else None,
        "live": sorted(members),
        "routes": [routes[c].to_dict() if c in routes else Route(c, c).to_dict()
                   for c in cluster.ring] + [
            routes[x.route_key].to_dict() if x.route_key in routes
            else Route(x.route_key, x.writer).to_dict() for x in cluster.sets],
    }


def routes_table(doc: dict[str, Any]) -> str:
    lines = [f"{'CAMPUS / SET':<16}{'SERVED BY':<16}{'STATE':<10}{'EPOCH':>6}  REASON"]
    for r in doc["routes"]:
        if r["campus"].startswith("set:"):
            r = dict(r, reason=f"writer epoch {r['writer_epoch']}: {r['reason']}")
        served = r["serving"] + (f" -> {r['target']}" if r.get("target") else "")
        lines.append(f"{r['campus']:<16}{served:<16}{r['state']:<10}{r['epoch']:>6}  "
                     f"{r['reason']}")
    lines.append("")
    if doc["dr"]:
        lines.append(f"failover: {doc['failover']}; leader: {doc['leader'] or 'none'}; "
                     f"live nodes: {', '.join(doc['live']) or 'none'}")
    else:
        lines.append("automatic failover is OFF: no etcd in the cluster file's [dr] section")
    return "\n".join(lines)


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
    store = _store(cluster)
    try:
        return await _move(store, campus, to, kind, timeout, say)
    except EtcdError as e:
        raise RingsyncError(f"etcd did not answer ({e}); the route is where etcd last "
                            f"stored it: check with `ringsync ctl route`") from None
    finally:
        await store.close()


async def _move(store: DRStore, campus: str, to: str, kind: str, timeout: float,
                say: Any) -> dict[str, Any]:
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
    started, source = time.monotonic(), route.serving
    draining = route.moved(state=DRAINING, target=to, since=time.time(),
                           reason=f"{kind} to {to} requested by an operator")
    if not await store.swap_route(draining, route.revision):
        raise RingsyncError(f"{campus}'s route changed meanwhile; look again with "
                            f"`ringsync ctl route`")
    say(f"{kind}: {campus} from {source} to {to}: draining (epoch {draining.epoch})")
    fenced_at = caught_at = None
    head = 0
    while True:
        await asyncio.sleep(0.1)
        elapsed = time.monotonic() - started
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


def run(cluster: ClusterConfig, args: argparse.Namespace) -> int:
    command = args.ctl_command
    if command == "route":
        doc = asyncio.run(routes_of(cluster))
        print(json.dumps(doc, indent=2) if args.json else routes_table(doc))
        return 0
    to = args.to if command == "switchover" else args.campus
    key = f"set:{args.set_name}" if getattr(args, "set_name", None) else args.campus

    def say(line: str) -> None:
        if not args.json:
            print(line, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    result = asyncio.run(move(cluster, key, to, command, args.timeout, say))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        verdict = "done" if result["ok"] else "NOT done"
        print(f"{command} {verdict} in {result['seconds']:.2f}s")
    return 0 if result["ok"] else 1
