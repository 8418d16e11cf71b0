"""The systems the benchmark measures, each built from scratch on this machine.

- ``NativeSetup``: two PostgreSQL clusters joined by PostgreSQL's own
  publication/subscription, the anchor the PostgreSQL modes' ratios are
  taken against (``MariaNativeSetup``, ringsync.commands.bench.mariadb, is
  the MariaDB modes' anchor: MariaDB's own GTID replication).
- ``RingsyncSetup``: a ringsync cluster of real node processes over mTLS,
  made exactly as the demo makes one (``LocalCluster``), with the benchmark
  table as its only replicated table. ``hop`` is PostgreSQL -> PostgreSQL,
  ``ring`` three PostgreSQL campuses all writing, ``sqlite`` PostgreSQL ->
  SQLite, ``pg-mariadb`` PostgreSQL -> MariaDB and ``mariadb-pg`` MariaDB ->
  PostgreSQL (the bench's ``mariadb`` mode runs those two after
  ``mariadb-native``).

All expose the same small surface to the scenarios: where writers write (a
``Source``), where a writer's rows are watched, which processes do the replication work,
how to stop and restart the receiving side (catch-up), and when the
restarted receiver answers again (the native apply worker is running; a
node's HTTP health endpoint responds).

``sync_twin`` builds a second hop beside the first, the same in every way
but with ``durability = "sync"`` on its PostgreSQL campuses, for the sync
workload; ``RingsyncSetup.durability`` says what an origin really runs (the
node's status, and PostgreSQL's view of the node's capture connection).
"""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ringsync.commands.bench.mariadb import MariaNativeSetup, MariaSource, create_mariadb_table
from ringsync.commands.bench.probe import poll_until
from ringsync.commands.bench.workload import (
    TABLE,
    PostgresSource,
    Source,
    create_postgres_table,
    create_sqlite_table,
)
from ringsync.commands.demo.cluster import LocalCluster, Schema, free_port
from ringsync.commands.demo.postgres import LocalPostgres
from ringsync.errors import RingsyncError
from ringsync.names import NODE_APPLICATION_NAME

if TYPE_CHECKING:
    from ringsync.client import ClusterClient

BENCH_SCHEMA = Schema((TABLE,), create_postgres_table, create_sqlite_table,
                      create_mariadb_table)
# Every commit at a sync origin waits for a peer's journal: never released
# early by degrading, so the sync workload measures only synchronous commits.
SYNC_SETTINGS: dict[str, Any] = {"durability": "sync", "sync_policy": "strict"}
# Reconnect quickly after the catch-up scenario restarts a receiver.
BENCH_TUNING: dict[str, float | int] = {"heal_after_seconds": 3.0,
                                        "reconnect_max_seconds": 0.5}


class Setup(Protocol):
    mode: str
    writers: list[str]  # origins that write, by name

    def source(self, origin: str) -> Source: ...
    def far_receiver(self, origin: str) -> tuple[str, Path | str]: ...
    def databases(self) -> list[str]: ...
    def cpu_pids(self) -> list[int]: ...
    def rss_pids(self) -> list[int]: ...
    def stop_receiver(self) -> None: ...
    def start_receiver(self) -> None: ...
    def wait_receiver_answering(self, timeout: float) -> float: ...
    def close(self) -> None: ...


class _BackendPids:
    """Process ids of PostgreSQL backends matching a condition, on several servers."""

    def __init__(self, dsns: list[str], where: str) -> None:
        import psycopg

        self._lock = threading.Lock()
        self._conns = [psycopg.connect(d, autocommit=True) for d in dsns]
        self._sql = f"SELECT pid FROM pg_stat_activity WHERE {where}"

    def __call__(self) -> list[int]:
        with self._lock:
            return [r[0] for c in self._conns for r in c.execute(self._sql)]

    def close(self) -> None:
        for c in self._conns:
            c.close()


class NativeSetup:
    mode = "native"

    def __init__(self) -> None:
        self.writers = ["source"]
        self.source_pg = LocalPostgres.create(None, free_port())
        self.target = LocalPostgres.create(None, free_port())
        self._backends: _BackendPids | None = None
        try:
            for pg in (self.source_pg, self.target):
                pg.start()
                create_postgres_table(pg.dsn)
            self._sql(self.source_pg.dsn, f"CREATE PUBLICATION bench_pub FOR TABLE {TABLE}")
            self._sql(self.target.dsn,
                      f"CREATE SUBSCRIPTION bench_sub CONNECTION '{self.source_pg.dsn}' "
                      "PUBLICATION bench_pub WITH (copy_data = false)")
            self._wait_streaming()
            self._backends = _BackendPids(
                [self.source_pg.dsn, self.target.dsn],
                "backend_type IN ('walsender', 'logical replication worker')")
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _sql(dsn: str, statement: str) -> None:
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(statement)

    def _wait_streaming(self, timeout: float = 30.0) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        with psycopg.connect(self.source_pg.dsn, autocommit=True) as conn:
            while not conn.execute("SELECT 1 FROM pg_stat_replication WHERE state = "
                                   "'streaming'").fetchone():
                if time.monotonic() > deadline:
                    raise RingsyncError("the native subscription did not start streaming")
                time.sleep(0.1)

    def source(self, origin: str) -> PostgresSource:
        return PostgresSource(self.source_pg.port, self.source_pg.dsn)

    def far_receiver(self, origin: str) -> tuple[str, Path | str]:
        return "target", self.target.dsn

    def databases(self) -> list[str]:
        return [self.source_pg.dsn, self.target.dsn]

    def cpu_pids(self) -> list[int]:
        return self._backends() if self._backends else []

    rss_pids = cpu_pids

    def stop_receiver(self) -> None:
        self._sql(self.target.dsn, "ALTER SUBSCRIPTION bench_sub DISABLE")

    def start_receiver(self) -> None:
        self._sql(self.target.dsn, "ALTER SUBSCRIPTION bench_sub ENABLE")

    def wait_receiver_answering(self, timeout: float) -> float:
        """When the subscription's apply worker is running again."""
        import psycopg

        with psycopg.connect(self.target.dsn, autocommit=True) as conn:
            return poll_until(lambda: conn.execute(
                "SELECT 1 FROM pg_stat_subscription WHERE subname = 'bench_sub' "
                "AND pid IS NOT NULL").fetchone() is not None, timeout, "the apply worker")

    def close(self) -> None:
        if self._backends is not None:
            self._backends.close()
        for pg in (self.target, self.source_pg):
            pg.remove()


class RingsyncSetup:
    def __init__(self, mode: str, root: Path, engines: list[str], writers: int,
                 postgres_settings: dict[str, Any] | None = None,
                 cluster_extra: str = "") -> None:
        self.mode = mode
        self.engines = engines
        self.cluster = LocalCluster.create(root, len(engines), replication=dict(BENCH_TUNING),
                                           engines=engines, conflict_policies="",
                                           schema=BENCH_SCHEMA,
                                           postgres_settings=postgres_settings)
        self.digests = "incremental = true" in cluster_extra
        if cluster_extra:  # more sections for cluster.toml (e.g. [verify])
            with self.cluster.cluster_file.open("a") as f:
                f.write("\n" + cluster_extra)
        self.campuses = [c.name for c in self.cluster.campuses]
        self.writers = self.campuses[:writers]
        self._backends: _BackendPids | None = None
        self._sources: dict[str, Source] = {}
        try:
            self.cluster.start_all()
            self._wait_ready()
            self._backends = _BackendPids(
                [c.postgres.dsn for c in self.cluster.campuses if c.postgres is not None],
                f"application_name = '{NODE_APPLICATION_NAME}'")
        except BaseException:
            self.close()
            raise

    def _wait_ready(self) -> None:
        from ringsync.commands.demo.runner import wait_ready

        async def ready() -> None:
            client = self._client()
            try:
                await wait_ready(self.cluster, client)
            finally:
                await client.close()

        asyncio.run(ready())

    def _client(self) -> ClusterClient:
        from ringsync.client import ClusterClient
        from ringsync.config import load_cluster

        return ClusterClient(load_cluster(self.cluster.cluster_file, need_client_tls=True))

    def durability(self, origin: str) -> dict[str, str | None]:
        """What ``origin`` runs: its node's durability as its status reports it
        ("async", "sync", "sync DEGRADED: ..."), and PostgreSQL's sync_state of
        the node's capture connection ("sync" when commits wait for it)."""
        import psycopg

        from node.engines.postgres.sync import standby_name

        async def status() -> str | None:
            client = self._client()
            try:
                reply = await client.status_of(origin)
            finally:
                await client.close()
            return None if reply.status is None else reply.status.durability or "async"

        with psycopg.connect(self.source_dsn(origin), autocommit=True) as conn:
            # the capture connection: named as the standby in sync, the node's fallback name
            row = conn.execute("SELECT string_agg(DISTINCT sync_state, ',') FROM "
                               "pg_stat_replication WHERE application_name IN (%s, %s)",
                               (standby_name(origin), NODE_APPLICATION_NAME)).fetchone()
        return {"node_durability": asyncio.run(status()),
                "standby_sync_state": None if row is None or row[0] is None else str(row[0])}

    def _postgres(self, origin: str) -> LocalPostgres:
        pg = self.cluster.campus(origin).postgres
        if pg is None:
            raise RingsyncError(f"campus {origin} is not a PostgreSQL campus")
        return pg

    def source(self, origin: str) -> Source:
        """Where ``origin``'s writers write (one per origin: a MariaDB source
        keeps what its streams counted)."""
        if origin not in self._sources:
            campus = self.cluster.campus(origin)
            self._sources[origin] = (
                MariaSource(campus.mariadb.url()) if campus.mariadb is not None
                else PostgresSource(self._postgres(origin).port, self._postgres(origin).dsn))
        return self._sources[origin]

    def source_dsn(self, origin: str) -> str:
        """A PostgreSQL origin's DSN (the sync and verify workloads read it)."""
        return self._postgres(origin).dsn

    def far_receiver(self, origin: str) -> tuple[str, Path | str]:
        """The campus farthest downstream of ``origin`` (its predecessor in the ring)."""
        name = self.campuses[self.campuses.index(origin) - 1]
        return name, self.cluster.campus(name).target

    def databases(self) -> list[str]:
        return [c.postgres.dsn for c in self.cluster.campuses if c.postgres is not None]

    def rss_pids(self) -> list[int]:
        return [p.pid for p in self.cluster.processes.values() if p.poll() is None]

    def cpu_pids(self) -> list[int]:
        """The nodes, their PostgreSQL backends, and every MariaDB server that
        only receives (whose work is the nodes' apply; a writing one's is the load)."""
        receivers = [c.mariadb.pid() for c in self.cluster.campuses
                     if c.mariadb is not None and c.name not in self.writers]
        return (self.rss_pids() + (self._backends() if self._backends else [])
                + [pid for pid in receivers if pid is not None])

    def stop_receiver(self) -> None:
        self.cluster.stop(self.campuses[1])

    def start_receiver(self) -> None:
        self.cluster.start(self.campuses[1])

    def wait_receiver_answering(self, timeout: float) -> float:
        """When the restarted node's HTTP health endpoint first responds (it
        starts listening just before the node's gRPC server starts)."""
        url = f"http://{self.cluster.campus(self.campuses[1]).health}/health"
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))

        def answers() -> bool:
            try:
                with direct.open(url, timeout=1.0):
                    return True
            except urllib.error.HTTPError:  # 503: up, its database not yet healthy
                return True
            except OSError:  # not listening yet
                return False

        return poll_until(answers, timeout, f"node {self.campuses[1]}")

    def close(self) -> None:
        if self._backends is not None:
            self._backends.close()
        self.cluster.stop_all()
        self.cluster.stop_databases()


def sync_twin(setup: Setup) -> RingsyncSetup:
    """A second ``hop`` beside ``setup`` (its own campuses, databases and
    nodes, under the same root), every PostgreSQL campus in sync durability."""
    if not isinstance(setup, RingsyncSetup) or "sqlite" in setup.engines:
        raise RingsyncError(f"sync durability needs a ringsync setup of PostgreSQL campuses, "
                            f"not {setup.mode}")
    return RingsyncSetup(setup.mode, setup.cluster.root.parent / f"{setup.mode}-sync",
                         setup.engines, writers=len(setup.writers),
                         postgres_settings=SYNC_SETTINGS)


def digests_twin(setup: Setup) -> RingsyncSetup:
    """A second hop beside ``setup`` whose campuses keep incremental
    verification digests ([verify] incremental = true)."""
    if not isinstance(setup, RingsyncSetup):
        raise RingsyncError(f"incremental digests need ringsync campuses, not {setup.mode}")
    return RingsyncSetup(setup.mode, setup.cluster.root.parent / f"{setup.mode}-digests",
                         setup.engines, writers=len(setup.writers),
                         cluster_extra=DIGESTS)


DIGESTS = "[verify]\nincremental = true\n"
# The bench's `mariadb` mode: MariaDB's own replication, then a hop each way.
MARIADB_HOPS = {"pg-mariadb": ["postgres", "mariadb"], "mariadb-pg": ["mariadb", "postgres"]}
MARIADB_MODES = ("mariadb-native", *MARIADB_HOPS)


def make_setup(mode: str, root: Path, digests: bool = False) -> Setup:
    """``digests``: every campus keeps incremental verification
    digests (what they cost the data path)."""
    extra = DIGESTS if digests else ""
    if mode == "native":
        return NativeSetup()
    if mode == "hop":
        return RingsyncSetup(mode, root / mode, ["postgres", "postgres"], writers=1,
                             cluster_extra=extra)
    if mode == "ring":
        return RingsyncSetup(mode, root / mode, ["postgres"] * 3, writers=3,
                             cluster_extra=extra)
    if mode == "sqlite":
        return RingsyncSetup(mode, root / mode, ["postgres", "sqlite"], writers=1,
                             cluster_extra=extra)
    if mode == "mariadb-native":
        return MariaNativeSetup()
    if mode in MARIADB_HOPS:
        return RingsyncSetup(mode, root / mode, MARIADB_HOPS[mode], writers=1,
                             cluster_extra=extra)
    raise RingsyncError(f"unknown bench mode {mode!r}")
