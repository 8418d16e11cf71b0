"""The cluster file's [dictionaries] section: per-campus code maps.

Campuses code the same lab test, specimen type or department differently.
The columns named here carry *canonical* codes around the ring: a change is
translated from its origin's local codes to canonical ones before it is
journaled, and from canonical codes to the receiving campus's own when it is
applied (node.dictionary). The maps are rows of one replicated table, so a
change to a map reaches every campus like any other change:

    [dictionaries]
    table = "code_maps"
    columns = ["lab_orders.test_code", "specimens.specimen_type"]
    lossy = ["specimens.specimen_type"]

The map table has the columns ``campus``, ``dictionary`` (the column's
``table.column``), ``local_code``, ``canonical_code`` and, optionally,
``preferred`` (a boolean or 0/1), keyed by (campus, dictionary, local_code).
A dictionary named in ``lossy`` may map several local codes of one campus
to one canonical code; the one marked ``preferred`` is what that canonical
code becomes when it arrives. It must come before the tables whose columns
it maps in cluster.tables, so that a joining campus copies it first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ringsync.errors import ConfigError

DICTIONARY_KEYS = frozenset({"table", "columns", "lossy"})
_COLUMN_REF = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)$")


@dataclass(frozen=True)
class DictionarySettings:
    """``table``: the map table ("" when no dictionaries are configured);
    ``columns``: table -> its mapped columns, in the order listed;
    ``lossy``: the dictionaries (``table.column``) declared many-to-one."""

    table: str = ""
    columns: dict[str, tuple[str, ...]] = field(default_factory=dict)
    lossy: frozenset[str] = frozenset()

    @property
    def enabled(self) -> bool:
        return bool(self.table)

    def names(self) -> list[str]:
        """Every dictionary's name, ``table.column``."""
        return [f"{t}.{c}" for t, cols in self.columns.items() for c in cols]


def parse_dictionaries(section: Any, tables: tuple[str, ...], path: Path) -> DictionarySettings:
    if not section:
        return DictionarySettings()
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: [dictionaries] must be a table")
    table = section.get("table")
    if not isinstance(table, str) or table not in tables:
        raise ConfigError(f"{path}: dictionaries.table must name the code map table, listed in "
                          f"cluster.tables (got {table!r})")
    refs = section.get("columns")
    if not isinstance(refs, list) or not refs or not all(isinstance(r, str) for r in refs):
        raise ConfigError(f"{path}: dictionaries.columns must list the mapped columns as "
                          f"\"table.column\"")
    columns: dict[str, list[str]] = {}
    for ref in refs:
        m = _COLUMN_REF.match(ref)
        if m is None:
            raise ConfigError(f"{path}: dictionaries.columns entry {ref!r} is not "
                              f"\"table.column\"")
        owner, column = m.groups()
        if owner not in tables:
            raise ConfigError(f"{path}: dictionaries.columns names {ref!r}, but {owner!r} is "
                              f"not in cluster.tables")
        if owner == table:
            raise ConfigError(f"{path}: dictionaries.columns names {ref!r}, a column of the "
                              f"map table itself")
        if tables.index(owner) < tables.index(table):
            raise ConfigError(f"{path}: cluster.tables lists {owner!r} before the map table "
                              f"{table!r}; list {table!r} first, so a joining campus copies "
                              f"the maps before the rows they translate")
        if column in columns.get(owner, []):
            raise ConfigError(f"{path}: dictionaries.columns names {ref!r} twice")
        columns.setdefault(owner, []).append(column)
    lossy = section.get("lossy", [])
    if not isinstance(lossy, list) or not all(isinstance(r, str) for r in lossy):
        raise ConfigError(f"{path}: dictionaries.lossy must list dictionaries (\"table.column\")")
    for ref in lossy:
        if ref not in refs:
            raise ConfigError(f"{path}: dictionaries.lossy names {ref!r}, which is not in "
                              f"dictionaries.columns")
    return DictionarySettings(table, {t: tuple(c) for t, c in columns.items()}, frozenset(lossy))
