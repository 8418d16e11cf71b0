"""Cluster and node configuration: TOML read and validated once, at the edge.

Everything past this module receives frozen dataclasses, never raw dicts.
Relative paths in a file are resolved against that file's directory, so a
config directory can be moved as a whole.

cluster.toml (shared by every node, `ringsync console` and `ringsync ctl`)::

    [cluster]
    name = "lis"
    ring = ["chaohui", "wangjiangshan", "yuecheng", "fuyang"]
    tables = ["patients", "lab_orders", "specimens", "lab_results"]

    [[campus]]
    name = "chaohui"
    address = "10.1.0.5:7400"

    [client]            # the operator's (or viewer's) certificate
    ca = "pki/ca.crt"
    cert = "pki/operator.crt"
    key = "pki/operator.key"

node.toml (one per campus): see NodeConfig and docs/operations.md ("Running real
campuses"); [dr] and per-campus health/standby: ringsync.dr.settings.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ringsync.addresses import check_address
from ringsync.conflict_policy import ConflictSettings, parse_conflicts
from ringsync.dictionaries import DICTIONARY_KEYS, DictionarySettings, parse_dictionaries
from ringsync.dr.settings import (
    DR_KEYS,
    SET_KEYS,
    DRSettings,
    ReplicationSet,
    parse_dr,
    parse_sets,
    parse_standby,
)
from ringsync.dsn import (
    dsn_has_password,
    is_mysql_url,
    password_from_file,
    redact_dsn,
    with_password,
)
from ringsync.errors import ConfigError
from ringsync.leaves import LEAF_KEYS, LeafSettings, parse_leaves
from ringsync.names import CAMPUS_NAME
from ringsync.scopes import SCOPE_KEYS, Scope, parse_scopes
from ringsync.verify_schedule import VERIFY_KEYS, VerifySchedule, parse_verify

TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
ENGINES = ("sqlite", "postgres", "mariadb")


@dataclass(frozen=True)
class TLSFiles:
    ca: Path
    cert: Path
    key: Path
    # The CA's revocation list (ringsync.revocation); a node reads it if it exists.
    crl: Path | None = None


@dataclass(frozen=True)
class CampusEntry:
    name: str
    address: str
    # The node's HTTP health endpoint (GET /serving/<campus>); empty: none.
    health: str = ""
    # Who serves this campus's users when it fails, in order (see ringsync.dr).
    standby: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClusterConfig:
    path: Path
    name: str
    ring: tuple[str, ...]
    tables: tuple[str, ...]
    campuses: tuple[CampusEntry, ...]
    client_tls: TLSFiles | None
    conflicts: ConflictSettings = ConflictSettings()
    dr: DRSettings = DRSettings()
    sets: tuple[ReplicationSet, ...] = ()
    verify: VerifySchedule = VerifySchedule()
    dictionaries: DictionarySettings = DictionarySettings()
    # [[leaf]]: campuses outside the ring, each hanging from a parent (ringsync.leaves).
    leaves: tuple[LeafSettings, ...] = ()
    # [[scope]]: operators and viewers narrowed to campuses and tables (ringsync.scopes).
    scopes: Mapping[str, Scope] = field(default_factory=dict)

    @property
    def origins(self) -> tuple[str, ...]:
        """Every campus whose transactions the ring carries: members, then leaves."""
        return self.ring + tuple(leaf.name for leaf in self.leaves)

    def leaf(self, campus: str) -> LeafSettings | None:
        """The ``[[leaf]]`` of ``campus``; None for a ring member."""
        return next((x for x in self.leaves if x.name == campus), None)

    def leaves_of(self, parent: str) -> tuple[LeafSettings, ...]:
        """The leaves that may hang from ``parent`` (as parent or standby)."""
        return tuple(x for x in self.leaves if parent in x.parents)

    def set_of_table(self) -> dict[str, str]:
        """table -> the single-writer set it belongs to (tables in no set: absent)."""
        return {t: s.name for s in self.sets for t in s.tables}

    def entry(self, campus: str) -> CampusEntry:
        for entry in self.campuses:
            if entry.name == campus:
                return entry
        raise ConfigError(f"{self.path}: campus {campus!r} has no [[campus]] entry")

    def address_of(self, campus: str) -> str:
        leaf = self.leaf(campus)
        return leaf.address if leaf is not None else self.entry(campus).address

    def successors(self, campus: str) -> tuple[str, ...]:
        """The other campuses in ring order, starting with the successor."""
        i = self.ring.index(campus)
        return self.ring[i + 1 :] + self.ring[:i]


DURABILITY = ("async", "sync")
SYNC_POLICIES = ("strict", "degrade")


@dataclass(frozen=True)
class DatabaseConfig:
    engine: str
    path: Path | None = None  # sqlite
    # postgres: a libpq connection string; mariadb: a mysql://user@host:port/db
    # URL (either without a password)
    dsn: str | None = None
    # postgres, mariadb: a file (not readable by other users) whose first line
    # is the account's password; read at start, added to the DSN in memory only.
    password_file: Path | None = None
    # "sync": a commit returns only once another campus journaled it (RPO = 0).
    durability: str = "async"
    # With no peer acknowledging: "strict" (commits wait) or "degrade" (after
    # degrade_after seconds commits stop waiting, and an alert is raised).
    sync_policy: str = "degrade"
    degrade_after: float = 10.0


@dataclass(frozen=True)
class ReplicationTuning:
    # How long the successor may be unreachable before the ring heals around it.
    heal_after_seconds: float = 3.0
    # While bypassing, or waiting out the backoff to the target, how often to
    # try the successor again (a campus that answers is redialled at once).
    probe_interval_seconds: float = 1.0
    batch_max_frames: int = 256
    batch_max_bytes: int = 1 << 20
    # Batches in flight without an acknowledgement.
    window: int = 4
    # Largest message a peer may send; larger ones are rejected by gRPC.
    max_message_bytes: int = 8 << 20
    # Rows per frame when capture splits a large transaction.
    frame_max_changes: int = 2000
    reconnect_min_seconds: float = 0.2
    reconnect_max_seconds: float = 5.0
    # Runs of fresh inserts are written set-wise, without per-row resolution
    # (node.conflicts.fresh); false sends every change through the exact path.
    fast_apply: bool = True


ON_MISMATCH = ("refuse", "take-donor", "keep-local")


@dataclass(frozen=True)
class JoinConfig:
    """How a campus with a new journal joins the ring (initial load)."""

    # This campus's data starts a new ring: with no initialized campus
    # reachable, it initializes itself instead of waiting for a donor.
    seed: bool = False
    # Campus to copy from; empty means the nearest initialized predecessor.
    donor: str = ""
    # When this campus already holds data that differs from the donor's:
    # "refuse" (stop with a per-table report), "take-donor" (replace it with
    # the donor's) or "keep-local" (send the difference round the ring).
    on_mismatch: str = "refuse"


@dataclass(frozen=True)
class NodeConfig:
    path: Path
    campus: str
    listen: str
    data_dir: Path
    database: DatabaseConfig
    tls: TLSFiles
    cluster: ClusterConfig
    replication: ReplicationTuning = field(default_factory=ReplicationTuning)
    join: JoinConfig = field(default_factory=JoinConfig)
    # Where the HTTP health endpoint listens; empty: no endpoint.
    health_listen: str = ""
    # How this node reaches the others when not by the cluster file's
    # addresses (another network path, a NAT, a drill's fault proxy).
    peers: dict[str, str] = field(default_factory=dict)
    # This node's way to etcd, when not the cluster file's [dr] etcd.
    etcd: tuple[str, ...] = ()

    def peer_address(self, campus: str) -> str:
        return self.peers.get(campus) or self.cluster.address_of(campus)

    @property
    def leaf(self) -> LeafSettings | None:
        """This campus's ``[[leaf]]`` when it is a leaf; None for a ring member."""
        return self.cluster.leaf(self.campus)

    @property
    def tables(self) -> tuple[str, ...]:
        """The tables this campus replicates: every one, or a leaf's route's."""
        leaf = self.leaf
        return leaf.tables if leaf is not None else self.cluster.tables

    @property
    def dr(self) -> DRSettings:
        """The cluster's DR settings as this node uses them."""
        if not self.etcd:
            return self.cluster.dr
        return replace(self.cluster.dr, etcd=self.etcd)


# -- unknown sections and keys ------------------------------------------------
#
# Every level of both files is checked against these before anything is read,
# so a typo (`[replicaton]`, `heal_afer_seconds`) is refused with the nearest
# valid name instead of silently ignored. A dict is a table of known keys
# (value: the schema below it, None for a plain value); [schema] is an array
# of tables; Names(schema) is a table whose keys are the user's names
# (campuses, tables, columns) with each value checked against schema.


@dataclass(frozen=True)
class Names:
    each: Any = None


_TLS_KEYS: dict[str, Any] = {"ca": None, "cert": None, "key": None, "crl": None}

CLUSTER_SCHEMA: dict[str, Any] = {
    "cluster": {"name": None, "ring": None, "tables": None},
    "campus": [{"name": None, "address": None, "health": None, "standby": None}],
    "client": _TLS_KEYS,
    "conflicts": {
        "tables": Names({"rule": None, "priority": None,
                         "rank": {"column": None, "order": None},
                         "monotonic": Names(), "delta": None}),
        "max_clock_skew_ms": None, "log_keep_rows": None, "log_keep_days": None,
    },
    "dr": dict.fromkeys(sorted(DR_KEYS)),
    "set": [dict.fromkeys(sorted(SET_KEYS))],
    "verify": dict.fromkeys(sorted(VERIFY_KEYS)),
    "dictionaries": dict.fromkeys(sorted(DICTIONARY_KEYS)),
    "leaf": [{**dict.fromkeys(LEAF_KEYS), "filter": Names(), "columns": Names(),
              "masking": Names(Names())}],
    "scope": [dict.fromkeys(SCOPE_KEYS)],
}

NODE_SCHEMA: dict[str, Any] = {
    "campus": None,
    "cluster_file": None,
    "listen": None,
    "health_listen": None,
    "data_dir": None,
    "database": {"engine": None, "path": None, "dsn": None, "password_file": None,
                 "durability": None, "sync_policy": None, "degrade_after": None},
    "tls": _TLS_KEYS,
    "replication": dict.fromkeys(ReplicationTuning.__dataclass_fields__),
    "peers": Names(),
    # Only etcd belongs here; load_node says where the other DR settings go.
    "dr": dict.fromkeys(sorted(DR_KEYS)),
    "join": dict.fromkeys(JoinConfig.__dataclass_fields__),
}


def _label(name: str, schema: Any, top: bool) -> str:
    """How a name reads in a message: [section], [[array]] or `key`."""
    if top and isinstance(schema, list):
        return f"[[{name}]]"
    if top and isinstance(schema, dict | Names):
        return f"[{name}]"
    return f"`{name}`"


def check_known(data: dict[str, Any], schema: dict[str, Any], path: Path,
                where: str = "") -> None:
    """Refuse a section or key ``schema`` does not know, naming the nearest valid one."""
    for key, value in data.items():
        at = f"{where}.{key}" if where else key
        if key not in schema:
            if where:
                message = f"{path}: unknown key {at}"
            elif isinstance(value, dict) or (
                    isinstance(value, list) and value and isinstance(value[0], dict)):
                message = f"{path}: unknown section {_label(key, value, True)}"
            else:
                message = f"{path}: unknown key `{key}` (top level)"
            close = difflib.get_close_matches(key, list(schema), n=1, cutoff=0.6)
            if close:
                message += f"; did you mean {_label(close[0], schema[close[0]], not where)}?"
            else:
                message += f"; valid {'in [' + where + ']' if where else 'at the top level'}: "
                message += ", ".join(_label(k, schema[k], not where) for k in sorted(schema))
            raise ConfigError(message)
        _check_value(value, schema[key], path, at)


def _check_value(value: Any, schema: Any, path: Path, at: str) -> None:
    if isinstance(schema, dict) and isinstance(value, dict):
        check_known(value, schema, path, at)
    elif isinstance(schema, list) and isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, dict):
                check_known(item, schema[0], path, f"{at}[{i}]")
    elif isinstance(schema, Names) and isinstance(value, dict) and schema.each is not None:
        for name, item in value.items():
            _check_value(item, schema.each, path, f"{at}.{name}")
    # Anything else (a value where a table belongs, or the reverse) is left to
    # the reader of that setting, which says what it must be.


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found; pass the path of an existing config") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e}); fix the syntax and retry") from e


def _section(data: dict[str, Any], name: str, path: Path, required: bool = True) -> dict[str, Any]:
    value = data.get(name)
    if value is None:
        if required:
            raise ConfigError(f"{path}: missing [{name}] section")
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: [{name}] must be a table")
    return value


def _string(section: dict[str, Any], key: str, path: Path, where: str) -> str:
    value = section.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{path}: {where}.{key} must be a non-empty string")
    return value


def _file(base: Path, section: dict[str, Any], key: str, path: Path, where: str) -> Path:
    p = Path(_string(section, key, path, where))
    return p if p.is_absolute() else (base / p)


def _tls(section: dict[str, Any], path: Path, where: str) -> TLSFiles:
    base = path.parent
    files = TLSFiles(
        ca=_file(base, section, "ca", path, where),
        cert=_file(base, section, "cert", path, where),
        key=_file(base, section, "key", path, where),
    )
    crl = (_file(base, section, "crl", path, where) if "crl" in section
           else files.ca.parent / "crl.pem")  # ringsync.revocation.CRL_FILE
    files = TLSFiles(files.ca, files.cert, files.key, crl)
    for key, p in (("ca", files.ca), ("cert", files.cert), ("key", files.key)):
        if not p.is_file():
            raise ConfigError(
                f"{path}: {where}.{key} = {p} does not exist; issue it with "
                f"`ringsync pki` or correct the path"
            )
    return files


def load_cluster(path: Path | str, need_client_tls: bool = False) -> ClusterConfig:
    path = Path(path).resolve()
    data = _read_toml(path)
    check_known(data, CLUSTER_SCHEMA, path)
    cluster = _section(data, "cluster", path)
    name = _string(cluster, "name", path, "cluster")
    ring = cluster.get("ring")
    if not isinstance(ring, list) or len(ring) < 2 or not all(isinstance(c, str) for c in ring):
        raise ConfigError(f"{path}: cluster.ring must list at least two campus names")
    for campus in ring:
        if not CAMPUS_NAME.match(campus):
            raise ConfigError(
                f"{path}: campus name {campus!r} is invalid; use lower-case letters, digits, - or _"
            )
    if len(set(ring)) != len(ring):
        raise ConfigError(f"{path}: cluster.ring names a campus twice")
    tables = cluster.get("tables")
    if not isinstance(tables, list) or not tables:
        raise ConfigError(f"{path}: cluster.tables must list the replicated tables")
    for table in tables:
        if not isinstance(table, str) or not TABLE_NAME.match(table):
            raise ConfigError(f"{path}: cluster.tables entry {table!r} is not a plain table name")
    entries = data.get("campus", [])
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: [[campus]] entries must be an array of tables")
    campuses: list[CampusEntry] = []
    for i, entry in enumerate(entries):
        where = f"campus[{i}]"
        entry_name = _string(entry, "name", path, where)
        if entry_name not in ring:
            raise ConfigError(
                f"{path}: {where}.name = {entry_name!r} is not in cluster.ring {ring}; "
                f"add it to the ring or remove the entry"
            )
        address = check_address(_string(entry, "address", path, where), path, f"{where}.address")
        health = entry.get("health", "")
        if health:
            check_address(_string(entry, "health", path, where), path, f"{where}.health")
        standby = parse_standby(entry, entry_name, ring, path, where)
        campuses.append(CampusEntry(entry_name, address, health, standby))
    named = {c.name for c in campuses}
    for campus in ring:
        if campus not in named:
            raise ConfigError(
                f"{path}: campus {campus!r} is in cluster.ring but has no [[campus]] entry "
                f"with its address"
            )
    client = _section(data, "client", path, required=need_client_tls)
    client_tls = _tls(client, path, "client") if client else None
    conflicts = parse_conflicts(data.get("conflicts", {}), str(path), tuple(tables), tuple(ring))
    dr = parse_dr(_section(data, "dr", path, required=False), path)
    sets = parse_sets(data.get("set"), tables, ring, path)
    verify = parse_verify(_section(data, "verify", path, required=False), tuple(tables), path)
    dictionaries = parse_dictionaries(_section(data, "dictionaries", path, required=False),
                                      tuple(tables), path)
    leaves = parse_leaves(data.get("leaf"), tuple(ring), tuple(tables), path)
    clash = named & {leaf.name for leaf in leaves}
    if clash:
        raise ConfigError(f"{path}: {', '.join(sorted(clash))} has a [[campus]] entry and a "
                          f"[[leaf]] entry; a campus is one or the other")
    return ClusterConfig(
        path=path,
        name=name,
        ring=tuple(ring),
        tables=tuple(tables),
        campuses=tuple(campuses),
        client_tls=client_tls,
        conflicts=conflicts,
        dr=dr,
        sets=sets,
        verify=verify,
        dictionaries=dictionaries,
        leaves=leaves,
        scopes=parse_scopes(data.get("scope"), (*ring, *(x.name for x in leaves)),
                            tuple(tables), path),
    )


def _tuning(section: dict[str, Any], path: Path) -> ReplicationTuning:
    defaults = ReplicationTuning()
    values: dict[str, Any] = {}
    for key, value in section.items():
        if not hasattr(defaults, key):
            raise ConfigError(f"{path}: unknown key replication.{key}")
        expected = type(getattr(defaults, key))
        if expected is bool:
            if not isinstance(value, bool):
                raise ConfigError(f"{path}: replication.{key} must be true or false")
            values[key] = value
            continue
        if expected is float and isinstance(value, int):
            value = float(value)
        if not isinstance(value, expected) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"{path}: replication.{key} must be a positive {expected.__name__}")
        values[key] = value
    return ReplicationTuning(**values)


def _join(section: dict[str, Any], path: Path, cluster: ClusterConfig, campus: str) -> JoinConfig:
    unknown = set(section) - {"seed", "donor", "on_mismatch"}
    if unknown:
        raise ConfigError(f"{path}: unknown key join.{sorted(unknown)[0]}")
    seed = section.get("seed", False)
    if not isinstance(seed, bool):
        raise ConfigError(f"{path}: join.seed must be true or false")
    donor = section.get("donor", "")
    leaf = cluster.leaf(campus)
    if leaf is not None and (seed or (donor and donor not in leaf.parents)):
        raise ConfigError(
            f"{path}: {campus} is a leaf: it is never a seed and copies its subset from one "
            f"of its parents ({', '.join(leaf.parents)}); remove join.seed or name a parent "
            f"as join.donor")
    if donor and leaf is None and (donor not in cluster.ring or donor == campus):
        raise ConfigError(
            f"{path}: join.donor = {donor!r} must name another campus of the ring "
            f"({', '.join(c for c in cluster.ring if c != campus)})"
        )
    on_mismatch = section.get("on_mismatch", "refuse")
    if on_mismatch not in ON_MISMATCH:
        raise ConfigError(f"{path}: join.on_mismatch must be one of {ON_MISMATCH}")
    if leaf is not None and on_mismatch == "keep-local":
        raise ConfigError(f"{path}: {campus} is a leaf: its rows are its parent's subset, so "
                          f"it cannot keep its own as the ring's (join.on_mismatch = "
                          f"\"keep-local\"); use \"refuse\" or \"take-donor\"")
    return JoinConfig(seed=seed, donor=donor, on_mismatch=on_mismatch)


def _durability(db: dict[str, Any], engine: str, path: Path) -> tuple[str, str, float]:
    durability = db.get("durability", "async")
    if durability not in DURABILITY:
        raise ConfigError(f"{path}: database.durability must be one of {DURABILITY}")
    if durability == "sync" and engine != "postgres":
        name = {"sqlite": "SQLite", "mariadb": "MariaDB"}[engine]
        raise ConfigError(
            f"{path}: database.durability = \"sync\" needs PostgreSQL: {name} has no way "
            f"ringsync can use to hold a commit until another campus has it, so {name} "
            f"campuses are asynchronous only; remove the setting or move this campus to "
            f"PostgreSQL")
    policy = db.get("sync_policy", "degrade")
    if policy not in SYNC_POLICIES:
        raise ConfigError(f"{path}: database.sync_policy must be one of {SYNC_POLICIES}")
    degrade_after = db.get("degrade_after", 10.0)
    if isinstance(degrade_after, bool) or not isinstance(degrade_after, int | float) or (
            degrade_after <= 0):
        raise ConfigError(f"{path}: database.degrade_after must be a positive number of seconds")
    return durability, policy, float(degrade_after)


def load_node(path: Path | str) -> NodeConfig:
    path = Path(path).resolve()
    data = _read_toml(path)
    check_known(data, NODE_SCHEMA, path)
    base = path.parent
    campus = _string(data, "campus", path, "top level")
    cluster_file = _file(base, data, "cluster_file", path, "top level")
    cluster = load_cluster(cluster_file)
    leaf = cluster.leaf(campus)
    if campus not in cluster.ring and leaf is None:
        raise ConfigError(
            f"{path}: campus {campus!r} is not in the ring of {cluster.path} "
            f"({', '.join(cluster.ring)}) nor one of its [[leaf]] entries; add it there or "
            f"fix the name"
        )
    listen = data.get("listen") or cluster.address_of(campus)
    check_address(listen, path, "listen")
    health_listen = data.get("health_listen") or (
        cluster.entry(campus).health if leaf is None else "")
    if health_listen:
        check_address(health_listen, path, "health_listen")
    data_dir = Path(data.get("data_dir") or campus)
    data_dir = data_dir if data_dir.is_absolute() else base / data_dir
    db = _section(data, "database", path)
    engine = _string(db, "engine", path, "database")
    if engine not in ENGINES:
        raise ConfigError(
            f"{path}: database.engine = {engine!r} is not supported; use one of {ENGINES}"
        )
    durability, policy, degrade_after = _durability(db, engine, path)
    if engine == "sqlite":
        for key in ("dsn", "password_file"):
            if key in db:
                raise ConfigError(f"{path}: database.{key} is for engine = \"postgres\"; "
                                  f"a SQLite campus names its file with database.path")
        database = DatabaseConfig(engine, path=_file(base, db, "path", path, "database"))
    else:
        server = "PostgreSQL" if engine == "postgres" else "MariaDB"
        if "path" in db:
            raise ConfigError(f"{path}: database.path is for engine = \"sqlite\"; a "
                              f"{server} campus names its server with database.dsn")
        dsn = _string(db, "dsn", path, "database")
        if is_mysql_url(dsn) != (engine == "mariadb"):
            raise ConfigError(
                f"{path}: database.dsn = {redact_dsn(dsn)!r} does not suit engine = "
                f"\"{engine}\": a MariaDB campus names its server with a "
                f"mysql://user@host:port/database URL, a PostgreSQL campus with a libpq "
                f"connection string (host=... dbname=...) or a postgresql:// URL")
        password_file = _file(base, db, "password_file", path, "database") if (
            "password_file" in db) else None
        if password_file is not None:
            if dsn_has_password(dsn):
                raise ConfigError(
                    f"{path}: database.dsn carries a password and database.password_file is "
                    f"set too; remove the password from the DSN (see docs/operations.md, "
                    f"\"Database password\")")
            try:
                password_from_file(password_file)  # exists, private, not empty
            except ConfigError as e:
                raise ConfigError(f"{path}: {e}") from None
        database = DatabaseConfig(engine, dsn=dsn, password_file=password_file,
                                  durability=durability, sync_policy=policy,
                                  degrade_after=degrade_after)
    tls = _tls(_section(data, "tls", path), path, "tls")
    peers = _section(data, "peers", path, required=False)
    for peer, address in peers.items():
        if peer not in cluster.ring or peer == campus:
            raise ConfigError(f"{path}: peers.{peer}: not another campus of the ring "
                              f"(leaves are never dialled)")
        check_address(address if isinstance(address, str) else "", path, f"peers.{peer}")
    node_dr = _section(data, "dr", path, required=False)
    if set(node_dr) - {"etcd"}:
        raise ConfigError(f"{path}: a node file's [dr] takes only `etcd` (this node's way to "
                          f"etcd); the other DR settings belong in {cluster.path}")
    etcd = parse_dr({"etcd": node_dr["etcd"]}, path).etcd if "etcd" in node_dr else ()
    if etcd and not cluster.dr.enabled:
        raise ConfigError(f"{path}: [dr] etcd is set here but {cluster.path} has no [dr] etcd: "
                          f"disaster recovery is configured for the whole cluster there")
    return NodeConfig(
        path=path,
        campus=campus,
        listen=listen,
        data_dir=data_dir,
        database=database,
        tls=tls,
        cluster=cluster,
        replication=_tuning(_section(data, "replication", path, required=False), path),
        join=_join(_section(data, "join", path, required=False), path, cluster, campus),
        health_listen=health_listen,
        peers=dict(peers),
        etcd=etcd,
    )


def connect_dsn(database: DatabaseConfig) -> str:
    """The DSN a PostgreSQL or MariaDB engine connects with: ``database.dsn`` plus the
    password from ``password_file`` (read now, so a rotated file is honoured at
    the next start). Secret: never print it; print ``redact_dsn(...)`` or the
    plain ``database.dsn``."""
    if database.dsn is None:
        raise ConfigError("database.dsn is not set")
    password = password_from_file(database.password_file) if database.password_file else None
    return with_password(database.dsn, password)
