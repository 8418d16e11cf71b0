"""`ringsync bench`: build each system, run the workloads, write the results.

    ringsync bench [--quick] [--json] [--modes native,hop,ring,sqlite,mariadb]
                   [--workloads bulk,stream,catchup,ring,sync,soak]

Everything is made and torn down inside one run on this machine: PostgreSQL
clusters (initdb on free ports), the native subscription, ringsync nodes;
for the ``mariadb`` mode, MariaDB servers (mariadb-install-db on free
ports), MariaDB's own replication as its anchor, then a PostgreSQL ->
MariaDB and a MariaDB -> PostgreSQL hop (skipped, and said so, on a
machine without MariaDB).
Results go to ``bench/results/<UTC time>[-quick].json`` with a markdown
table (``.md``) and the stream lag plot (``-lag.svg``) beside it; ``--json``
prints the same JSON on stdout. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ringsync.commands.bench import durability, report, verifying
from ringsync.commands.bench.scenarios import FULL, QUICK, Bench, Result, Scale, say, workloads_for
from ringsync.commands.bench.setups import MARIADB_MODES, make_setup
from ringsync.commands.demo import mariadb
from ringsync.errors import RingsyncError

MODES = ("native", "hop", "ring", "sqlite", "mariadb")
WORKLOADS = ("bulk", "stream", "catchup", "ring", "sync", "verify", "soak")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


def _rates(text: str) -> tuple[int, ...]:
    """Comma-separated transactions per second, e.g. 1000,2000,5000."""
    return tuple(_positive(part.strip()) for part in text.split(","))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true",
                   help="a smaller run that finishes in under 3 minutes")
    p.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    p.add_argument("--modes", default=",".join(MODES),
                   help=f"comma-separated subset of {','.join(MODES)} (native always runs "
                        "first when listed; ratios need it; mariadb is MariaDB's own "
                        "replication, then a hop each way between PostgreSQL and MariaDB)")
    p.add_argument("--workloads", default=",".join(WORKLOADS),
                   help=f"comma-separated subset of {','.join(WORKLOADS)}")
    p.add_argument("--bulk-rows", type=_positive, help="rows in the bulk transaction")
    p.add_argument("--rates", type=_rates,
                   help="stream rates to climb, tx/s, comma-separated (e.g. 1000,2000,5000)")
    p.add_argument("--step-seconds", type=_positive, help="seconds per stream rate")
    p.add_argument("--catchup-seconds", type=_positive, help="seconds of backlog to write")
    p.add_argument("--ring-rate", type=_positive, help="tx/s per campus in the ring workload")
    p.add_argument("--sync-rate", type=_positive,
                   help="tx/s of the sync workload (hop: commit latency, async vs sync; "
                        "default 1000, for --step-seconds)")
    p.add_argument("--incremental-digests", action="store_true",
                   help="every ringsync campus keeps incremental verification digests "
                        "([verify] incremental = true): what they cost the data path")
    p.add_argument("--soak-seconds", type=_positive, default=0,
                   help="also run a memory soak on the hop for this long (600 for the target; "
                        "--modes native,hop --workloads soak runs only the soak)")
    p.add_argument("--out", type=Path, default=Path("bench/results"),
                   help="directory for the results (default bench/results)")


def _scale(args: argparse.Namespace) -> Scale:
    scale = QUICK if args.quick else FULL
    changes: dict[str, Any] = {}
    if args.bulk_rows:
        changes["bulk_rows"] = args.bulk_rows
    if args.rates:
        changes["stream_rates"] = args.rates
    if args.step_seconds:
        changes["step_seconds"] = args.step_seconds
    if args.catchup_seconds:
        changes["catchup_seconds"] = args.catchup_seconds
    if args.ring_rate:
        changes["ring_rate"] = args.ring_rate
    if args.sync_rate:
        changes["sync_rate"] = args.sync_rate
    return dataclasses.replace(scale, **changes)


def _choice(value: str, allowed: tuple[str, ...], what: str) -> list[str]:
    chosen = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [v for v in chosen if v not in allowed]
    if unknown or not chosen:
        raise RingsyncError(f"--{what}: unknown {unknown or value!r}; pick from "
                            f"{','.join(allowed)}")
    return [a for a in allowed if a in chosen]  # a fixed order: native first


def _machine() -> dict[str, Any]:
    import subprocess

    from ringsync.commands.demo.postgres import find_bin

    version = subprocess.run([str(find_bin("postgres")), "--version"], capture_output=True,
                             text=True).stdout.strip()
    try:  # which code was measured, when run from a clone
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, cwd=Path(__file__).resolve().parent).stdout.strip()
    except OSError:
        commit = ""
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "postgres": version,
            "platform": platform.platform(), "commit": commit or None}


def _setups(modes: list[str]) -> list[str]:
    """The setups the chosen modes run, in order: ``mariadb`` is three, and
    none (said so) where MariaDB is not installed."""
    out: list[str] = []
    for mode in modes:
        if mode != "mariadb":
            out.append(mode)
        elif mariadb.installed():
            out += MARIADB_MODES
        else:
            say("mariadb: skipped, MariaDB is not installed here "
                "(Debian/Ubuntu: apt-get install mariadb-server)")
    return out


def run_bench(args: argparse.Namespace, argv: list[str]) -> int:
    scale = _scale(args)
    modes = _setups(_choice(args.modes, MODES, "modes"))
    workloads = _choice(args.workloads, WORKLOADS, "workloads")
    command = "ringsync bench " + " ".join(argv)
    results: list[Result] = []
    timelines: dict[str, list[tuple[float, float, int]]] = {}
    root = Path(tempfile.mkdtemp(prefix="ringsync-bench-"))
    machine = _machine()  # now: the commit whose code this process runs
    began = time.monotonic()
    try:
        for mode in modes:
            chosen = [w for w in workloads_for(mode) if w in workloads]
            if not chosen and not (mode == "hop" and args.soak_seconds):
                continue
            say(f"{mode}: setting up")
            setup = make_setup(mode, root, digests=args.incremental_digests)
            try:
                bench = Bench(setup, scale)
                try:
                    for workload in chosen:
                        bench.settle()
                        say(f"{mode}: {workload}")
                        apart = {"sync": durability.sync, "verify": verifying.verify}
                        result = (apart[workload](bench) if workload in apart
                                  else getattr(bench, workload)())
                        results.append(result)
                        say(f"{mode} {workload}: {result.rows_per_s:,.0f} rows/s")
                    if mode == "hop" and args.soak_seconds and "soak" in workloads:
                        bench.settle()
                        say(f"hop: memory soak, {args.soak_seconds}s")
                        results.append(bench.soak(scale.catchup_rate, args.soak_seconds))
                    if bench.lag_timeline and mode != "ring":
                        timelines[mode] = bench.lag_timeline
                finally:
                    bench.close()
            finally:
                setup.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report.add_ratios(results)
    goals = report.targets(results)
    doc = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": command, "quick": args.quick, "scale": dataclasses.asdict(scale),
        "machine": machine, "wall_seconds": round(time.monotonic() - began, 1),
        "results": [r.as_json() for r in results], "targets": goals,
        "stream_lag_timeline": {m: [[round(t, 2), round(lag, 1), rate] for t, lag, rate in s]
                                for m, s in timelines.items()},
    }
    stem = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + ("-quick" if args.quick else "")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(doc, indent=1) + "\n")
    (args.out / f"{stem}.md").write_text(report.markdown(results, goals, command))
    (args.out / f"{stem}-lag.svg").write_text(
        report.lag_svg(timelines, "ringsync bench: lag during the climbing stream workload"))
    say(f"results: {args.out / stem}.json (.md, -lag.svg)")
    print(report.terminal_chart(timelines), file=sys.stderr)
    if args.json:
        print(json.dumps(doc, indent=1))
    else:
        print(report.markdown(results, goals, command))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="ringsync bench", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    try:
        return run_bench(p.parse_args(argv), argv)
    except RingsyncError as e:
        print(f"ringsync bench: {e}", file=sys.stderr)
        return 2
