"""Scoped operators and viewers: the cluster file's ``[[scope]]`` entries.

An operator or viewer certificate reaches every campus and every table
unless a ``[[scope]]`` names its identity (``role/name``, as
``ringsync://<role>/<name>`` in the certificate)::

    [[scope]]
    identity = "viewer/ortho-dashboard"
    campuses = ["chaohui"]                 # default: every campus
    tables = ["patients", "lab_orders"]    # default: every table

A scoped identity is refused (PERMISSION_DENIED) by the nodes of campuses
outside its scope; at the others, it sees the conflicts and dead letters of
its tables only, and verifies, checksums, repairs and resolves in its tables
only (node.scoping). The three roles keep their meaning: a scope narrows
what a role may do, never widens it. Nodes cannot be scoped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ringsync.errors import ConfigError

SCOPE_KEYS = ("identity", "campuses", "tables")
SCOPED_ROLES = ("operator", "viewer")


@dataclass(frozen=True)
class Scope:
    identity: str
    campuses: frozenset[str] | None = None  # None: every campus
    tables: frozenset[str] | None = None    # None: every table

    def campus(self, campus: str) -> bool:
        return self.campuses is None or campus in self.campuses

    def table(self, table: str) -> bool:
        return self.tables is None or table in self.tables

    def only(self, tables: Iterable[str]) -> list[str]:
        return [t for t in tables if self.table(t)]


def parse_scopes(entries: Any, campuses: tuple[str, ...], tables: tuple[str, ...],
                 path: Path) -> dict[str, Scope]:
    """``[[scope]]`` entries by identity; a ConfigError names the entry and the fix."""
    if entries is None:
        return {}
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: [[scope]] entries must be an array of tables")
    out: dict[str, Scope] = {}
    for i, entry in enumerate(entries):
        where = f"scope[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}: {where} must be a table")
        identity = entry.get("identity")
        if not isinstance(identity, str):
            identity = repr(identity)
        role, _, name = identity.partition("/")
        if role not in SCOPED_ROLES or not name:
            raise ConfigError(f"{path}: {where}.identity must be \"operator/<name>\" or "
                              f"\"viewer/<name>\" (nodes are not scoped), not {identity!r}")
        if identity in out:
            raise ConfigError(f"{path}: two [[scope]] entries name {identity!r}")
        out[identity] = Scope(identity, _names(entry, "campuses", campuses, path, where),
                              _names(entry, "tables", tables, path, where))
    return out


def _names(entry: dict[str, Any], key: str, known: tuple[str, ...], path: Path,
           where: str) -> frozenset[str] | None:
    if key not in entry:
        return None
    names = entry[key]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"{path}: {where}.{key} must list names (or be left out: every one)")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"{path}: {where}.{key} names {', '.join(unknown)}, not one of "
                          f"{list(known)}")
    return frozenset(names)
