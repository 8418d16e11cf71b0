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
from typing import Any

from ringsync.config import ClusterConfig
from ringsync.dr.moves import MOVE_TIMEOUT_SECONDS, move
from ringsync.dr.routemap import routes_of


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
