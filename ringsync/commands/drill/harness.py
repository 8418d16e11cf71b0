"""The drill harness: builds a local cluster with etcd, the checker workload
and the fault proxy; injects and repairs faults; reads the verdict.

The scenarios (ringsync.commands.drill.scenarios) drive it cycle by cycle;
ringsync.commands.drill.run is the command around both.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from ringsync.client import ClusterClient
from ringsync.commands.demo.cluster import CAMPUS_NAMES, CampusLayout, LocalCluster
from ringsync.commands.demo.etcd import LocalEtcd
from ringsync.commands.demo.runner import wait_converged, wait_ready
from ringsync.commands.drill.checker import (
    DRILL_SCHEMA,
    SET_ROUTE,
    CampusClient,
    RouteHistory,
    StaleWriter,
    drill_sets,
    read_ids,
)
from ringsync.commands.drill.common import RECOVERY_TIMEOUT_SECONDS, say, wait_for
from ringsync.commands.drill.oldsystem import DUAL_TRACK_ENGINES, preload_history
from ringsync.commands.drill.proxy import FaultNetwork
from ringsync.commands.drill.sets import check_sets, route_writers_from
from ringsync.commands.drill.setwriter import SetWriter, read_set_rows, read_stale_ids
from ringsync.config import load_cluster
from ringsync.dr.moves import move
from ringsync.dr.store import DRStore
from ringsync.errors import RingsyncError

PROXIED = ("campus-isolation", "wan-soak")
# How long a new cluster may take to publish the set's route and take a set write.
SET_READY_SECONDS = 30.0


class Drill:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.root = (args.data_dir or Path(tempfile.mkdtemp(prefix="ringsync-drill-"))).resolve()
        self.etcd: LocalEtcd | None = None
        self.cluster: LocalCluster | None = None
        self.clients: dict[str, CampusClient] = {}
        self.stale: dict[str, StaleWriter] = {}
        self.set_writers: dict[str, SetWriter] = {}
        self.cycles: list[dict[str, Any]] = []
        # ids written before any node ran (dual-track: the old system's history)
        self.preloaded: set[str] = set()
        self.net: FaultNetwork | None = None
        self.history: RouteHistory | None = None

    # -- set up and tear down ----------------------------------------------

    def build(self) -> None:
        args = self.args
        if args.scenario in ("db-down", "origin-crash") and args.engine == "sqlite":
            raise RingsyncError(f"{args.scenario} stops a campus's PostgreSQL: use --engine "
                                f"postgres or mixed")
        if args.durability == "sync" and args.engine == "sqlite":
            raise RingsyncError("--durability sync needs PostgreSQL campuses (SQLite campuses "
                                "are asynchronous only): use --engine postgres or mixed")
        from ringsync.commands.demo.runner import engines_for

        self.etcd = LocalEtcd.create(self.root / "etcd",
                                     3 if args.scenario == "etcd-member-loss" else 1)
        ttl = 2
        dual = args.scenario == "dual-track"
        engines = (list(DUAL_TRACK_ENGINES) if dual
                   else engines_for(args.engine, args.campuses, with_mariadb=False))
        self.cluster = LocalCluster.create(
            self.root / "cluster", len(engines), engines=engines,
            schema=DRILL_SCHEMA, conflict_policies="",
            replication={"heal_after_seconds": 2.0, "probe_interval_seconds": 0.5,
                         "reconnect_max_seconds": 1.0,
                         **({"fast_apply": False} if getattr(args, "exact_apply", False)
                            else {})},
            dr={"etcd": self.etcd.endpoints, "failover_after": args.failover_after,
                "lease_ttl": ttl, "etcd_tls": True},
            postgres_settings={"durability": args.durability, "degrade_after": 10.0},
            sets=drill_sets(CAMPUS_NAMES[0]))
        self.etcd.start(self.cluster.pki_dir)  # over TLS, with the cluster's CA
        if args.scenario in PROXIED:
            self._route_through_proxies()
        if dual:  # the old system alone, with its history; the new campus joins later
            old_system = self.cluster.campuses[0]
            self.preloaded = preload_history(old_system, args.history_rows)
            self.cluster.start(old_system.name)
            self._wait_serving([old_system])
        else:
            self.cluster.start_all()
            self._run(self._ready())
        self.history = RouteHistory(self.cluster.name, tuple(self.etcd.endpoints),
                                    self.cluster.operator_tls)
        self.history.start()
        for c in self.cluster.campuses[:1] if dual else self.cluster.campuses:
            self.add_workers(c)
        self._set_ready()

    def add_workers(self, c: CampusLayout) -> None:
        """Campus ``c``'s users, its stale application and its set writer, started."""
        assert self.cluster is not None
        self.clients[c.name] = CampusClient(c.name, self.cluster.campuses, rate=self.args.rate)
        self.stale[c.name] = StaleWriter(c)
        self.set_writers[c.name] = SetWriter(c, rate=self.args.rate)
        for w in (self.clients[c.name], self.stale[c.name], self.set_writers[c.name]):
            w.start()

    def _set_ready(self) -> None:
        """The set's route is in etcd and its writer's database takes set writes
        (without both, the set checks could not fire: the drill stops)."""
        wait_for(lambda: self.set_writer() is not None, SET_READY_SECONDS,
                 f"the set route {SET_ROUTE} appearing in etcd")
        try:
            wait_for(lambda: any(s.acked for s in self.set_writers.values()),
                     SET_READY_SECONDS, "a set write accepted at any campus")
        except RingsyncError as e:
            seen = "; ".join(f"{c}: {s.refused} refused, {s.errors} errors"
                             + (f" (last: {s.last_error})" if s.last_error else "")
                             for c, s in self.set_writers.items())
            raise RingsyncError(f"{e} ({seen})") from None

    def _route_through_proxies(self) -> None:
        """Every node reaches every peer and every etcd member through a link of
        the fault network (its node.toml [peers] and [dr] etcd)."""
        assert self.cluster is not None and self.etcd is not None
        self.net = FaultNetwork()
        for x in self.cluster.campuses:
            peers = [f'{y.name} = "{self.net.add(f"{x.name}>{y.name}", y.address).address}"'
                     for y in self.cluster.campuses if y is not x]
            etcd = [self.net.add(f"{x.name}>{m.name}", m.endpoint).address
                    for m in self.etcd.members]
            with x.config.open("a") as fh:
                fh.write("\n[peers]\n" + "\n".join(peers) + "\n\n[dr]\netcd = "
                         + json.dumps(etcd) + "\n")

    def _workers(self) -> list[CampusClient | StaleWriter | SetWriter]:
        return [*self.clients.values(), *self.stale.values(), *self.set_writers.values()]

    def close(self) -> None:
        for w in self._workers():
            w.stop()
        if self.history is not None:
            self.history.stop()
        if self.cluster is not None:
            self.cluster.stop_all()
            self.cluster.stop_databases()
        if self.etcd is not None:
            self.etcd.stop()
        if self.net is not None:
            self.net.close()

    @staticmethod
    def _run(coro: Any) -> Any:
        return asyncio.run(coro)

    async def _ready(self) -> None:
        assert self.cluster is not None
        cluster = load_cluster(self.cluster.cluster_file, need_client_tls=True)
        client = ClusterClient(cluster)
        try:
            await wait_ready(self.cluster, client)
        finally:
            await client.close()
        self._wait_serving(self.cluster.campuses)

    def _wait_serving(self, campuses: list[CampusLayout]) -> None:
        wait_for(lambda: all(self._serving(c.name) == c.name for c in campuses),
                 60, "every campus serving its own users")

    def _serving(self, campus: str) -> str | None:
        from ringsync.commands.drill.checker import serving_node

        assert self.cluster is not None
        node = serving_node(campus, self.cluster.campuses)
        return node.name if node is not None else None

    def route_servers(self) -> dict[str, str]:
        return {c: r.serving for c, r in self._run(self._routes()).items()}

    async def _routes(self) -> dict[str, Any]:
        assert self.cluster is not None and self.etcd is not None
        store = DRStore(self.cluster.name, tuple(self.etcd.endpoints),
                        tls=self.cluster.operator_tls)
        try:
            return await store.routes()
        finally:
            await store.close()

    def set_writer(self) -> str | None:
        """The set's writer, as its route in etcd says (None: no route)."""
        route = self._run(self._routes()).get(SET_ROUTE)
        return route.serving if route is not None else None

    def first_set_ack(self, after: float, campus: str | None = None,
                      exclude: str = "") -> tuple[float, str] | None:
        """The first set write acknowledged after ``after`` (at ``campus``, or at
        any campus but ``exclude``): (when, where)."""
        found = [(w.acked_at, c) for c, s in self.set_writers.items()
                 if (c == campus if campus is not None else c != exclude)
                 for w in list(s.acked) if w.acked_at > after]
        return min(found, default=None)

    def move(self, campus: str, to: str, kind: str) -> dict[str, Any]:
        assert self.cluster is not None
        cluster = load_cluster(self.cluster.cluster_file)
        deadline = time.monotonic() + RECOVERY_TIMEOUT_SECONDS
        while True:
            try:
                return self._run(move(cluster, campus, to, kind, 60.0, say))
            except RingsyncError as e:
                if time.monotonic() > deadline:
                    raise
                say(f"  {kind} not possible yet ({e}); retrying")
                time.sleep(1.0)

    def committed_at(self, campus: str, node: str, after: float) -> bool:
        return any(a.ok and a.node == node and a.at > after
                   for a in list(self.clients[campus].attempts))

    # -- scenarios -----------------------------------------------------------

    # -- the verdict ---------------------------------------------------------

    def verdict(self) -> dict[str, Any]:
        assert self.cluster is not None
        for w in self._workers():
            w.stop()
        cluster = load_cluster(self.cluster.cluster_file, need_client_tls=True)

        async def converge() -> bool:
            client = ClusterClient(cluster)
            try:
                return await wait_converged(client, 120.0)
            finally:
                await client.close()

        converged = self._run(converge())
        acked = {i for c in self.clients.values() for i in c.acked} | self.preloaded
        acked |= {i for s in self.stale.values() for _, i in s.accepted}
        held = [read_ids(c) for c in self.cluster.campuses]
        everywhere = set.intersection(*held)
        lost = sorted(acked - everywhere)
        assert self.history is not None
        second = {c: self.stale[c].second_writer_times(self.history) for c in self.clients}
        history = self.history.set_routes(SET_ROUTE)
        sets = check_sets(
            [w for s in self.set_writers.values() for w in s.acked],
            {c.name: read_set_rows(c) for c in self.cluster.campuses},
            {c.name: read_stale_ids(c) for c in self.cluster.campuses},
            route_writers_from(history) if history else None)
        lost += sorted(sets.lost)
        rtos = [c["rto"] for c in self.cycles]
        set_rtos = [c["set_rto"] for c in self.cycles if c.get("set_rto") is not None]
        report = {
            "scenario": self.args.scenario, "engine": self.args.engine,
            "campuses": self.args.campuses, "cycles": len(self.cycles), "seed": self.args.seed,
            "failover_after": self.args.failover_after,
            "rto_seconds": {"p50": round(statistics.median(rtos), 3) if rtos else None,
                            "max": round(max(rtos), 3) if rtos else None},
            "rpo_lost_writes": len(lost), "lost_ids": lost[:20],
            "acknowledged_writes": len(acked),
            # the digests of every table agree, and every campus holds the same set rows
            "converged": converged and sets.rows_identical,
            "two_writers_seen": any(second.values()) or sets.two_writers_seen,
            "second_writer_writes": {c: len(v) for c, v in second.items() if v},
            "set_writes": sets.writes,
            "set_epochs": sets.epochs,
            "stale_parked": len(sets.stale_parked),
            "set_moves": sum(1 for c in self.cycles if c.get("set_moved")),
            "set_rto_seconds": {"p50": round(statistics.median(set_rtos), 3) if set_rtos
                                else None,
                                "max": round(max(set_rtos), 3) if set_rtos else None},
            "set_writes_refused": sum(s.refused for s in self.set_writers.values()),
            "set_write_errors": sum(s.errors for s in self.set_writers.values()),
            "set_write_last_errors": {c: s.last_error for c, s in self.set_writers.items()
                                      if s.last_error},
            "set_problems": sets.problems[:20],
            "set_route_samples": len(history),
            "spurious_failover": any(c.get("spurious_failover") for c in self.cycles),
            # leases lost by campuses the fault did not touch (each fences itself then)
            "healthy_lease_lost": sum(sum(c.get("healthy_lease_lost", {}).values())
                                      for c in self.cycles),
            "healthy_fenced": sum(sum(c.get("healthy_fenced", {}).values())
                                  for c in self.cycles),
            "sessions_shut": sum(c.sessions_shut for c in self.clients.values()),
            "route_samples": len(self.history.samples),
            "durability": self.args.durability,
            "lost_without_failed_campus": sum(c.get("lost_without_campus", 0)
                                              for c in self.cycles),
            "cycles_detail": self.cycles,
        }
        # Without a routing history the two-writer check could not have fired.
        enough_history = len(self.history.samples) > 10 * len(self.cycles)
        report["ok"] = (not lost and report["converged"] and not report["two_writers_seen"]
                        and enough_history and sets.writes > 0
                        and not report["spurious_failover"]
                        and not report["healthy_lease_lost"]
                        and not report["healthy_fenced"]
                        and not (self.args.durability == "sync"
                                 and report["lost_without_failed_campus"]))
        return report
