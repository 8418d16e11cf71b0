"""A local cluster on one machine: configs, certificates, node processes.

Used by `ringsync demo` and by the integration tests, so both run exactly
what an operator would: real `python -m node` processes over mTLS, each with
its own database, journal and certificate, on free local ports. Every
process started here is stopped by its pid, never by name.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ringsync import pki
from ringsync.commands.demo import codes
from ringsync.commands.demo.lis import (
    MARIADB_SCHEMA,
    SQLITE_SCHEMA,
    TABLES,
    create_mariadb_schema,
    create_postgres_schema,
    create_sqlite_database,
)
from ringsync.commands.demo.mariadb import LocalMariaDB
from ringsync.commands.demo.postgres import LocalPostgres
from ringsync.config import TLSFiles
from ringsync.errors import RingsyncError

CAMPUS_NAMES = (
    "chaohui", "wangjiangshan", "yuecheng", "fuyang", "binjiang", "xiaoshan",
    "tonglu", "chunan",
)


_HANDED_OUT: set[int] = set()
_HANDED_OUT_LOCK = threading.Lock()


def free_port() -> int:
    """A port free on 127.0.0.1 now, and never one this process handed out
    before: ports are chosen before the processes that listen on them start
    (a node's gRPC and health ports, a drill's proxies), so two choices made
    before either is bound must not be the same port."""
    with _HANDED_OUT_LOCK:
        for _ in range(1000):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", 0))
                port = int(s.getsockname()[1])
            if port not in _HANDED_OUT:
                _HANDED_OUT.add(port)
                return port
    raise RingsyncError("no free port on 127.0.0.1 that this process has not handed out")


@dataclass
class CampusLayout:
    name: str
    port: int
    dir: Path
    engine: str = "sqlite"
    postgres: LocalPostgres | None = None
    health_port: int = 0
    mariadb: LocalMariaDB | None = None

    @property
    def health(self) -> str:
        """The node's HTTP health endpoint (GET /serving/<campus>)."""
        return f"127.0.0.1:{self.health_port}"

    @property
    def target(self) -> Path | str:
        """What a workload connects to: the SQLite file, the PostgreSQL DSN or
        the MariaDB URL."""
        if self.mariadb is not None:
            return self.mariadb.url()
        return self.postgres.dsn if self.postgres is not None else self.database

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def config(self) -> Path:
        return self.dir / "node.toml"

    @property
    def database(self) -> Path:
        return self.dir / "lis.db"

    @property
    def log(self) -> Path:
        return self.dir / "node.log"


# What a laboratory would defend: a STAT order beats a routine one; a result's
# status only moves forward; concurrent edits of different result columns
# both survive; every campus's edit counts in a result's version number.
DEMO_CONFLICT_POLICIES = """\
[conflicts.tables.lab_orders]
rule = "rank"
rank = { column = "priority", order = ["STAT", "routine"] }
monotonic = { status = ["ordered", "collected", "resulted"] }

[conflicts.tables.lab_results]
rule = "merge"
monotonic = { status = ["preliminary", "resulted", "verified", "amended"] }
delta = ["version"]
"""


@dataclass(frozen=True)
class Schema:
    """The replicated tables and how to create them in a new campus database."""

    tables: tuple[str, ...]
    create_postgres: Callable[[str], None]  # given the DSN
    create_sqlite: Callable[[Path], None]  # given the database file
    create_mariadb: Callable[[str], None] | None = None  # given the mysql:// URL


LIS_SCHEMA = Schema(TABLES, create_postgres_schema, create_sqlite_database,
                    create_mariadb_schema)


def _coded_sqlite(path: Path) -> None:
    create_sqlite_database(path, codes.SQLITE_MAP_DDL + codes.seed_sql(CAMPUS_NAMES)
                           + SQLITE_SCHEMA)


def _coded_postgres(dsn: str) -> None:
    create_postgres_schema(dsn)
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in (codes.POSTGRES_MAP_DDL + codes.seed_sql(CAMPUS_NAMES)).split(";"):
            if statement.strip():
                conn.execute(statement)


def _coded_mariadb(url: str) -> None:
    create_mariadb_schema(url, codes.MARIADB_MAP_DDL + codes.seed_sql(CAMPUS_NAMES)
                          + MARIADB_SCHEMA)


# The LIS with code dictionaries (ringsync.commands.demo.codes): the map table
# first, so a joining campus copies the maps before the orders they translate.
CODED_LIS_SCHEMA = Schema((codes.MAP_TABLE, *TABLES), _coded_postgres, _coded_sqlite,
                          _coded_mariadb)


def leaf_toml(address: str, route: dict[str, Any]) -> list[str]:
    """A [[leaf]] entry's lines: its keys, then [leaf.filter], [leaf.columns],
    [leaf.follows] and [leaf.masking.<table>] (a rule: "kind" or {"kind": ...,
    "patient": ...})."""
    tables = ("filter", "columns", "follows", "masking")
    lines = ["[[leaf]]", f'address = "{address}"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in route.items() if k not in tables]
    for section in ("filter", "columns"):
        if route.get(section):
            lines += [f"[leaf.{section}]"]
            lines += [f"{t} = {json.dumps(v)}" for t, v in route[section].items()]
    if route.get("follows"):
        lines.append("[leaf.follows]")
        lines += [f'{t} = {{ parent = {json.dumps(f["parent"])}, by = {json.dumps(f["by"])} }}'
                  for t, f in route["follows"].items()]
    for table, rules in (route.get("masking") or {}).items():
        lines.append(f"[leaf.masking.{table}]")
        for column, rule in rules.items():
            value = json.dumps(rule) if isinstance(rule, str) else "{ " + ", ".join(
                f"{k} = {json.dumps(v)}" for k, v in rule.items()) + " }"
            lines.append(f"{column} = {value}")
    return [*lines, ""]


@dataclass
class LocalCluster:
    root: Path
    campuses: list[CampusLayout] = field(default_factory=list)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    name: str = "demo"
    schema: Schema = LIS_SCHEMA
    replication: dict[str, float | int | bool] = field(default_factory=dict)
    conflict_policies: str = DEMO_CONFLICT_POLICIES
    # The [dr] section: etcd endpoints and settings; empty: DR off.
    dr: dict[str, Any] = field(default_factory=dict)
    # Extra [database] keys of PostgreSQL campuses, e.g. durability = "sync".
    postgres_settings: dict[str, Any] = field(default_factory=dict)
    # [[set]] entries: single-writer replication sets ({"name", "tables", "writer", ...}).
    sets: list[dict[str, Any]] = field(default_factory=list)
    # Leaves outside the ring (ringsync.leaves), each with its [[leaf]] keys in ``route``.
    leaves: list[CampusLayout] = field(default_factory=list)
    routes: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def create(
        cls, root: Path, count: int, replication: dict[str, float | int | bool] | None = None,
        engines: list[str] | None = None, conflict_policies: str | None = None,
        schema: Schema = LIS_SCHEMA, dr: dict[str, Any] | None = None,
        postgres_settings: dict[str, Any] | None = None,
        sets: list[dict[str, Any]] | None = None, dictionaries: bool = False,
        leaves: list[dict[str, Any]] | None = None,
    ) -> LocalCluster:
        """Write configs and certificates; ``engines`` gives each campus's engine,
        ``conflict_policies`` the cluster file's [conflicts] TOML, ``schema`` the
        tables (the demo's laboratory system by default), ``dr`` the [dr]
        section (``etcd`` endpoints, ``failover_after``, ...; none: DR off),
        ``sets`` the [[set]] entries (single-writer sets; none by default);
        ``dictionaries``: each campus codes lab tests its own way and the ring
        maps them (ringsync.commands.demo.codes; the schema gains the map);
        ``leaves``: [[leaf]] entries (``name``, ``parents``, optional ``tables``,
        ``filter``, ``uploads``, and ``engine``, SQLite by default)."""
        if not 2 <= count <= len(CAMPUS_NAMES):
            raise RingsyncError(f"--campuses must be between 2 and {len(CAMPUS_NAMES)}")
        root = root.resolve()
        if (root / "cluster.toml").exists():
            raise RingsyncError(
                f"{root} already holds a cluster; pick an empty --data-dir or delete it"
            )
        cluster = cls(root, schema=schema, dr=dict(dr or {}),
                      postgres_settings=dict(postgres_settings or {}),
                      sets=[dict(x) for x in sets or ()],
                      replication=replication or {"heal_after_seconds": 3.0},
                      conflict_policies=(DEMO_CONFLICT_POLICIES if conflict_policies is None
                                         else conflict_policies))
        if dictionaries:
            cluster.schema = CODED_LIS_SCHEMA
            cluster.conflict_policies += "\n" + codes.DICTIONARIES_TOML
        engines = engines or ["sqlite"] * count
        for name, engine in zip(CAMPUS_NAMES[:count], engines, strict=True):
            cluster.campuses.append(CampusLayout(name, free_port(), root / name, engine,
                                                 health_port=free_port()))
        for entry in leaves or ():
            route = {k: v for k, v in entry.items() if k != "engine"}
            cluster.routes[entry["name"]] = route
            cluster.leaves.append(CampusLayout(entry["name"], free_port(), root / entry["name"],
                                               entry.get("engine", "sqlite")))
        try:
            cluster._write()
        except BaseException:
            cluster.stop_databases()
            raise
        return cluster

    @property
    def operator_tls(self) -> TLSFiles | None:
        """The console's certificate, which the demo's and the drills' own
        etcd clients present with ``[dr] etcd_tls``; None without."""
        if not self.dr.get("etcd_tls"):
            return None
        return TLSFiles(self.pki_dir / "ca.crt", self.pki_dir / "console.crt",
                        self.pki_dir / "console.key")

    @property
    def cluster_file(self) -> Path:
        return self.root / "cluster.toml"

    @property
    def pki_dir(self) -> Path:
        return self.root / "pki"

    @property
    def tables(self) -> tuple[str, ...]:
        return self.schema.tables

    def campus(self, name: str) -> CampusLayout:
        """A ring member's or a leaf's layout."""
        return next(c for c in (*self.campuses, *self.leaves) if c.name == name)

    def _write(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        pki.create_ca(self.pki_dir)
        pki.issue(self.pki_dir, "operator", "console")
        ring = ", ".join(f'"{c.name}"' for c in self.campuses)
        tables = ", ".join(f'"{t}"' for t in self.tables)
        lines = [
            "# Written by `ringsync demo`; read by every node, `ringsync console` and `ctl`.",
            "[cluster]",
            f'name = "{self.name}"',
            f"ring = [{ring}]",
            f"tables = [{tables}]",
            "",
            "[client]",
            'ca = "pki/ca.crt"',
            'cert = "pki/console.crt"',
            'key = "pki/console.key"',
            "",
        ]
        for c in self.campuses:
            lines += ["[[campus]]", f'name = "{c.name}"', f'address = "{c.address}"',
                      f'health = "{c.health}"', ""]
        if self.dr:
            lines.append("[dr]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in self.dr.items()]
            lines.append("")
        for entry in self.sets:  # strings and lists of strings: JSON is valid TOML
            lines.append("[[set]]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in entry.items()]
            lines.append("")
        for leaf in self.leaves:
            lines += leaf_toml(leaf.address, self.routes[leaf.name])
        lines.append(self.conflict_policies)
        self.cluster_file.write_text("\n".join(lines))
        for c in (*self.campuses, *self.leaves):
            c.dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # its data_dir
            pki.issue(self.pki_dir, "node", c.name, ("127.0.0.1", "localhost"))
            if c.engine == "postgres":
                c.postgres = LocalPostgres.create(c.dir / "pgdata", free_port())
                c.postgres.start()
                self._write_servers()
                self.schema.create_postgres(c.postgres.dsn)
                database = f'engine = "postgres"\ndsn = "{c.postgres.dsn}"\n' + "".join(
                    f"{k} = {json.dumps(v)}\n" for k, v in self.postgres_settings.items())
            elif c.engine == "mariadb":
                if self.schema.create_mariadb is None:
                    raise RingsyncError("this cluster's tables have no MariaDB form")
                c.mariadb = LocalMariaDB.create(free_port())
                self._write_servers()
                c.mariadb.start()
                self.schema.create_mariadb(c.mariadb.url())
                secret = c.dir / "mariadb.password"  # kept out of node.toml
                secret.touch(mode=0o600)
                secret.write_text(c.mariadb.password + "\n")
                database = (f'engine = "mariadb"\ndsn = "{c.mariadb.url(password=None)}"\n'
                            f'password_file = "mariadb.password"\n')
            else:
                self.schema.create_sqlite(c.database)
                database = 'engine = "sqlite"\npath = "lis.db"\n'
            tuning = "\n".join(f"{k} = {str(v).lower() if isinstance(v, bool) else v}"
                               for k, v in self.replication.items())
            c.config.write_text(
                f'campus = "{c.name}"\n'
                f'cluster_file = "../cluster.toml"\n'
                f'data_dir = "."\n\n'
                f"[database]\n"
                f"{database}\n"
                f"[tls]\n"
                f'ca = "../pki/ca.crt"\n'
                f'cert = "../pki/{c.name}.crt"\n'
                f'key = "../pki/{c.name}.key"\n\n'
                f"[replication]\n{tuning}\n"
                + ("\n[join]\nseed = true\n" if c is self.campuses[0] else "")
            )

    # -- processes -------------------------------------------------------

    def start(self, name: str) -> subprocess.Popen[bytes]:
        c = self.campus(name)
        old = self.processes.get(name)
        if old is not None and old.poll() is None:
            raise RingsyncError(f"node {name} is already running (pid {old.pid})")
        log = c.log.open("ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "node", "--config", str(c.config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in the terminal reaches us, not the nodes
        )
        log.close()
        self.processes[name] = proc
        self._write_pids()
        return proc

    def start_all(self) -> None:
        for c in (*self.campuses, *self.leaves):
            self.start(c.name)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.processes.get(name)
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)
            proc.wait(timeout=30)

    def stop(self, name: str, timeout: float = 10.0) -> None:
        proc = self.processes.get(name)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def stop_all(self) -> None:
        for name in list(self.processes):
            proc = self.processes[name]
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self.processes.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self._write_pids()

    def stop_databases(self) -> None:
        """Stop (and delete) the PostgreSQL and MariaDB servers this cluster started."""
        for c in (*self.campuses, *self.leaves):
            if c.postgres is not None:
                c.postgres.remove()
            if c.mariadb is not None:
                c.mariadb.remove()
        (self.root / "postgres.json").unlink(missing_ok=True)
        (self.root / "mariadb.json").unlink(missing_ok=True)

    def _write_servers(self) -> None:
        servers = {c.name: {"datadir": str(c.postgres.datadir), "port": c.postgres.port}
                   for c in (*self.campuses, *self.leaves) if c.postgres is not None}
        (self.root / "postgres.json").write_text(json.dumps(servers))
        mariadbs = {c.name: {"base": str(c.mariadb.base), "port": c.mariadb.port}
                    for c in (*self.campuses, *self.leaves) if c.mariadb is not None}
        if mariadbs:
            (self.root / "mariadb.json").write_text(json.dumps(mariadbs))

    def check_alive(self) -> None:
        for name, proc in self.processes.items():
            code = proc.poll()
            if code is not None:
                tail = self.campus(name).log.read_text(errors="replace")[-2000:]
                raise RingsyncError(f"node {name} exited with code {code}:\n{tail}")

    def _write_pids(self) -> None:
        pids = {n: p.pid for n, p in self.processes.items() if p.poll() is None}
        (self.root / "pids.json").write_text(json.dumps(pids))
