"""Leaves of the ring: the cluster file's ``[[leaf]]`` entries, checked once.

A leaf is a campus node that is not a ring member: it attaches to a parent
ring campus (standby parents follow, in order), receives the changes its
route selects, and sends its own writes up, where the parent puts them into
the ring as ordinary changes of the leaf's origin (docs/leaves.md)::

    [[leaf]]
    name = "fy-sat"
    address = "10.9.0.5:7400"          # its own API (status); nobody dials it to replicate
    parents = ["fuyang", "chaohui"]    # its parent first, then standby parents
    tables = ["patients", "lab_orders"]  # default: every replicated table
    uploads = true                     # its own writes go up (default)
    retention_hours = 72               # how long parents keep what it lacks

    [leaf.filter]                      # a CEL row filter per table (ringsync.rowfilter)
    patients = 'home_campus == "fuyang"'

    [leaf.follows]                     # child rows follow their parent row (ringsync.follows)
    lab_orders = { parent = "patients", by = "patient_id" }

Filters are compiled against the tables' columns where the columns are
known (the node, at start: ``compile_filters``); here only their text is
checked, so ``ctl`` and the console read a cluster file without a database.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ringsync.addresses import check_address
from ringsync.errors import ConfigError
from ringsync.follows import Follow, parse_follows
from ringsync.masking import KINDS, ColumnMask
from ringsync.names import CAMPUS_NAME
from ringsync.rowfilter import RowFilter

LEAF_KEYS = ("name", "address", "parents", "tables", "uploads", "retention_hours", "filter",
             "follows", "columns", "masking", "masking_key_file")
DEFAULT_RETENTION_HOURS = 72.0


@dataclass(frozen=True)
class LeafSettings:
    """One ``[[leaf]]``: where it hangs and what its route selects."""

    name: str
    address: str
    parents: tuple[str, ...]
    tables: tuple[str, ...]
    uploads: bool = True
    retention_hours: float = DEFAULT_RETENTION_HOURS
    # table -> CEL expression; a table without one is taken whole.
    filters: Mapping[str, str] = field(default_factory=dict)
    # table -> the columns the leaf gets (its key among them); absent: every column.
    columns: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # table -> how its columns are masked at the parent (ringsync.masking).
    masking: Mapping[str, tuple[ColumnMask, ...]] = field(default_factory=dict)
    masking_key_file: Path | None = None
    # child table -> the parent row its rows follow into the subset.
    follows: Mapping[str, Follow] = field(default_factory=dict)

    @property
    def masked(self) -> bool:
        return bool(self.masking)

    @property
    def fingerprint(self) -> str:
        """What the route selects, as a short digest: a leaf and its parent must
        agree on it, and a leaf whose route changed since it copied its subset
        must be re-seeded (never silently partial). The masking key itself is
        not in it (a leaf never has the key)."""
        route = {"tables": list(self.tables), "filters": dict(sorted(self.filters.items())),
                 "columns": {t: list(c) for t, c in sorted(self.columns.items())},
                 "masking": {t: [[m.column, m.kind, m.patient] for m in masks]
                             for t, masks in sorted(self.masking.items())}}
        if self.follows:  # (absent from routes made before follows, so theirs stay the same)
            route["follows"] = {t: [f.parent, list(f.by)] for t, f in sorted(self.follows.items())}
        text = json.dumps(route, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def compile_filters(self, columns: Mapping[str, tuple[str, ...]]) -> dict[str, RowFilter]:
        """The route's filters compiled against ``columns`` (table -> its
        columns); a RowFilterError names the leaf, the table and the fix."""
        return {t: RowFilter(t, e, columns[t]) for t, e in self.filters.items()}


def parse_leaves(entries: Any, ring: tuple[str, ...], tables: tuple[str, ...],
                 path: Path) -> tuple[LeafSettings, ...]:
    """The ``[[leaf]]`` entries of ``path``; a ConfigError names the entry and the fix."""
    if entries is None:
        return ()
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: [[leaf]] entries must be an array of tables")
    leaves = [_leaf(entry, i, ring, tables, path) for i, entry in enumerate(entries)]
    names = [leaf.name for leaf in leaves]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"{path}: two [[leaf]] entries are named {name!r}")
    return tuple(leaves)


def _leaf(entry: Any, i: int, ring: tuple[str, ...], tables: tuple[str, ...],
          path: Path) -> LeafSettings:
    where = f"leaf[{i}]"
    if not isinstance(entry, dict):
        raise ConfigError(f"{path}: {where} must be a table")
    name = entry.get("name")
    if not isinstance(name, str) or not CAMPUS_NAME.match(name):
        raise ConfigError(f"{path}: {where}.name must be a campus name (lower-case letters, "
                          f"digits, - or _), not {name!r}")
    where = f"leaf {name!r}"
    if name in ring:
        raise ConfigError(f"{path}: {where} is also in cluster.ring; a campus is a ring "
                          f"member or a leaf, not both")
    address = entry.get("address")
    if not isinstance(address, str) or not address:
        raise ConfigError(f"{path}: {where} needs `address`, where its node serves status "
                          f"(host:port)")
    check_address(address, path, f"{where}.address")
    parents = entry.get("parents")
    if (not isinstance(parents, list) or not parents
            or not all(isinstance(p, str) for p in parents)):
        raise ConfigError(f"{path}: {where}.parents must list its parent ring campus, then "
                          f"any standby parents, e.g. parents = [{ring[0]!r}]")
    strangers = [p for p in parents if p not in ring]
    if strangers:
        raise ConfigError(f"{path}: {where}.parents names {', '.join(map(repr, strangers))}, "
                          f"not in cluster.ring {list(ring)}; a leaf hangs from ring members")
    if len(set(parents)) != len(parents):
        raise ConfigError(f"{path}: {where}.parents names a campus twice")
    chosen = entry.get("tables", list(tables))
    if not isinstance(chosen, list) or not chosen or not all(isinstance(t, str) for t in chosen):
        raise ConfigError(f"{path}: {where}.tables must list replicated tables (or be left "
                          f"out: every table)")
    unknown = [t for t in chosen if t not in tables]
    if unknown:
        raise ConfigError(f"{path}: {where}.tables names {', '.join(unknown)}, not in "
                          f"cluster.tables {list(tables)}")
    masking, key_file = _masking(entry, chosen, path, where)
    columns = _columns(entry, chosen, path, where)
    uploads = entry.get("uploads", not masking and not columns)
    if not isinstance(uploads, bool):
        raise ConfigError(f"{path}: {where}.uploads must be true or false")
    if uploads and (masking or columns):
        raise ConfigError(f"{path}: {where} is masked or projected, so it never sends writes up "
                          f"(its rows are not the ring's); set uploads = false or drop "
                          f"[leaf.masking] and [leaf.columns]")
    retention = entry.get("retention_hours", DEFAULT_RETENTION_HOURS)
    if isinstance(retention, bool) or not isinstance(retention, int | float) or retention <= 0:
        raise ConfigError(f"{path}: {where}.retention_hours must be a positive number of hours")
    filters = entry.get("filter", {})
    if not isinstance(filters, dict):
        raise ConfigError(f"{path}: [leaf.filter] of {where} must be a table: "
                          f"table = 'expression'")
    for table, expression in filters.items():
        if table not in chosen:
            raise ConfigError(f"{path}: {where} filters {table!r}, not one of its tables "
                              f"{chosen}")
        if not isinstance(expression, str) or not expression.strip():
            raise ConfigError(f"{path}: {where}'s filter of {table} must be a CEL expression "
                              f"in a string, e.g. 'home_campus == \"{parents[0]}\"'")
    follows = parse_follows(entry, chosen, path, where)
    return LeafSettings(name, address, tuple(parents), tuple(t for t in tables if t in chosen),
                        uploads, float(retention), dict(filters), columns, masking, key_file,
                        follows)


def _columns(entry: dict[str, Any], chosen: list[str], path: Path,
             where: str) -> dict[str, tuple[str, ...]]:
    columns = entry.get("columns", {})
    if not isinstance(columns, dict):
        raise ConfigError(f"{path}: [leaf.columns] of {where} must be a table: "
                          f"table = [\"column\", ...]")
    out = {}
    for table, names in columns.items():
        if table not in chosen:
            raise ConfigError(f"{path}: {where} projects {table!r}, not one of its tables")
        if (not isinstance(names, list) or not names
                or not all(isinstance(c, str) for c in names)):
            raise ConfigError(f"{path}: {where}'s columns of {table} must list column names")
        out[table] = tuple(names)
    return out


def _masking(entry: dict[str, Any], chosen: list[str], path: Path,
             where: str) -> tuple[dict[str, tuple[ColumnMask, ...]], Path | None]:
    masking = entry.get("masking", {})
    if not isinstance(masking, dict):
        raise ConfigError(f"{path}: [leaf.masking] of {where} must be a table of tables")
    out: dict[str, tuple[ColumnMask, ...]] = {}
    for table, rules in masking.items():
        if table not in chosen:
            raise ConfigError(f"{path}: {where} masks {table!r}, not one of its tables")
        if not isinstance(rules, dict) or not rules:
            raise ConfigError(f"{path}: [leaf.masking.{table}] of {where} must say how each "
                              f"column is masked: column = \"kind\" (one of {', '.join(KINDS)})")
        masks = []
        for column, rule in rules.items():
            at = f"{where}'s masking of {table}.{column}"
            if isinstance(rule, dict) and set(rule) - {"kind", "patient"}:
                raise ConfigError(f"{path}: {at} takes only `kind` and `patient`, not "
                                  f"{', '.join(sorted(set(rule) - {'kind', 'patient'}))}")
            kind, patient = (rule, None) if isinstance(rule, str) else (
                (rule.get("kind"), rule.get("patient")) if isinstance(rule, dict) else (None, None))
            if kind not in KINDS or (patient is not None and not isinstance(patient, str)):
                raise ConfigError(f"{path}: {at} must be one of {', '.join(KINDS)}, or "
                                  f"{{ kind = \"date_shift\", patient = \"patient_id\" }}")
            if kind == "date_shift" and patient is None:
                raise ConfigError(f"{path}: {at}: a date shift needs the patient column whose "
                                  f"dates move together: {{ kind = \"date_shift\", patient = "
                                  f"\"patient_id\" }}")
            masks.append(ColumnMask(column, kind, patient))
        out[table] = tuple(masks)
    key = entry.get("masking_key_file")
    if out and not (isinstance(key, str) and key):
        raise ConfigError(f"{path}: {where} is masked and needs masking_key_file, the secret its "
                          f"pseudonyms are keyed by (at least 16 bytes, readable by its parents "
                          f"only; e.g. `head -c 32 /dev/urandom | base64 > test-env.key`)")
    if key is not None and not out:
        raise ConfigError(f"{path}: {where} has masking_key_file but no [leaf.masking]")
    key_file = None if key is None else (Path(key) if Path(key).is_absolute()
                                         else path.parent / key)
    return out, key_file
