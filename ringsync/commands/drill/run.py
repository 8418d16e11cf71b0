"""`ringsync drill SCENARIO`: inject a fault into a local cluster, measure, check.

    ringsync drill node-crash [--engine sqlite|postgres|mixed] [--campuses 3]
                              [--cycles N] [--seed S] [--failover-after 4] [--json]

Builds a cluster as the demo does, plus a local etcd; runs the checker
workload (ringsync.commands.drill.checker) at every campus; per cycle injects the
fault at a campus picked by the seed, waits for that campus's clients to
commit again (RTO), repairs the fault and brings the campus's users home.
At the end: every acknowledged write must be at every campus (RPO), the
tables must be identical everywhere (convergence, by digest), and no
campus's users may have had two writable databases at once. Exit 1 if any
of that broke.

Every drill cluster also has a single-writer set, ``drill_single`` (table
``drill_set_writes``, first writer: the ring's first campus), written at
every campus by a writer that asks its own database (checker.SetWriter);
ringsync.commands.drill.sets checks one writer per epoch, in time order, as etcd's
set route says, the same rows everywhere, and every acknowledged set write
kept (or parked as stale everywhere: a deposed writer's write after its
tenure ended).

Scenarios: switchover (planned, there and back), node-crash (kill -9 of the
node), db-down (the campus's PostgreSQL stopped; needs a PostgreSQL campus),
origin-crash (kill -9 of the node and of its PostgreSQL together; before the
campus is repaired, its acknowledged writes must already be at the others
when --durability sync),
campus-isolation (every link to and from the campus, etcd included, cut by
the fault proxy: ringsync.commands.drill.proxy), etcd-member-loss (one of three etcd
members stopped: nothing may fail over), wan-soak (200 ms latency and stalls
on every link for --soak-seconds: nothing may fail over), dual-track (a
MariaDB campus, the old system, and a PostgreSQL campus that joins from it
under writes; the old system's users switched over to PostgreSQL and back:
ringsync.commands.drill.dualtrack; always these two campuses, --engine and
--campuses do not apply, --cycles must be 1).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ringsync.commands.drill.common import say
from ringsync.commands.drill.dualtrack import run_dual_track
from ringsync.commands.drill.harness import Drill
from ringsync.commands.drill.oldsystem import DUAL_TRACK_ENGINES
from ringsync.commands.drill.scenarios import run_cycle
from ringsync.errors import RingsyncError

SCENARIOS = ("switchover", "node-crash", "db-down", "origin-crash", "campus-isolation",
             "etcd-member-loss", "wan-soak", "dual-track")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", choices=SCENARIOS)
    p.add_argument("--engine", choices=("sqlite", "postgres", "mixed"), default="sqlite")
    p.add_argument("--campuses", type=int, default=3)
    p.add_argument("--cycles", type=int, default=1)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--failover-after", type=float, default=4.0,
                   help="dr.failover_after for the drill's cluster (default 4s)")
    p.add_argument("--rate", type=float, default=20.0, help="writes per second per campus")
    p.add_argument("--durability", choices=("async", "sync"), default="async",
                   help="PostgreSQL campuses' durability (sync: commits wait for a peer)")
    p.add_argument("--soak-seconds", type=float, default=20.0,
                   help="wan-soak: how long the links carry 200 ms latency and stalls")
    p.add_argument("--history-rows", type=int, default=5000,
                   help="dual-track: rows in the old system before ringsync runs (default 5000)")
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--exact-apply", action="store_true",
                   help="every campus applies through the exact path only ([replication] "
                        "fast_apply = false): the drill with the fast path for fresh rows off")


def report_table(r: dict[str, Any]) -> str:
    lines = [f"drill {r['scenario']} ({r['engine']}, {r['campuses']} campuses, "
             f"{r['cycles']} cycle(s), seed {r['seed']}, failover_after "
             f"{r['failover_after']:g}s)", "",
             f"{'CYCLE':<7}{'CAMPUS':<16}{'SERVED BY':<16}{'RTO S':>8}  SET WRITER"]
    for c in r["cycles_detail"]:
        writer = c.get("set_writer") or "-"
        if c.get("set_moved"):
            writer += f" -> {c.get('set_writer_after') or '?'}"
            if c.get("set_writer_after") == c.get("set_writer"):
                writer += f" (via {c.get('set_to', '?')})"
            if c.get("set_rto") is not None:
                writer += f" in {c['set_rto']:.2f}s"
        lines.append(f"{c['cycle']:<7}{c['campus']:<16}{c.get('to', c.get('member', '-')):<16}"
                     f"{c['rto']:>8.2f}  {writer}")
    lines += _moves_table(r["cycles_detail"])
    epochs = r["set_epochs"]
    shown = ", ".join(map(str, epochs[:12])) + (f", … ({len(epochs)})" if len(epochs) > 12
                                                else "")
    lines += ["",
              f"RTO p50 / max        {r['rto_seconds']['p50']} s / {r['rto_seconds']['max']} s",
              f"acknowledged writes  {r['acknowledged_writes']}",
              f"lost (RPO)           {r['rpo_lost_writes']}",
              f"converged            {'yes' if r['converged'] else 'NO'}",
              *([f"lost with the campus {r['lost_without_failed_campus']} (acknowledged writes "
                 f"no other campus held while it was down; {r['durability']})"]
                if r["scenario"] == "origin-crash" else []),
              f"set writes           {r['set_writes']} acknowledged, "
              f"{r['set_writes_refused']} refused by non-writers, "
              f"{r['set_write_errors']} errors",
              f"set epochs           {shown or 'none'}",
              f"set writer moved     in {r['set_moves']} of {r['cycles']} cycle(s)"
              + (f"; set RTO p50 / max {r['set_rto_seconds']['p50']} s / "
                 f"{r['set_rto_seconds']['max']} s" if r["set_rto_seconds"]["max"] is not None
                 else ""),
              f"set stale, parked    {r['stale_parked']} (a deposed writer's acknowledged "
              f"writes, parked as stale at every campus)",
              *[f"set problem          {p}" for p in r["set_problems"][:5]],
              f"two writers seen     {'YES' if r['two_writers_seen'] else 'no'}",
              f"spurious failover    {'YES' if r['spurious_failover'] else 'no'}",
              f"healthy lease lost   {r.get('healthy_lease_lost') or 'no'} (campuses the fault "
              f"did not touch)",
              f"healthy fenced       {r.get('healthy_fenced') or 'no'} (their databases fenced "
              f"themselves)",
              f"verdict              {'PASS' if r['ok'] else 'FAIL'}"]
    return "\n".join(lines)


def _moves_table(cycles: list[dict[str, Any]]) -> list[str]:
    """dual-track: each move's time and the users' RTO after it."""
    moves = [m for c in cycles for m in c.get("moves", [])]
    if not moves:
        return []
    lines = ["", f"{'MOVE':<12}{'CAMPUS':<16}{'TO / FROM':<18}{'SECONDS':>8}  AFTER"]
    for m in moves:
        where = f"to {m['to']}" if "to" in m else f"from {m['from']}"
        after = (f"RTO {m['rto_seconds']:.2f}s" if "rto_seconds" in m
                 else f"{m.get('rows_copied', 0)} rows copied")
        lines.append(f"{m['move']:<12}{m['campus']:<16}{where:<18}{m['seconds']:>8.2f}  {after}")
    return lines


def _dual_track_arguments(args: argparse.Namespace) -> None:
    from ringsync.commands.demo.mariadb import installed as mariadb_installed

    if not mariadb_installed():
        raise RingsyncError("dual-track needs MariaDB for the old system: apt-get install "
                            "mariadb-server")
    if args.cycles != 1 or args.durability != "async" or args.history_rows < 0:
        raise RingsyncError("dual-track runs one migration (--cycles 1), asynchronously "
                            "(MariaDB campuses have no sync mode), with --history-rows >= 0")
    args.campuses, args.engine = len(DUAL_TRACK_ENGINES), "+".join(DUAL_TRACK_ENGINES)


def run_drill(args: argparse.Namespace) -> int:
    if args.cycles < 1 or not 2 <= args.campuses <= 8 or args.failover_after < 2:
        raise RingsyncError("--cycles must be >= 1, --campuses 2-8, --failover-after >= 2 "
                            "(the drill's etcd lease is 2 s; failover cannot be sooner)")
    dual = args.scenario == "dual-track"
    if dual:
        _dual_track_arguments(args)
    drill = Drill(args)
    try:
        say(f"building {args.campuses} campuses ({args.engine}) with etcd in {drill.root}")
        drill.build()
        if dual:
            drill.cycles.append(run_dual_track(drill))
        else:
            for n in range(1, args.cycles + 1):
                drill.cycles.append(run_cycle(drill, n))
        report = drill.verdict()
    except BaseException as e:
        say(f"drill stopped in cycle {len(drill.cycles) + 1}: {type(e).__name__}: {e}")
        raise
    finally:
        try:
            drill.close()
        except Exception as e:  # never hide why the drill stopped behind a cleanup error
            say(f"cleanup: {type(e).__name__}: {e}")
    print(json.dumps(report, indent=2) if args.json else report_table(report))
    return 0 if report["ok"] else 1
