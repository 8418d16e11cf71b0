"""`ringsync ctl conflicts`: every campus's conflict log, merged, as a table or JSON.

    ringsync ctl --cluster cluster.toml conflicts list [--table T] [--campus C]
        [--since 10m|2h|2026-11-23T08:00] [--state logged|parked|flagged] [--limit N] [--json]
    ringsync ctl --cluster cluster.toml conflicts show ID --at CAMPUS [--json]
    ringsync ctl --cluster cluster.toml conflicts resolve ID --at CAMPUS \
        --take local|remote|'{"column": value, ...}'

Each campus logs the conflicts it detected itself (the same concurrent edit
is usually seen at several campuses, each from its own side). ``list
--json`` prints {"conflicts": [...]}, newest first, each entry with the
campus that logged it (``at_campus``), table, key, kind, rule, winner,
both origins and stamps, both rows and state; ``errors`` names any campus
that did not answer.

``resolve`` settles a parked conflict (policy ``manual``) at the campus that
logged it: the chosen row is written there as an ordinary edit, which
supersedes both versions on every campus and closes their parked entries.
It needs an operator certificate.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import re
from collections.abc import Callable
from typing import Any

import grpc

from ringsync.client import ClusterClient, describe_rpc_error
from ringsync.config import ClusterConfig
from ringsync.errors import ConfigError
from ringsync.v1 import control_pb2 as cpb

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def add_parser(ctl_sub: Any) -> None:
    c = ctl_sub.add_parser("conflicts", help="the conflict logs of every campus")
    sub = c.add_subparsers(dest="conflicts_command", required=True)
    ls = sub.add_parser("list", help="conflicts, newest first")
    ls.add_argument("--table", default="", help="only this table")
    ls.add_argument("--campus", default="", help="only conflicts involving this campus")
    ls.add_argument("--since", default="", help="age (30s, 10m, 2h, 1d) or ISO time (UTC)")
    ls.add_argument("--state", default="",
                    choices=("", "logged", "parked", "flagged", "resolved"))
    ls.add_argument("--limit", type=int, default=50, help="per campus (default 50)")
    ls.add_argument("--json", action="store_true", help="print JSON")
    show = sub.add_parser("show", help="one conflict with both rows")
    show.add_argument("id", type=int)
    show.add_argument("--at", required=True, help="the campus that logged it")
    show.add_argument("--json", action="store_true", help="print JSON")
    res = sub.add_parser("resolve", help="settle a parked conflict (operators)")
    res.add_argument("id", type=int)
    res.add_argument("--at", required=True, help="the campus that logged it")
    res.add_argument("--take", required=True,
                     help='local, remote, or the whole row as a JSON object')


def parse_since(text: str, now: float | None = None) -> float:
    if not text:
        return 0.0
    now = dt.datetime.now(dt.UTC).timestamp() if now is None else now
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text.strip())
    if m:
        return now - float(m.group(1)) * UNITS[m.group(2)]
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--since {text!r}: give an age like 10m or 2h, or an ISO time "
                          f"like 2026-11-23T08:00") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def entry_to_dict(campus: str, e: cpb.ConflictEntry) -> dict[str, Any]:
    return {
        "at_campus": campus, "id": e.id,
        "at": dt.datetime.fromtimestamp(e.at, dt.UTC).isoformat(timespec="milliseconds"),
        "table": e.table, "key": json.loads(e.key), "kind": e.kind, "rule": e.rule,
        "winner": e.winner, "state": e.state,
        "local": {"origin": e.local_origin or None, "hlc": e.local_hlc,
                  "row": json.loads(e.local_row) if e.local_row else None},
        "remote": {"origin": e.remote_origin, "seq": e.remote_seq, "hlc": e.remote_hlc,
                   "row": json.loads(e.remote_row) if e.remote_row else None},
        "skew_ms": e.skew_ms, "resolution": e.resolution or None,
    }


async def collect(cluster: ClusterConfig, request: cpb.ConflictsRequest,
                  only: str = "") -> tuple[list[dict[str, Any]], dict[str, str]]:
    client = ClusterClient(cluster)
    campuses = [only] if only else list(cluster.ring)

    async def one(campus: str) -> tuple[str, Any]:
        try:
            return campus, await client.conflicts(campus, request)
        except grpc.aio.AioRpcError as e:
            return campus, describe_rpc_error(e)

    try:
        replies = await asyncio.gather(*(one(c) for c in campuses))
    finally:
        await client.close()
    entries: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    for campus, reply in replies:
        if isinstance(reply, str):
            errors[campus] = reply
        else:
            entries += [entry_to_dict(campus, e) for e in reply.conflicts]
    entries.sort(key=lambda e: e["at"], reverse=True)
    return entries, errors


def table(entries: list[dict[str, Any]]) -> str:
    lines = [f"{'AT CAMPUS':<16}{'ID':>6}  {'WHEN (UTC)':<24}{'TABLE':<14}{'KIND':<15}"
             f"{'WINNER':<8}{'LOCAL':<14}{'REMOTE':<14}RULE"]
    for e in entries:
        lines.append(
            f"{e['at_campus']:<16}{e['id']:>6}  {e['at'][:23]:<24}{e['table']:<14}"
            f"{e['kind']:<15}{e['winner']:<8}{e['local']['origin'] or '-':<14}"
            f"{e['remote']['origin']:<14}{e['rule']}")
    if not entries:
        lines.append("(no conflicts)")
    return "\n".join(lines)


async def _resolve(cluster: ClusterConfig, args: argparse.Namespace) -> int:
    client = ClusterClient(cluster)
    try:
        done = await client.resolve_conflict(args.at, args.id, args.take)
    except grpc.aio.AioRpcError as e:
        print(f"ringsync ctl conflicts resolve: {args.at}: {describe_rpc_error(e)}")
        return 1
    finally:
        await client.close()
    print(json.dumps({"campus": done.campus, "table": done.table, "key": json.loads(done.key),
                      "row": json.loads(done.row) if done.row else None}, indent=2,
                     ensure_ascii=False))
    return 0


def run(cluster: ClusterConfig, args: argparse.Namespace) -> int:
    if args.conflicts_command in ("show", "resolve") and args.at not in cluster.ring:
        raise ConfigError(f"--at {args.at!r} is not a campus of {list(cluster.ring)}")
    if args.conflicts_command == "resolve":
        return asyncio.run(_resolve(cluster, args))
    if args.conflicts_command == "show":
        entries, errors = asyncio.run(collect(cluster, cpb.ConflictsRequest(id=args.id),
                                              only=args.at))
        if errors:
            print(f"{args.at}: {errors[args.at]}")
            return 1
        if not entries:
            print(f"campus {args.at} has no conflict {args.id} (it may be past retention)")
            return 1
        print(json.dumps(entries[0], indent=2, ensure_ascii=False))
        return 0
    request = cpb.ConflictsRequest(table=args.table, campus=args.campus,
                                   since=parse_since(args.since), limit=args.limit,
                                   state=args.state)
    entries, errors = asyncio.run(collect(cluster, request))
    return print_merged(cluster, "conflicts", entries, errors, table if not args.json else None)


def print_merged(cluster: ClusterConfig, name: str, entries: list[dict[str, Any]],
                 errors: dict[str, str], as_table: Callable[[list[dict[str, Any]]], str] | None
                 ) -> int:
    """Every campus's entries as JSON ({cluster, <name>, errors}) or as a table
    with the campuses that did not answer; exit 1 if any did not."""
    if as_table is None:
        print(json.dumps({"cluster": cluster.name, name: entries, "errors": errors},
                         indent=2, ensure_ascii=False))
    else:
        print(as_table(entries))
        for campus, error in errors.items():
            print(f"! {campus}: {error}")
    return 1 if errors else 0
