"""`ringsync demo`: build a local cluster, write at every campus, watch it converge.

Interactive: the console opens on the ring view; quitting it (q or Ctrl-C)
stops the workload and every node. Headless: run the workload for
--duration seconds, stop writing, wait (bounded) until every campus holds
the same rows, and print one JSON report; exit 1 if they do not converge.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ringsync.client import ClusterClient
from ringsync.config import load_cluster
from ringsync.ctl import verify
from ringsync.demo.cluster import LocalCluster
from ringsync.demo.lis import LisWorkload
from ringsync.errors import RingsyncError

READY_TIMEOUT_SECONDS = 30.0
CONVERGE_TIMEOUT_SECONDS = 60.0


def say(msg: str) -> None:
    print(f"[demo] {msg}", file=sys.stderr, flush=True)


async def wait_ready(cluster: LocalCluster, client: ClusterClient) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while True:
        cluster.check_alive()
        replies = await client.status_all()
        if all(
            r.status is not None and r.status.database_healthy
            and any(link.successor and link.state == "streaming" for link in r.status.links)
            for r in replies
        ):
            return
        if time.monotonic() > deadline:
            waiting = [f"{r.campus}: {r.error or r.status.database_error}"  # type: ignore[union-attr]
                       for r in replies if r.status is None or not r.status.database_healthy]
            raise RingsyncError("nodes did not become ready: " + "; ".join(waiting))
        await asyncio.sleep(0.2)


def max_link_lag(replies: list[Any]) -> float:
    lags = [link.lag_seconds for r in replies if r.status for link in r.status.links]
    return max(lags, default=0.0)


async def wait_converged(client: ClusterClient, timeout: float) -> bool:
    """True once every campus applied every other's captures and digests agree."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replies = await client.status_all()
        if all(r.status is not None for r in replies):
            heads = {r.campus: r.status.journal.seqs.get(r.campus, 0) for r in replies}  # type: ignore[union-attr]
            caught_up = all(
                r.status.applied.seqs.get(origin, 0) >= seq  # type: ignore[union-attr]
                for r in replies for origin, seq in heads.items() if origin != r.campus
            )
            if caught_up and (await verify(client))["consistent"]:
                return True
        await asyncio.sleep(0.5)
    return False


def sqlite_row_counts(path: Path, tables: tuple[str, ...]) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
    finally:
        conn.close()


async def headless(cluster: LocalCluster, workloads: list[LisWorkload], duration: float) -> int:
    client = ClusterClient(load_cluster(cluster.cluster_file, need_client_tls=True))
    try:
        await wait_ready(cluster, client)
        say(f"{len(workloads)} campuses ready; writing for {duration:.0f}s")
        for w in workloads:
            w.start()
        max_lag = 0.0
        end = time.monotonic() + duration
        while time.monotonic() < end:
            cluster.check_alive()
            max_lag = max(max_lag, max_link_lag(await client.status_all()))
            await asyncio.sleep(0.5)
        for w in workloads:
            w.stop()
        say("workload stopped; waiting for every campus to converge")
        converged = await wait_converged(client, CONVERGE_TIMEOUT_SECONDS)
        max_lag = max(max_lag, max_link_lag(await client.status_all()))
    finally:
        await client.close()
    report = {
        "converged": converged,
        "transactions_written": sum(w.transactions for w in workloads),
        "write_errors": sum(w.errors for w in workloads),
        "max_lag_seconds": round(max_lag, 3),
        "cluster_file": str(cluster.cluster_file),
        "campuses": [
            {
                "name": c.name,
                "engine": "sqlite",
                "database": str(c.database),
                "rows": sqlite_row_counts(c.database, cluster.tables),
            }
            for c in cluster.campuses
        ],
    }
    print(json.dumps(report, indent=2))
    return 0 if converged else 1


def run_demo(args: argparse.Namespace) -> int:
    root = args.data_dir or Path(tempfile.mkdtemp(prefix="ringsync-demo-"))
    cluster = LocalCluster.create(root, args.campuses)
    say(f"cluster in {cluster.root}; starting {args.campuses} nodes")
    workloads = [
        LisWorkload(c.name, c.database, args.rate, seed=i + 1)
        for i, c in enumerate(cluster.campuses)
    ]
    try:
        cluster.start_all()
        if args.headless:
            return asyncio.run(headless(cluster, workloads, args.duration))
        return interactive(cluster, workloads)
    finally:
        for w in workloads:
            w.stop()
        cluster.stop_all()
        say(f"all nodes stopped; data kept in {cluster.root}")


def interactive(cluster: LocalCluster, workloads: list[LisWorkload]) -> int:
    from console.app import run_console

    async def ready() -> None:
        client = ClusterClient(load_cluster(cluster.cluster_file, need_client_tls=True))
        try:
            await wait_ready(cluster, client)
        finally:
            await client.close()

    asyncio.run(ready())
    for w in workloads:
        w.start()
    return run_console(load_cluster(cluster.cluster_file, need_client_tls=True),
                       subtitle=f"demo: {len(workloads)} campuses writing")
