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
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ringsync.client import ClusterClient
from ringsync.commands.demo.cluster import CAMPUS_NAMES, LocalCluster
from ringsync.commands.demo.codes import local_codes
from ringsync.commands.demo.counts import row_counts
from ringsync.commands.demo.etcd import LocalEtcd, find_etcd
from ringsync.commands.demo.lis import LisWorkload
from ringsync.commands.demo.mariadb import LocalMariaDB, find_program
from ringsync.commands.demo.mariadb import installed as mariadb_installed
from ringsync.commands.demo.postgres import LocalPostgres, find_bin
from ringsync.commands.demo.satellites import ROUTES, leaves_converged, satellite_leaves
from ringsync.config import load_cluster
from ringsync.dsn import redact_dsn
from ringsync.errors import RingsyncError
from ringsync.verification import Verification

READY_TIMEOUT_SECONDS = 30.0
CONVERGE_TIMEOUT_SECONDS = 60.0


def say(msg: str) -> None:
    print(f"[demo] {msg}", file=sys.stderr, flush=True)


async def wait_ready(cluster: LocalCluster, client: ClusterClient) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while True:
        cluster.check_alive()
        replies = await client.status_all()
        # Leaves (satellites) must have copied their subset before they write.
        leaves = [await client.status_of(x.name) for x in cluster.leaves]
        if all(
            r.status is not None and r.status.database_healthy
            and any(link.successor and link.state == "streaming" for link in r.status.links)
            for r in replies
        ) and all(r.status is not None and r.status.join.state == "in-ring" for r in leaves):
            return
        if time.monotonic() > deadline:
            waiting = [f"{r.campus}: {r.error or r.status.database_error}"  # type: ignore[union-attr]
                       for r in replies if r.status is None or not r.status.database_healthy]
            waiting += [f"{r.campus}: {r.error or r.status.join.detail}"  # type: ignore[union-attr]
                        for r in leaves if r.status is None or r.status.join.state != "in-ring"]
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
            if caught_up and (await Verification(client, list(client.cluster.tables),
                                                 settle=0.0).run())["consistent"]:
                return True
        await asyncio.sleep(0.5)
    return False


async def headless(cluster: LocalCluster, workloads: list[LisWorkload], duration: float) -> int:
    client = ClusterClient(load_cluster(cluster.cluster_file, need_client_tls=True))
    try:
        await wait_ready(cluster, client)
        sats = f" and {len(cluster.leaves)} satellites" if cluster.leaves else ""
        say(f"{len(cluster.campuses)} campuses{sats} ready; {len(workloads)} writing for "
            f"{duration:.0f}s")
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
        deadline = time.monotonic() + CONVERGE_TIMEOUT_SECONDS
        while converged and cluster.leaves and not await leaves_converged(cluster, client):
            if time.monotonic() > deadline:
                converged = False
                break
            await asyncio.sleep(0.5)
        final = await client.status_all()
        max_lag = max(max_lag, max_link_lag(final))
    finally:
        await client.close()
    report = {
        "converged": converged,
        "transactions_written": sum(w.transactions for w in workloads),
        "write_errors": sum(w.errors for w in workloads),
        "deadlock_retries": sum(w.deadlock_retries for w in workloads),
        "max_lag_seconds": round(max_lag, 3),
        "contended_transactions": sum(w.contended for w in workloads),
        "conflicts_logged": {r.campus: r.status.conflicts.logged
                             for r in final if r.status is not None},
        "cluster_file": str(cluster.cluster_file),
        "campuses": [
            {
                "name": c.name,
                "role": "leaf" if c in cluster.leaves else "member",
                "engine": c.engine,
                # a script connects with it; a demo MariaDB server's account
                # is the demo's own (ringsync.commands.demo.mariadb), so its
                # URL keeps the password
                "database": str(c.target) if c.engine == "mariadb" else redact_dsn(
                    str(c.target)),
                "rows": row_counts(c.target, tuple(cluster.routes.get(c.name, {}).get(
                    "tables", cluster.tables))),
                **({"parents": cluster.routes[c.name]["parents"]} if c in cluster.leaves
                   else {}),
            }
            for c in [*cluster.campuses, *cluster.leaves]
        ],
    }
    print(json.dumps(report, indent=2))
    return 0 if converged else 1


def engines_for(choice: str, count: int, with_mariadb: bool = True) -> list[str]:
    """Each campus's engine. ``mixed``: PostgreSQL campuses and a SQLite one,
    and, with three campuses or more and MariaDB installed (and
    ``with_mariadb``), a MariaDB one."""
    if choice == "mixed":
        if count >= 3 and with_mariadb and mariadb_installed():
            return ["postgres"] * (count - 2) + ["mariadb", "sqlite"]
        if count >= 3 and with_mariadb:
            say("MariaDB is not installed (apt-get install mariadb-server): the mixed ring "
                "has no MariaDB campus")
        return ["postgres"] * (count - 1) + ["sqlite"]
    return [choice] * count


def run_demo(args: argparse.Namespace) -> int:
    if args.stop:
        if args.data_dir is None:
            raise RingsyncError("--stop needs the --data-dir of the demo to stop")
        for line in stop_leftovers(args.data_dir):
            say(line)
        return 0
    if not 0.0 <= args.conflict_rate <= 1.0:
        raise RingsyncError(f"--conflict-rate {args.conflict_rate} is not a share; give a value "
                            f"from 0 (no shared edits) to 1 (every transaction)")
    if not 0 <= args.satellites <= 8:
        raise RingsyncError("--satellites must be between 0 and 8")
    if args.satellite_route not in ROUTES:
        raise RingsyncError(f"--satellite-route must be one of {', '.join(ROUTES)}")
    if args.satellites and args.dictionaries:
        say("satellites: code dictionaries are off in this demo (a leaf keeps no code map "
            "of its own yet)")
        args.dictionaries = False
    engines = engines_for(args.engine, args.campuses)
    if "postgres" in engines:
        find_bin("initdb")  # a missing server says which package to install, up front
    if "mariadb" in engines:
        find_program("mariadbd")
    root = args.data_dir or Path(tempfile.mkdtemp(prefix="ringsync-demo-"))
    etcd = start_etcd(root, args.no_etcd)
    say(f"creating {args.campuses} campuses ({args.engine}) in {root}")
    try:
        cluster = LocalCluster.create(root, args.campuses, engines=engines, dr=(
            {"etcd": etcd.endpoints, "failover_after": 10.0, "etcd_tls": True}
            if etcd is not None else None),
            dictionaries=args.dictionaries,
            leaves=satellite_leaves(list(CAMPUS_NAMES[:args.campuses]), args.satellites,
                                    args.satellite_route))
    except BaseException:
        if etcd is not None:
            etcd.stop()
        raise
    if etcd is not None:
        try:
            etcd.start(cluster.pki_dir)  # over TLS only, with the cluster's CA
        except BaseException:
            etcd.stop()
            cluster.stop_databases()
            raise
        say(f"etcd at {etcd.endpoints[0]} (TLS, client certificates): routing map and "
            f"automatic failover (after 10s) ON")
    campus_of = {str(c.target): c.name for c in cluster.campuses}

    def codes_at(target: Path | str) -> dict[str, str]:
        """The codes of the campus whose database ``target`` is."""
        name = campus_of.get(str(target))
        return local_codes(CAMPUS_NAMES, name) if args.dictionaries and name else {}

    workloads = [
        LisWorkload(c.name, c.target, args.rate, seed=i + 1, conflict_rate=args.conflict_rate,
                    resolve=follow_route(cluster, c.name) if etcd is not None else None,
                    codes=codes_at(c.target), codes_at=codes_at)
        for i, c in enumerate(cluster.campuses)
    ] + [  # satellites with a whole route write like a campus; a subset one only reads
        LisWorkload(c.name, c.target, args.rate, seed=100 + i, conflict_rate=args.conflict_rate)
        for i, c in enumerate(cluster.leaves) if "filter" not in cluster.routes[c.name]
    ]
    keep = args.headless and args.keep_databases
    try:
        cluster.start_all()
        if args.headless:
            return asyncio.run(headless(cluster, workloads, args.duration))
        return interactive(cluster, workloads)
    finally:
        for w in workloads:
            w.stop()
        cluster.stop_all()
        if keep:
            say(f"PostgreSQL servers left running; stop them with "
                f"`ringsync demo --data-dir {cluster.root} --stop`")
        else:
            cluster.stop_databases()
        if etcd is not None:
            etcd.stop()
        say(f"all nodes stopped; data kept in {cluster.root}")


def start_etcd(root: Path, disabled: bool) -> LocalEtcd | None:
    """A local etcd for the demo's routing map and failover, if installed."""
    if disabled:
        say("--no-etcd: automatic failover is OFF (every campus serves its own users)")
        return None
    try:
        find_etcd()
    except RingsyncError:
        say("etcd is not installed: automatic failover is OFF (every campus serves its own "
            "users); `apt-get install etcd-server` turns it on")
        return None
    return LocalEtcd.create(root / "etcd", 1)  # started once the cluster's CA exists


def follow_route(cluster: LocalCluster, campus: str) -> Callable[[], Path | str | None]:
    """The campus's serving database, as a load balancer finds it (HTTP /serving)."""
    from ringsync.commands.drill.checker import serving_node

    def resolve() -> Path | str | None:
        node = serving_node(campus, cluster.campuses)
        return node.target if node is not None else None

    return resolve


def _terminate_recorded(pids: Path, what: str) -> list[str]:
    """SIGTERM every process a pids.json file records (name -> pid)."""
    import os
    import signal

    done = []
    if pids.exists():
        for name, pid in json.loads(pids.read_text()).items():
            try:
                os.kill(pid, signal.SIGTERM)
                done.append(f"stopped {what} {name} (pid {pid})")
            except ProcessLookupError:
                pass
        pids.write_text("{}")
    return done


def stop_leftovers(root: Path) -> list[str]:
    """Stop the nodes and the PostgreSQL and MariaDB servers a demo in ``root`` left running."""
    import json

    done = _terminate_recorded(root / "pids.json", "node")
    done += _terminate_recorded(root / "etcd" / "pids.json", "etcd member")
    servers = root / "postgres.json"
    if servers.exists():
        for campus, entry in json.loads(servers.read_text()).items():
            pg = LocalPostgres(Path(entry["datadir"]), entry["port"])
            if pg.pid() is not None:
                pg.remove()
                done.append(f"stopped PostgreSQL of {campus} ({entry['datadir']})")
        servers.unlink()
    mariadbs = root / "mariadb.json"
    if mariadbs.exists():
        for campus, entry in json.loads(mariadbs.read_text()).items():
            server = LocalMariaDB(Path(entry["base"]), entry["port"])
            if server.pid() is not None:
                server.remove()
                done.append(f"stopped MariaDB of {campus} ({entry['base']})")
        mariadbs.unlink()
    return done or ["nothing was running"]


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
