"""`ringsync ctl repair`: fix the rows verify found diverged, through the ring.

    ringsync ctl --cluster cluster.toml repair (--table T [--key JSON] | --all)
        [--from CAMPUS] [--dry-run] [--settle S] [--json]

Runs a verification of the tables first (ringsync.verification) and repairs
only ``diverged`` rows: a difference still ``in_flight`` is left to the ring,
so no row is deleted on the strength of one pass. For each row it picks the
copy to keep (ringsync.repair_choice): with ``--from``, that campus's (its
row, or its absence); by default the one the table's conflict policy picks
among the copies that are what their recorded versions say (each campus is
asked, changing nothing), else the majority's (``present`` in the report),
refusing a row with no majority. The fix is one ordinary local edit at one campus
(node.verify.repair): ``reassert`` the kept copy where it is, or ``delete``
the row where it should not be; the change replicates everywhere. Then the
same tables are verified again. Operator certificate only.

Exit 0 when every repaired row then verifies equal everywhere, 1 otherwise
(a refusal, a campus that failed, a row still different), 2 when a campus
could not answer the first verification. ``--json`` prints {"repairs":
[{"table", "key", "kind", "action", "at", "state": planned|done|refused,
"reason", "detail"}], "in_flight": n, "after": {the verify report} | null, "exit"}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

import grpc

from ringsync.client import ClusterClient, describe_rpc_error
from ringsync.commands.ctl.verify import progress
from ringsync.config import ClusterConfig
from ringsync.errors import ConfigError
from ringsync.repair_choice import POLICY_RULES, Choice, Copy, by_majority, by_policy, from_campus
from ringsync.verification import SETTLE_SECONDS, Difference, Verification


def add_parser(ctl_sub: Any) -> None:
    r = ctl_sub.add_parser("repair", help="fix diverged rows through the ring (operators)")
    which = r.add_mutually_exclusive_group(required=True)
    which.add_argument("--table", help="repair this table's diverged rows")
    which.add_argument("--all", action="store_true", help="every replicated table")
    r.add_argument("--key", help='only this row: its key as JSON, e.g. {"order_id": "O-1"}')
    r.add_argument("--from", dest="source", metavar="CAMPUS",
                   help="keep this campus's copy (default: the one the table's conflict "
                        "policy picks, else the majority's)")
    r.add_argument("--dry-run", action="store_true", help="say what would be done; change nothing")
    r.add_argument("--settle", type=float, default=SETTLE_SECONDS,
                   help="seconds verify waits for in-flight changes "
                        f"(default {SETTLE_SECONDS:.0f})")
    r.add_argument("--json", action="store_true", help="print JSON")


async def _copies(client: ClusterClient, diff: Difference) -> list[Copy] | str:
    """Every campus's copy of the row and its standing (inspect), or why not."""
    campuses = sorted(diff.digests)
    answers = await asyncio.gather(
        *(client.repair_row(c, diff.table, diff.key_text, "inspect") for c in campuses),
        return_exceptions=True)
    copies = []
    for campus, answer in zip(campuses, answers, strict=True):
        if isinstance(answer, grpc.aio.AioRpcError):
            return f"could not ask {campus} where its copy stands: {describe_rpc_error(answer)}"
        if isinstance(answer, BaseException):
            raise answer
        copies.append(Copy(campus, diff.digests[campus], answer.recorded, answer.rank,
                           answer.hlc, answer.origin))
    return copies


async def plan(client: ClusterClient, diff: Difference, rule: str,
               source: str | None) -> Choice | str:
    """The write that repairs one diverged row (ringsync.repair_choice), or
    why there is none."""
    kind, marks = diff.kind_and_campuses()
    if source is not None:
        return from_campus(marks, source)
    if rule in POLICY_RULES:
        copies = await _copies(client, diff)
        if isinstance(copies, str):
            return copies
        chosen = by_policy(rule, copies)
        if chosen is not None:
            return chosen
    choice = by_majority(marks, kind)
    if isinstance(choice, Choice) and rule in POLICY_RULES:
        return Choice(choice.action, choice.at, f"no recorded version tells the copies apart "
                                                f"({rule}): {choice.reason}")
    return choice


async def _repair(client: ClusterClient, diff: Difference, rule: str, source: str | None,
                  dry_run: bool) -> dict[str, Any]:
    kind, _ = diff.kind_and_campuses()
    entry: dict[str, Any] = {"table": diff.table, "key": diff.key, "kind": kind}
    chosen = await plan(client, diff, rule, source)
    if isinstance(chosen, str):
        return {**entry, "action": None, "at": None, "state": "refused", "detail": chosen,
                "reason": chosen}
    entry.update(action=chosen.action, at=chosen.at, reason=chosen.reason)
    if dry_run:
        return {**entry, "state": "planned", "detail": ""}
    try:
        done = await client.repair_row(chosen.at, diff.table, diff.key_text, chosen.action)
    except grpc.aio.AioRpcError as e:
        return {**entry, "state": "refused", "detail": describe_rpc_error(e)}
    return {**entry, "state": "done", "detail": done.row or "deleted"}


async def run_repair(cluster: ClusterConfig, tables: list[str], key: dict[str, Any] | None,
                     source: str | None, dry_run: bool, settle: float) -> dict[str, Any]:
    client = ClusterClient(cluster)
    try:
        check = Verification(client, tables, settle=settle, progress=progress)
        first = await check.run()
        wanted = [(d, s) for d, s in check.found if key is None or d.key == key]
        in_flight = sum(s == "in_flight" for _, s in wanted)
        if first["exit"] == 2:
            return {"repairs": [], "in_flight": in_flight, "after": None, "exit": 2,
                    "campuses": first["campuses"]}
        rules = {t: cluster.conflicts.policy(t).rule for t in tables}
        repairs = [await _repair(client, d, rules[d.table], source, dry_run)
                   for d, s in wanted if s == "diverged"]
        after = None
        if any(r["state"] == "done" for r in repairs):
            progress(f"{sum(r['state'] == 'done' for r in repairs)} row(s) written; "
                      f"verifying again")
            after = await Verification(client, tables, settle=settle,
                                       progress=progress).run()
        still = {(d["table"], json.dumps(d["key"], sort_keys=True))
                 for d in (after or {}).get("differences", [])}
        failed = any(r["state"] == "refused" for r in repairs) or any(
            (r["table"], json.dumps(r["key"], sort_keys=True)) in still for r in repairs)
        return {"repairs": repairs, "in_flight": in_flight, "after": after,
                "exit": 1 if failed else 0}
    finally:
        await client.close()


def run(cluster: ClusterConfig, args: argparse.Namespace) -> int:
    if args.table is not None and args.table not in cluster.tables:
        raise ConfigError(f"--table {args.table!r} is not replicated "
                          f"(tables: {list(cluster.tables)})")
    if args.source is not None and args.source not in cluster.ring:
        raise ConfigError(f"--from {args.source!r} is not a campus of {list(cluster.ring)}")
    if args.key is not None and args.table is None:
        raise ConfigError("--key needs --table")
    try:
        key = json.loads(args.key) if args.key is not None else None
    except json.JSONDecodeError as e:
        raise ConfigError(f"--key must be a JSON object of the key columns: {e}") from e
    tables = [args.table] if args.table else list(cluster.tables)
    report = asyncio.run(run_repair(cluster, tables, key, args.source, args.dry_run,
                                    args.settle))
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        for r in report["repairs"]:
            what = f"{r['action']} at {r['at']}" if r["action"] else "-"
            print(f"{r['state'].upper():<9}{r['kind']:<8}{r['table']} "
                  f"{json.dumps(r['key'], ensure_ascii=False)}: {what} {r['detail'][:80]}")
            if r["action"]:
                print(f"{'':<17}why: {r['reason']}")
        if not report["repairs"]:
            print("nothing diverged to repair" + (
                f" ({report['in_flight']} row(s) still in flight: run again later)"
                if report["in_flight"] else ""))
        if report["after"] is not None:
            print("\nafter: " + ("consistent" if report["after"]["consistent"] else
                                 f"{len(report['after']['differences'])} difference(s) left"))
    return int(report["exit"])
