"""`ringsync ctl dlq`: changes a campus could not apply, and what to do with them.

    ringsync ctl --cluster cluster.toml dlq list [--state parked|applied|skipped|stale|rejected]
                                                 [--table T]
    ringsync ctl --cluster cluster.toml dlq show ID --at CAMPUS
    ringsync ctl --cluster cluster.toml dlq retry ID --at CAMPUS    (operators)
    ringsync ctl --cluster cluster.toml dlq skip ID --at CAMPUS     (operators)

A change that fails to apply at a campus (after retries) is parked there
with its error, and later changes of the same row park behind it; the rest
of the stream flows. Fix the cause (a constraint, a column type), then
``retry``: the change and those behind it are applied in order. ``skip``
drops it (those behind it are then retried). Every action is recorded with
the entry. ``list --json`` prints {"dead_letters": [{"at_campus", "id", "at",
"origin", "seq", "table", "key", "op", "row", "error", "attempts", "state",
"actions"}], "errors": {}}.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
from typing import Any

import grpc

from ringsync.client import ClusterClient, describe_rpc_error
from ringsync.commands.ctl.conflicts import print_merged
from ringsync.config import ClusterConfig
from ringsync.errors import ConfigError
from ringsync.v1 import control_pb2 as cpb


def add_parser(ctl_sub: Any) -> None:
    d = ctl_sub.add_parser("dlq", help="changes a campus could not apply (dead letters)")
    sub = d.add_subparsers(dest="dlq_command", required=True)
    ls = sub.add_parser("list", help="dead letters of every campus, oldest first")
    ls.add_argument("--state", default="", choices=("", "parked", "applied", "skipped", "stale",
                                                            "rejected"))
    ls.add_argument("--table", default="")
    ls.add_argument("--limit", type=int, default=100, help="per campus (default 100)")
    ls.add_argument("--json", action="store_true", help="print JSON")
    for name, text in (("show", "one entry with its row, error and actions"),
                       ("retry", "apply it again, then those behind it (operators)"),
                       ("skip", "drop it, then retry those behind it (operators)")):
        c = sub.add_parser(name, help=text)
        c.add_argument("id", type=int)
        c.add_argument("--at", required=True, help="the campus that parked it")
        c.add_argument("--json", action="store_true", help="print JSON")


def entry_to_dict(campus: str, e: cpb.DeadLetter) -> dict[str, Any]:
    return {
        "at_campus": campus, "id": e.id,
        "at": dt.datetime.fromtimestamp(e.at, dt.UTC).isoformat(timespec="milliseconds"),
        "origin": e.origin, "seq": e.seq, "table": e.table, "key": json.loads(e.key),
        "op": {"I": "insert", "U": "update", "D": "delete"}.get(e.op, e.op),
        "row": json.loads(e.row) if e.row else None, "error": e.error,
        "attempts": e.attempts, "state": e.state, "actions": json.loads(e.actions or "[]"),
    }


async def collect(cluster: ClusterConfig, request: cpb.DeadLettersRequest,
                  only: str = "") -> tuple[list[dict[str, Any]], dict[str, str]]:
    client = ClusterClient(cluster)
    entries: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    try:
        for campus in [only] if only else cluster.ring:
            try:
                reply = await client.dead_letters(campus, request)
            except grpc.aio.AioRpcError as e:
                errors[campus] = describe_rpc_error(e)
                continue
            entries += [entry_to_dict(campus, e) for e in reply.entries]
    finally:
        await client.close()
    return entries, errors


def table(entries: list[dict[str, Any]]) -> str:
    lines = [f"{'AT CAMPUS':<16}{'ID':>5}  {'STATE':<9}{'TABLE':<14}{'OP':<8}{'FROM':<16}"
             f"{'TRIES':>5}  ERROR"]
    for e in entries:
        lines.append(f"{e['at_campus']:<16}{e['id']:>5}  {e['state']:<9}{e['table']:<14}"
                     f"{e['op']:<8}{e['origin'] + '/' + str(e['seq']):<16}{e['attempts']:>5}  "
                     f"{e['error'][:70]}")
    if not entries:
        lines.append("(no dead letters)")
    return "\n".join(lines)


async def _act(cluster: ClusterConfig, campus: str, entry_id: int, action: str) -> int:
    client = ClusterClient(cluster)
    try:
        result = await client.act_on_dead_letter(campus, entry_id, action)
    except grpc.aio.AioRpcError as e:
        print(f"ringsync ctl dlq {action}: {campus}: {describe_rpc_error(e)}")
        return 1
    finally:
        await client.close()
    outcome = json.loads(result.outcome)
    print(json.dumps({"campus": campus, "outcome": outcome}, indent=2))
    return 0 if all(o["state"] != "parked" for o in outcome) else 1


def run(cluster: ClusterConfig, args: argparse.Namespace) -> int:
    command = args.dlq_command
    if command != "list" and args.at not in cluster.ring:
        raise ConfigError(f"--at {args.at!r} is not a campus of {list(cluster.ring)}")
    if command in ("retry", "skip"):
        return asyncio.run(_act(cluster, args.at, args.id, command))
    if command == "show":
        entries, errors = asyncio.run(collect(cluster, cpb.DeadLettersRequest(id=args.id),
                                              only=args.at))
        if errors or not entries:
            print(errors.get(args.at) or f"campus {args.at} has no dead letter {args.id}")
            return 1
        print(json.dumps(entries[0], indent=2, ensure_ascii=False))
        return 0
    request = cpb.DeadLettersRequest(table=args.table, state=args.state, limit=args.limit)
    entries, errors = asyncio.run(collect(cluster, request))
    return print_merged(cluster, "dead_letters", entries, errors,
                        table if not args.json else None)
