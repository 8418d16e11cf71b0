"""Conflict policies: what the cluster file says, checked against the tables.

Policies live in the shared cluster file because every campus must resolve
a conflict the same way, or the campuses would diverge. One table::

    [conflicts.tables.lab_orders]
    rule = "rank"                                  # the row-level rule
    rank = { column = "priority", order = ["STAT", "routine"] }   # first beats the rest
    monotonic = { status = ["ordered", "collected", "resulted", "verified", "amended"] }
    delta = ["tubes_drawn"]

Row rules: ``latest`` (default; highest hybrid timestamp, ties by campus name),
``campus-priority`` (``priority = [...]``, first wins), ``rank`` (a column
whose value decides; ties fall back to ``latest``), ``merge`` (column-level:
concurrent updates of different columns both survive; a column edited on
both sides goes to ``latest``) and ``manual`` (the local version stays and
the incoming one waits for an operator).

Column rules refine any row rule: ``monotonic`` columns take the furthest
value of their order among concurrent edits; ``delta`` columns (integer or
exact decimal) add every campus's increment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ringsync.errors import ConfigError

ROW_RULES = ("latest", "campus-priority", "rank", "merge", "manual")
DELTA_KINDS = ("int", "decimal")
DEFAULT_MAX_SKEW_MS = 60_000
DEFAULT_LOG_KEEP_ROWS = 100_000
DEFAULT_LOG_KEEP_DAYS = 30


@dataclass(frozen=True)
class TablePolicy:
    rule: str = "latest"
    priority: tuple[str, ...] = ()           # campus-priority: first wins
    rank_column: str = ""                     # rank: the deciding column
    rank_order: tuple[Any, ...] = ()          # rank: first value beats the rest
    monotonic: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)  # lowest first
    delta: tuple[str, ...] = ()

    def describe(self) -> str:
        parts = [self.rule]
        if self.rule == "campus-priority":
            parts[0] += f"({' > '.join(self.priority)})"
        if self.rule == "rank":
            parts[0] += f"({self.rank_column}: {' > '.join(map(str, self.rank_order))})"
        parts += [f"monotonic({c})" for c in self.monotonic]
        parts += [f"delta({c})" for c in self.delta]
        return ", ".join(parts)


@dataclass(frozen=True)
class ConflictSettings:
    tables: Mapping[str, TablePolicy] = field(default_factory=dict)
    max_clock_skew_ms: int = DEFAULT_MAX_SKEW_MS
    log_keep_rows: int = DEFAULT_LOG_KEEP_ROWS
    log_keep_days: int = DEFAULT_LOG_KEEP_DAYS

    def policy(self, table: str) -> TablePolicy:
        return self.tables.get(table, DEFAULT_POLICY)


DEFAULT_POLICY = TablePolicy()


def _positive_int(section: Mapping[str, Any], key: str, default: int, where: str) -> int:
    value = section.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{where}.{key} must be a positive integer (got {value!r})")
    return value


def _value_list(value: Any, where: str) -> tuple[Any, ...]:
    if not isinstance(value, list) or len(value) < 2:
        raise ConfigError(f"{where} must list at least two values, in order")
    if len(set(map(repr, value))) != len(value):
        raise ConfigError(f"{where} names a value twice")
    return tuple(value)


def parse_conflicts(data: Mapping[str, Any], where: str, tables: tuple[str, ...],
                    ring: tuple[str, ...]) -> ConflictSettings:
    """Read the ``[conflicts]`` section of a cluster file (column names are
    checked later, against the database, by ``check_policies``)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: [conflicts] must be a table")
    unknown = set(data) - {"tables", "max_clock_skew_ms", "log_keep_rows", "log_keep_days"}
    if unknown:
        raise ConfigError(f"{where}: unknown [conflicts] settings {sorted(unknown)}")
    policies: dict[str, TablePolicy] = {}
    for table, section in dict(data.get("tables", {})).items():
        at = f"{where}: conflicts.tables.{table}"
        if table not in tables:
            raise ConfigError(f"{at}: {table!r} is not in cluster.tables {list(tables)}")
        if not isinstance(section, Mapping):
            raise ConfigError(f"{at} must be a table of settings")
        policies[table] = _parse_table(section, at, ring)
    return ConflictSettings(
        tables=policies,
        max_clock_skew_ms=_positive_int(data, "max_clock_skew_ms", DEFAULT_MAX_SKEW_MS, where),
        log_keep_rows=_positive_int(data, "log_keep_rows", DEFAULT_LOG_KEEP_ROWS, where),
        log_keep_days=_positive_int(data, "log_keep_days", DEFAULT_LOG_KEEP_DAYS, where),
    )


def _parse_table(section: Mapping[str, Any], at: str, ring: tuple[str, ...]) -> TablePolicy:
    unknown = set(section) - {"rule", "priority", "rank", "monotonic", "delta"}
    if unknown:
        raise ConfigError(f"{at}: unknown settings {sorted(unknown)}; "
                          f"use rule, priority, rank, monotonic or delta")
    rule = section.get("rule", "latest")
    if rule not in ROW_RULES:
        raise ConfigError(f"{at}.rule = {rule!r}; choose one of {', '.join(ROW_RULES)}")
    priority: tuple[str, ...] = ()
    rank_column, rank_order = "", ()
    if rule == "campus-priority":
        raw = section.get("priority")
        if not isinstance(raw, list) or not raw or not all(isinstance(c, str) for c in raw):
            raise ConfigError(f"{at}.priority must list campuses, the winning one first")
        strangers = [c for c in raw if c not in ring]
        if strangers:
            raise ConfigError(f"{at}.priority names {strangers}, not in cluster.ring {list(ring)}")
        priority = tuple(raw)
    elif "priority" in section:
        raise ConfigError(f"{at}.priority only applies to rule = \"campus-priority\"")
    if rule == "rank":
        raw = section.get("rank")
        if not isinstance(raw, Mapping) or not isinstance(raw.get("column"), str):
            raise ConfigError(f'{at}.rank must be {{ column = "...", order = [...] }}')
        rank_column = raw["column"]
        rank_order = _value_list(raw.get("order"), f"{at}.rank.order")
    elif "rank" in section:
        raise ConfigError(f"{at}.rank only applies to rule = \"rank\"")
    monotonic_raw = section.get("monotonic", {})
    if not isinstance(monotonic_raw, Mapping):
        raise ConfigError(f"{at}.monotonic must map a column to its values, lowest first")
    monotonic = {c: _value_list(v, f"{at}.monotonic.{c}") for c, v in monotonic_raw.items()}
    delta_raw = section.get("delta", [])
    if not isinstance(delta_raw, list) or not all(isinstance(c, str) for c in delta_raw):
        raise ConfigError(f"{at}.delta must list column names")
    both = set(monotonic) & set(delta_raw)
    if both:
        raise ConfigError(f"{at}: columns {sorted(both)} cannot be both monotonic and delta")
    if rank_column and (rank_column in monotonic or rank_column in delta_raw):
        raise ConfigError(f"{at}: the rank column {rank_column!r} cannot also be a column rule")
    return TablePolicy(rule, priority, rank_column, rank_order, monotonic, tuple(delta_raw))
