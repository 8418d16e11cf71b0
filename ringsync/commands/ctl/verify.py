"""`ringsync ctl verify`: do all campuses hold the same rows? Which rows differ?

    ringsync ctl --cluster cluster.toml verify [--table T]... [--full] [--settle S] [--json]
    ringsync ctl --cluster cluster.toml verify --history [--json]

Every campus hashes its own copy (in SQL on PostgreSQL) into key-hash
buckets; buckets that differ are narrowed down to the rows; a confirm pass
after the ring has applied what was in flight tells ``in_flight`` from
``diverged`` (ringsync.verification says how). Exit 0 when consistent, 1
when any difference is ``diverged``, 2 when a campus could not answer (and
nothing diverged among the rest). Progress goes to stderr; ``--json`` prints
{"consistent", "vector", "tables": {T: {campus: {"rows", "digest"}}},
"differences": [{"table", "key", "kind", "state", "campuses"}], "campuses":
{campus: {"error"} | {"applied"}}, "leaves": {leaf: {"parent", "consistent",
"tables", "differences", "error"}} (with [[leaf]] entries: each leaf against
its parent's view of its route, ringsync.leafcheck), ...} (docs/verification.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import grpc

from ringsync.client import ClusterClient, describe_rpc_error
from ringsync.config import ClusterConfig
from ringsync.errors import ConfigError
from ringsync.leafcheck import check_leaf
from ringsync.verification import SETTLE_SECONDS, Verification, summarize


def add_parser(ctl_sub: Any) -> None:
    v = ctl_sub.add_parser("verify", help="find the rows that differ between campuses")
    v.add_argument("--table", action="append", default=[],
                   help="only this table (repeatable; default: every replicated table)")
    v.add_argument("--full", action="store_true",
                   help="hash every row from the data itself, also where campuses keep "
                        "incremental digests ([verify] incremental), and check those "
                        "against the rows")
    v.add_argument("--settle", type=float, default=SETTLE_SECONDS,
                   help="seconds the confirm pass waits for in-flight changes to arrive "
                        f"(default {SETTLE_SECONDS:.0f})")
    v.add_argument("--history", action="store_true",
                   help="list the scheduled verifications' reports the nodes keep "
                        "([verify]), newest first, instead of verifying")
    v.add_argument("--json", action="store_true", help="print JSON")


def progress(line: str) -> None:
    """A progress line on stderr (stdout stays the report)."""
    print(f"verify: {line}", file=sys.stderr, flush=True)


async def _run(cluster: ClusterConfig, tables: list[str], settle: float,
               full: bool) -> dict[str, Any]:
    client = ClusterClient(cluster)
    try:
        report = await Verification(client, tables, settle=settle, full=full,
                                    progress=progress).run()
        if cluster.leaves:
            report["leaves"] = {}
            for leaf in cluster.leaves:
                progress(f"leaf {leaf.name}: against its parent's view of its route")
                checked = await check_leaf(client, leaf, tables, settle)
                report["leaves"][leaf.name] = checked
                # A leaf that cannot be checked (a satellite offline) is reported,
                # and changes neither the verdict nor the exit code.
                if checked["error"] is None and not checked["consistent"]:
                    report["consistent"] = False
                    if any(d["state"] == "diverged" for d in checked["differences"]):
                        report["exit"] = 1
        return report
    finally:
        await client.close()


def format_report(report: dict[str, Any]) -> str:
    lines = []
    for table, campuses in report["tables"].items():
        parts = ", ".join(f"{c}={v['rows']:,}:{v['digest'][:10]}" for c, v in campuses.items())
        lines.append(f"{table:<20}{parts}")
    for campus, state in report["campuses"].items():
        if "error" in state:
            lines.append(f"{campus}: could not answer: {state['error']}")
        if state.get("drift"):
            lines.append(f"{campus}: kept digests of {', '.join(state['drift'])} disagreed "
                         f"with the rows (a write bypassed their triggers); rebuilt")
    for d in report["differences"]:
        where = ", ".join(f"{c} {m}" for c, m in d["campuses"].items())
        lines.append(f"{d['state'].upper():<10}{d['kind']:<8}{d['table']} "
                     f"{json.dumps(d['key'], ensure_ascii=False)}: {where}")
    for name, leaf in (report.get("leaves") or {}).items():
        if leaf["error"]:
            lines.append(f"leaf {name}: could not be checked: {leaf['error']}")
            continue
        rows = ", ".join(f"{t}={v['leaf_rows']:,}/{v['parent_rows']:,}"
                         for t, v in leaf["tables"].items())
        verdict = "holds its route's rows" if leaf["consistent"] else "DIFFERS"
        lines.append(f"leaf {name} vs {leaf['parent']}: {verdict} ({rows} leaf/route)")
        for d in leaf["differences"]:
            lines.append(f"  {d['state'].upper():<10}{d['kind']:<8}{d['table']} "
                         f"{json.dumps(d['key'], ensure_ascii=False)}")
        held = [t for t, v in leaf["tables"].items() if v["held_back"]]
        if held:
            lines.append(f"  rows of {', '.join(held)} its filter could not judge are held "
                         f"back at {leaf['parent']} (ringsync ctl status)")
    verdict = ("consistent" if report["consistent"] else
               "DIVERGED" if report["exit"] == 1 else
               "INCOMPLETE: some campuses did not answer" if report["exit"] == 2 else
               "differences still in flight (run again)")
    lines.append(f"\n{verdict}")
    return "\n".join(lines)


async def _history(cluster: ClusterConfig) -> dict[str, Any]:
    """The reports kept by the first campus (ring order) whose node has any."""
    client = ClusterClient(cluster)
    errors: dict[str, str] = {}
    try:
        for campus in cluster.ring:
            try:
                reply = await client.verifications(campus)
            except grpc.aio.AioRpcError as e:
                errors[campus] = describe_rpc_error(e)
                continue
            if reply.reports:
                return {"campus": campus, "reports": [json.loads(r) for r in reply.reports],
                        "errors": errors}
        return {"campus": None, "reports": [], "errors": errors}
    finally:
        await client.close()


def history_text(doc: dict[str, Any]) -> str:
    if not doc["reports"]:
        return "no scheduled verification has run yet ([verify] in cluster.toml)"
    lines = [f"reports kept at {doc['campus']}, newest first:"]
    for r in doc["reports"]:
        s = summarize(r)
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(s["at"])))
        verdict = "consistent" if s["consistent"] else (
            f"{s['diverged']} diverged, {s['in_flight']} in flight"
            + (f", not answering: {', '.join(s['campuses_failed'])}"
               if s["campuses_failed"] else ""))
        lines.append(f"  {when}  by {s['coordinator']:<14} {float(s['seconds']):6.1f} s  "
                     f"{verdict}")
    return "\n".join(lines)


def run(cluster: ClusterConfig, args: argparse.Namespace) -> int:
    if args.history:
        doc = asyncio.run(_history(cluster))
        print(json.dumps(doc, indent=2, ensure_ascii=False) if args.json
              else history_text(doc))
        return 0 if doc["reports"] or not doc["errors"] else 2
    unknown = [t for t in args.table if t not in cluster.tables]
    if unknown:
        raise ConfigError(f"--table {unknown} not replicated (tables: {list(cluster.tables)})")
    report = asyncio.run(_run(cluster, args.table or list(cluster.tables), args.settle,
                              args.full))
    print(json.dumps(report, indent=2, ensure_ascii=False) if args.json
          else format_report(report))
    return int(report["exit"])
