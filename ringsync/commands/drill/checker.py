"""The drill's checker workload: applications that follow the routing map.

Each campus has a CampusClient thread that behaves like a real application
behind a load balancer: it asks every node's HTTP health endpoint
``/serving/<campus>`` which one serves its campus, writes to that node's
database, and re-asks after any failure (and every ``RESOLVE_SECONDS``).
Every write inserts a row with a unique id; the id is recorded as
*acknowledged* only after the commit returned. Like HAProxy's ``inter 1s fall
2 on-marked-down shutdown-sessions`` (docs/dr.md, "Behind a load balancer"), a
watchdog shuts down the connection of a write in flight once the node it went
to stops answering 200 for the campus twice: in sync mode a commit at a campus
whose node died waits for ever (its synchronous standby, the node's capture
connection, is gone), and an application without such a load balancer would
never move. After the drill, every acknowledged id must be present at every
campus (RPO), and the times of failures and successes give the RTO.

A StaleWriter is the application that did not follow: it keeps writing to
one campus's own database whatever the routing map says. Any write it gets
through while that database serves no campus (RouteHistory, sampled from
etcd) is a second writer: the fence failed.

Every drill cluster also has the single-writer set ``drill_single`` (table
``drill_set_writes``); its writers are in ringsync.commands.drill.setwriter.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ringsync.commands.demo.cluster import CampusLayout, Schema
from ringsync.config import TLSFiles
from ringsync.dr.settings import SET_ROUTE_PREFIX

TABLE = "drill_writes"
# The single-writer set every drill cluster has, over one table of its own.
SET_NAME = "drill_single"
SET_TABLE = "drill_set_writes"
SET_ROUTE = SET_ROUTE_PREFIX + SET_NAME
RESOLVE_SECONDS = 0.5
# The load balancer's health check of the node a write is in flight at.
LB_CHECK_SECONDS = 0.5
LB_FALL = 2
CONNECT_TIMEOUT_SECONDS = 2.0

_PG_TABLE = (f"CREATE TABLE {TABLE} (id text PRIMARY KEY, campus text NOT NULL, "
             f"node text NOT NULL, written_at double precision NOT NULL)")
_SQLITE_TABLE = (f"CREATE TABLE {TABLE} (id TEXT PRIMARY KEY, campus TEXT NOT NULL, "
                 f"node TEXT NOT NULL, written_at REAL NOT NULL)")
# epoch: the set fence epoch of the database that took the write (NULL if it
# had none: the checks report such a row); written_at: its clock, in the
# writing transaction.
_PG_SET_TABLE = (f"CREATE TABLE {SET_TABLE} (id text PRIMARY KEY, campus text NOT NULL, "
                 f"epoch bigint, written_at double precision NOT NULL, payload text NOT NULL)")
_SQLITE_SET_TABLE = (f"CREATE TABLE {SET_TABLE} (id TEXT PRIMARY KEY, campus TEXT NOT NULL, "
                     f"epoch INTEGER, written_at REAL NOT NULL, payload TEXT NOT NULL)")
_MARIADB_TABLES = (
    f"CREATE TABLE {TABLE} (id VARCHAR(64) PRIMARY KEY, campus VARCHAR(64) NOT NULL, "
    f"node VARCHAR(64) NOT NULL, written_at DOUBLE NOT NULL) ENGINE=InnoDB;"
    f"CREATE TABLE {SET_TABLE} (id VARCHAR(64) PRIMARY KEY, campus VARCHAR(64) NOT NULL, "
    f"epoch BIGINT, written_at DOUBLE NOT NULL, payload TEXT NOT NULL) ENGINE=InnoDB")
# A MariaDB write or read that hangs (its server stopped answering) fails
# after this long: MariaDB campuses have no synchronous commit to wait on,
# so this is the load balancer's way out for them.
MARIADB_IO_TIMEOUT_SECONDS = 10


def _create_postgres(dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(_PG_TABLE)
        conn.execute(_PG_SET_TABLE)


def _create_sqlite(path: Path) -> None:
    from ringsync.commands.demo.lis import create_sqlite_database

    create_sqlite_database(path, _SQLITE_TABLE + ";\n" + _SQLITE_SET_TABLE + ";")


def _create_mariadb(url: str) -> None:
    from ringsync.commands.demo.lis import create_mariadb_schema

    create_mariadb_schema(url, _MARIADB_TABLES)


def mariadb_connect(node: CampusLayout, autocommit: bool = True) -> Any:
    """A pymysql connection to ``node``'s MariaDB database, as an application's."""
    from ringsync.commands.demo.lis import mysql_connect

    return mysql_connect(str(node.target), autocommit, int(CONNECT_TIMEOUT_SECONDS),
                         MARIADB_IO_TIMEOUT_SECONDS)


def mariadb_rows(node: CampusLayout, query: str) -> list[tuple[Any, ...]]:
    conn = mariadb_connect(node)
    try:
        with conn.cursor() as cur:
            cur.execute(query)
            return list(cur.fetchall())
    finally:
        conn.close()


DRILL_SCHEMA = Schema((TABLE, SET_TABLE), _create_postgres, _create_sqlite, _create_mariadb)


def drill_sets(writer: str) -> list[dict[str, object]]:
    """The cluster file's [[set]] entries of a drill cluster (standby: ring order)."""
    return [{"name": SET_NAME, "tables": [SET_TABLE], "mode": "single", "writer": writer}]


def serving_node(campus: str, layouts: list[CampusLayout]) -> CampusLayout | None:
    """The node whose health endpoint answers 200 for ``campus`` (as a load balancer asks)."""
    return next((node for node in layouts if node_serves(node, campus)), None)


def node_serves(node: CampusLayout, campus: str) -> bool:
    """``node``'s health endpoint answers 200 for ``campus``."""
    try:
        with urllib.request.urlopen(f"http://{node.health}/serving/{campus}",
                                    timeout=0.5) as reply:
            return reply.status == 200 and bool(json.loads(reply.read()).get("serving"))
    except (urllib.error.URLError, OSError, ValueError):
        return False


def shutdown_session(conn: Any) -> None:
    """Cut a database connection's TCP session under a blocked call, as a load
    balancer's ``shutdown-sessions`` does: the call fails, the write is not
    acknowledged."""
    try:
        sock = socket.socket(fileno=os.dup(conn.fileno()))
    except (OSError, ValueError):
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.close()


def write_row(node: CampusLayout, row: tuple[str, str, str, float],
              session: Callable[[Any], None] | None = None) -> None:
    """One committed insert into ``node``'s database; raises on any failure.
    ``session`` (PostgreSQL) is told the connection while the write is in
    flight, then None."""
    if node.mariadb is not None:
        conn = mariadb_connect(node, autocommit=False)
        try:
            with conn.cursor() as cur:
                cur.execute(f"INSERT INTO {TABLE} VALUES (%s, %s, %s, %s)", row)
            conn.commit()
        finally:
            conn.close()
        return
    if node.postgres is not None:
        import psycopg

        with psycopg.connect(node.postgres.dsn, connect_timeout=int(CONNECT_TIMEOUT_SECONDS),
                             application_name="drill-checker") as conn:
            if session is not None:
                session(conn)
            try:
                conn.execute(f"INSERT INTO {TABLE} VALUES (%s, %s, %s, %s)", row)
                conn.commit()
            finally:
                if session is not None:
                    session(None)
        return
    lite = sqlite3.connect(node.database, timeout=CONNECT_TIMEOUT_SECONDS)
    try:
        lite.execute(f"INSERT INTO {TABLE} VALUES (?, ?, ?, ?)", row)
        lite.commit()
    finally:
        lite.close()


def read_ids(node: CampusLayout) -> set[str]:
    if node.mariadb is not None:
        return {str(r[0]) for r in mariadb_rows(node, f"SELECT id FROM {TABLE}")}
    if node.postgres is not None:
        import psycopg

        with psycopg.connect(node.postgres.dsn) as conn:
            return {r[0] for r in conn.execute(f"SELECT id FROM {TABLE}")}
    lite = sqlite3.connect(f"file:{node.database}?mode=ro", uri=True)
    try:
        return {r[0] for r in lite.execute(f"SELECT id FROM {TABLE}")}
    finally:
        lite.close()


@dataclass
class Attempt:
    at: float  # time.time() when the attempt ended
    ok: bool
    node: str  # where it went ("" when no node served the campus)


@dataclass
class _Writer:
    """A writing thread: ``start``, ``stop`` (joins it); subclasses write in ``_run``."""

    _stop: threading.Event = field(default_factory=threading.Event, kw_only=True)
    _thread: threading.Thread | None = field(default=None, kw_only=True)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self._thread_name(),
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _thread_name(self) -> str:
        raise NotImplementedError

    def _run(self) -> None:
        raise NotImplementedError


@dataclass
class CampusClient(_Writer):
    campus: str
    layouts: list[CampusLayout]
    rate: float = 20.0
    acked: dict[str, str] = field(default_factory=dict)  # id -> node
    attempts: list[Attempt] = field(default_factory=list)
    last_error: str = ""
    sessions_shut: int = 0  # writes in flight cut by the load balancer's watchdog
    _session: tuple[CampusLayout, Any] | None = field(default=None, kw_only=True)
    _session_lock: threading.Lock = field(default_factory=threading.Lock, kw_only=True)

    def _thread_name(self) -> str:
        return f"drill-{self.campus}"

    def start(self) -> None:
        super().start()
        threading.Thread(target=self._watch, name=f"lb-{self.campus}", daemon=True).start()

    def _watch(self) -> None:
        """The load balancer: while a write is in flight at a node, check that
        node every LB_CHECK_SECONDS; after LB_FALL failed checks in a row, shut
        the session down."""
        watched, fails = None, 0
        while not self._stop.wait(LB_CHECK_SECONDS):
            with self._session_lock:
                current = self._session
            if current is None or current is not watched:
                watched, fails = current, 0
                continue
            node, conn = current
            if node_serves(node, self.campus):
                fails = 0
                continue
            fails += 1
            if fails >= LB_FALL:
                with self._session_lock:
                    if self._session is current:
                        shutdown_session(conn)
                        self.sessions_shut += 1
                watched, fails = None, 0

    def _track(self, node: CampusLayout) -> Callable[[Any], None]:
        def session(conn: Any) -> None:
            with self._session_lock:
                self._session = (node, conn) if conn is not None else None
        return session

    def _run(self) -> None:
        node: CampusLayout | None = None
        resolved_at = 0.0
        while not self._stop.is_set():
            if node is None or time.monotonic() - resolved_at > RESOLVE_SECONDS:
                node, resolved_at = serving_node(self.campus, self.layouts), time.monotonic()
            if node is None:
                self.attempts.append(Attempt(time.time(), False, ""))
                self.last_error = f"no node serves {self.campus}"
                self._stop.wait(0.1)
                continue
            row_id = f"{self.campus}-{uuid.uuid4().hex[:12]}"
            try:
                write_row(node, (row_id, self.campus, node.name, time.time()),
                          self._track(node))
            except Exception as e:  # any driver error: the write is not acknowledged
                self.attempts.append(Attempt(time.time(), False, node.name))
                self.last_error = f"{node.name}: {str(e).strip()[:200]}"
                node = None
                self._stop.wait(0.05)
                continue
            self.acked[row_id] = node.name
            self.attempts.append(Attempt(time.time(), True, node.name))
            self._stop.wait(1.0 / self.rate)

    def recovery_seconds(self, fault_at: float, until: float) -> float:
        """From the fault until this campus's writes commit again: the end of the
        last failed stretch after ``fault_at`` (0 if no write failed)."""
        window = [a for a in self.attempts if fault_at <= a.at <= until]
        failures = [i for i, a in enumerate(window) if not a.ok]
        if not failures:
            return 0.0
        after = [a for a in window[failures[-1]:] if a.ok]
        return (after[0].at if after else until) - fault_at


@dataclass
class StaleWriter(_Writer):
    """Writes straight into one campus's own database, ignoring the routing map."""

    node: CampusLayout
    accepted: list[tuple[float, str]] = field(default_factory=list)  # (time, id) committed

    def _thread_name(self) -> str:
        return f"stale-{self.node.name}"

    def _run(self) -> None:
        while not self._stop.is_set():
            row_id = f"stale-{self.node.name}-{uuid.uuid4().hex[:12]}"
            try:
                write_row(self.node, (row_id, self.node.name, self.node.name, time.time()))
                self.accepted.append((time.time(), row_id))
            except Exception:
                pass
            self._stop.wait(0.05)

    def second_writer_times(self, history: RouteHistory) -> list[float]:
        """Writes this stale writer got into its campus's database while, by the
        routing map, that database served no campus at all (so it had to be
        fenced) for a whole second around the write."""
        return [t for t, _ in self.accepted if history.serves_nobody(self.node.name, t, 0.5)]


class RouteHistory:
    """The routing map over time, sampled from etcd every 0.1 s by a thread."""

    def __init__(self, cluster: str, endpoints: tuple[str, ...],
                 tls: TLSFiles | None = None) -> None:
        self.cluster, self.endpoints, self.tls = cluster, endpoints, tls
        # campus -> (serving, state); single-writer sets' routes are not in here
        self.samples: list[tuple[float, dict[str, tuple[str, str]]]] = []
        # set route key ("set:<name>") -> its stored JSON, sampled at the same times
        self.set_samples: list[tuple[float, dict[str, dict[str, Any]]]] = []
        self.errors: list[str] = []
        self._times: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="route-history")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        import asyncio

        from ringsync.dr.routes import Route
        from ringsync.dr.store import DRStore, EtcdError

        async def poll() -> None:
            store = DRStore(self.cluster, self.endpoints, tls=self.tls)
            try:
                while not self._stop.is_set():
                    try:
                        found = await store.client.get_prefix(store.keys.routes.encode())
                        routes: dict[str, tuple[str, str]] = {}
                        sets: dict[str, dict[str, Any]] = {}
                        for kv in found:
                            key = kv.key.decode().removeprefix(store.keys.routes)
                            if key.startswith(SET_ROUTE_PREFIX):
                                sets[key] = json.loads(kv.value)
                            else:
                                r = Route.decode(kv.value, kv.mod_revision)
                                routes[key] = (r.serving, r.state)
                        at = time.time()
                        self.samples.append((at, routes))
                        self.set_samples.append((at, sets))
                    except (EtcdError, OSError):
                        pass
                    except Exception as e:  # recorded: no samples must not look like "fine"
                        self.errors.append(f"{type(e).__name__}: {e}")
                    await asyncio.sleep(0.1)
            finally:
                await store.close()

        asyncio.run(poll())

    def serves_nobody(self, node: str, at: float, margin: float) -> bool:
        """Every sample within ``margin`` of ``at`` has no active route on ``node``
        (and there are such samples on both sides)."""
        import bisect

        if len(self._times) != len(self.samples):  # samples are appended in time order
            self._times = [t for t, _ in self.samples]
        lo = bisect.bisect_left(self._times, at - margin)
        hi = bisect.bisect_right(self._times, at + margin)
        around = self.samples[lo:hi]
        before = any(t <= at for t, _ in around)
        after = any(t >= at for t, _ in around)
        return before and after and all(
            not any(serving == node and state == "active" for serving, state in r.values())
            for _, r in around)

    def set_routes(self, key: str, start: float = 0.0,
                   end: float = float("inf")) -> list[dict[str, Any]]:
        """The samples of one set's route (its stored JSON) between two times."""
        return [sets[key] for t, sets in list(self.set_samples)
                if start <= t <= end and key in sets]

    def set_writer_moved(self, key: str, start: float, end: float) -> bool:
        """Whether the set's writer changed between ``start`` and ``end``: the
        tenure (writer_since, or the writer itself) differs among the last
        sample before ``start`` and the samples up to ``end``."""
        before = self.set_routes(key, 0.0, start)[-1:]
        tenures = {(doc.get("writer_since"), doc.get("serving"))
                   for doc in before + self.set_routes(key, start, end)}
        return len(tenures) > 1
