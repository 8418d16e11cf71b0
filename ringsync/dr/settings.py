"""The cluster file's [dr] section and each campus's DR keys, validated once.

    [dr]
    etcd = ["10.0.0.1:2379", "10.0.0.2:2379", "10.0.0.3:2379"]
    failover_after = 10.0   # seconds a serving campus may be unreachable
    lease_ttl = 3           # seconds; a node cut off from etcd fences itself after this
    failback = "manual"     # or "auto": a recovered campus takes its users back once caught up
    etcd_tls = true         # etcd over TLS with client certificates (docs/security.md)

    [[campus]]
    name = "chaohui"
    address = "10.1.0.5:7400"
    health = "10.1.0.5:8008"               # the node's HTTP health endpoint (load balancers)
    standby = ["wangjiangshan", "yuecheng"]  # who serves chaohui's users if it fails

    [[set]]                                 # a single-writer replication set
    name = "bed_board"
    tables = ["bed_assignments"]            # must be in cluster.tables, in one set only
    mode = "single"                         # its tables are writable at one campus at a time
    writer = "chaohui"                      # the first writer
    standby = ["wangjiangshan", "yuecheng"] # where the writer moves if it fails

Without an ``etcd`` list, disaster recovery is off: every campus serves its
own users, databases are never fenced, and nothing fails over (a set's
writer is then its configured ``writer``, for ever).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ringsync.addresses import check_address
from ringsync.errors import ConfigError

FAILBACK = ("manual", "auto")
DR_KEYS = {"etcd", "etcd_tls", "failover_after", "lease_ttl", "failback"}
SET_KEYS = {"name", "tables", "mode", "writer", "standby"}
SET_MODES = ("single",)
SET_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
# A set's route in etcd: routes/set:<name> (no campus name contains ':').
SET_ROUTE_PREFIX = "set:"


@dataclass(frozen=True)
class ReplicationSet:
    """Tables with exactly one writer at a time (``mode = "single"``)."""

    name: str
    tables: tuple[str, ...]
    writer: str
    standby: tuple[str, ...]
    mode: str = "single"

    @property
    def route_key(self) -> str:
        return SET_ROUTE_PREFIX + self.name


@dataclass(frozen=True)
class DRSettings:
    etcd: tuple[str, ...] = ()
    failover_after: float = 10.0
    lease_ttl: int = 3
    failback: str = "manual"
    # Dial etcd over TLS: trust the cluster CA, verify the server name
    # etcd.ringsync (members issued with `pki issue --role etcd`), present this
    # process's own certificate (a node's [tls], ctl's and the console's [client]).
    etcd_tls: bool = False

    @property
    def enabled(self) -> bool:
        return bool(self.etcd)


def parse_dr(section: dict[str, Any], path: Path) -> DRSettings:
    unknown = set(section) - DR_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown key dr.{sorted(unknown)[0]}; known: "
                          f"{', '.join(sorted(DR_KEYS))}")
    etcd = section.get("etcd", [])
    if not isinstance(etcd, list) or not all(isinstance(e, str) for e in etcd):
        raise ConfigError(f"{path}: dr.etcd must list etcd client endpoints as host:port")
    for i, endpoint in enumerate(etcd):
        check_address(endpoint.removeprefix("http://").removeprefix("https://"), path,
                      f"dr.etcd[{i}]")
    failover_after = section.get("failover_after", 10.0)
    if isinstance(failover_after, bool) or not isinstance(failover_after, int | float) or not (
            failover_after > 0):
        raise ConfigError(f"{path}: dr.failover_after must be a positive number of seconds")
    lease_ttl = section.get("lease_ttl", 3)
    if isinstance(lease_ttl, bool) or not isinstance(lease_ttl, int) or lease_ttl < 2:
        raise ConfigError(f"{path}: dr.lease_ttl must be a whole number of seconds, at least 2")
    if failover_after < lease_ttl:
        raise ConfigError(
            f"{path}: dr.failover_after = {failover_after} is shorter than dr.lease_ttl = "
            f"{lease_ttl}; a campus's database fences itself only when its lease has expired, "
            f"so failover must wait at least that long"
        )
    failback = section.get("failback", "manual")
    if failback not in FAILBACK:
        raise ConfigError(f"{path}: dr.failback must be one of {FAILBACK}")
    etcd_tls = section.get("etcd_tls", False)
    if not isinstance(etcd_tls, bool):
        raise ConfigError(f"{path}: dr.etcd_tls must be true or false")
    return DRSettings(tuple(e.removeprefix("http://").removeprefix("https://") for e in etcd),
                      float(failover_after), lease_ttl, failback, etcd_tls)


def parse_standby(entry: dict[str, Any], name: str, ring: list[str], path: Path,
                  where: str) -> tuple[str, ...]:
    standby = entry.get("standby")
    if standby is None:
        i = ring.index(name)
        return tuple(ring[i + 1:] + ring[:i])
    if not isinstance(standby, list) or not all(isinstance(s, str) for s in standby):
        raise ConfigError(f"{path}: {where}.standby must list campus names")
    for s in standby:
        if s not in ring or s == name:
            raise ConfigError(f"{path}: {where}.standby names {s!r}, which is not another "
                              f"campus of the ring")
    return tuple(standby)


def parse_sets(entries: Any, tables: list[str], ring: list[str],
               path: Path) -> tuple[ReplicationSet, ...]:
    """The cluster file's [[set]] entries: single-writer replication sets."""
    if entries is None:
        return ()
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: [[set]] entries must be an array of tables")
    sets: list[ReplicationSet] = []
    owner: dict[str, str] = {}
    for i, entry in enumerate(entries):
        where = f"set[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}: {where} must be a table")
        unknown = set(entry) - SET_KEYS
        if unknown:
            raise ConfigError(f"{path}: unknown key {where}.{sorted(unknown)[0]}; known: "
                              f"{', '.join(sorted(SET_KEYS))}")
        name = entry.get("name")
        if not isinstance(name, str) or not SET_NAME.match(name):
            raise ConfigError(f"{path}: {where}.name must be a set name: lower-case letters, "
                              f"digits, - or _")
        if any(s.name == name for s in sets):
            raise ConfigError(f"{path}: two [[set]] entries are named {name!r}")
        mode = entry.get("mode", "single")
        if mode not in SET_MODES:
            raise ConfigError(f"{path}: {where}.mode must be one of {SET_MODES} (tables in no "
                              f"set are multi-writer)")
        members = entry.get("tables")
        if not isinstance(members, list) or not members or not all(
                isinstance(t, str) for t in members):
            raise ConfigError(f"{path}: {where}.tables must list the set's tables")
        for table in members:
            if table not in tables:
                raise ConfigError(f"{path}: {where}.tables names {table!r}, which is not in "
                                  f"cluster.tables; add it there first")
            if table in owner:
                raise ConfigError(f"{path}: table {table!r} is in set {owner[table]!r} and in "
                                  f"set {name!r}; a table belongs to one set at most")
            owner[table] = name
        writer = entry.get("writer")
        if writer not in ring:
            raise ConfigError(f"{path}: {where}.writer must name a campus of the ring "
                              f"({', '.join(ring)})")
        standby = parse_standby(entry, writer, ring, path, where)
        sets.append(ReplicationSet(name, tuple(members), writer, standby, mode))
    return tuple(sets)
