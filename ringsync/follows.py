"""Child tables that follow their parent row into a leaf's subset ([leaf.follows]).

A leaf's route can say that a table's rows follow a parent row rather than
(or as well as) a filter of their own::

    [leaf.filter]
    patients = 'home_campus == "fuyang"'

    [leaf.follows]
    lab_orders = { parent = "patients", by = "patient_id" }
    specimens  = { parent = "lab_orders", by = "order_id" }

A row of a following table is in the subset when its own filter (if it has
one) selects it and the parent row its ``by`` columns name (the parent's
primary key, column for column) is in the subset itself: a specimen follows
its order, which follows its patient. A row whose ``by`` columns are NULL,
or whose parent row does not exist, follows nobody and is not in the subset.

This module only checks the entries' shape (tables of the route, no table
following itself through a chain); the node compiles them against the
tables' columns (node.leaf.route) and judges rows at the parent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ringsync.errors import ConfigError


@dataclass(frozen=True)
class Follow:
    """A table's rows follow the ``parent`` row whose key is their ``by`` columns."""

    parent: str
    by: tuple[str, ...]


def parse_follows(entry: Mapping[str, Any], chosen: list[str], path: Path,
                  where: str) -> dict[str, Follow]:
    """``[leaf.follows]`` of one [[leaf]] entry; a ConfigError names the fix."""
    follows = entry.get("follows", {})
    if not isinstance(follows, dict):
        raise ConfigError(f"{path}: [leaf.follows] of {where} must be a table: "
                          f"child = {{ parent = \"table\", by = \"column\" }}")
    out = {}
    for child, rule in follows.items():
        at = f"{where}'s follows of {child}"
        if child not in chosen:
            raise ConfigError(f"{path}: {where} says {child!r} follows a parent, but it is not "
                              f"one of its tables {chosen}")
        if not isinstance(rule, dict) or set(rule) != {"parent", "by"}:
            raise ConfigError(f"{path}: {at} must be {{ parent = \"table\", by = \"column\" }} "
                              f"(by: the columns holding the parent's key, in its key's order)")
        parent, by = rule["parent"], rule["by"]
        by = [by] if isinstance(by, str) else by
        if not isinstance(parent, str) or parent not in chosen:
            raise ConfigError(f"{path}: {at}: its parent {parent!r} must be one of the leaf's "
                              f"tables {chosen} (a child follows a row the leaf holds)")
        if not isinstance(by, list) or not by or not all(isinstance(c, str) and c for c in by):
            raise ConfigError(f"{path}: {at}: `by` must name the column (or list the columns) "
                              f"holding the parent's key")
        out[child] = Follow(parent, tuple(by))
    for child in out:
        chain = ancestors(child, out)
        if child in chain:
            raise ConfigError(f"{path}: {where}'s follows go round in a circle "
                              f"({' -> '.join([child, *chain[:chain.index(child) + 1]])}); a "
                              f"chain of parents must end at a table that follows none")
    return out


def ancestors(table: str, follows: Mapping[str, Follow]) -> list[str]:
    """The tables ``table``'s rows follow, its parent first (stops at a cycle)."""
    out: list[str] = []
    at = follows.get(table)
    while at is not None and at.parent not in out:
        out.append(at.parent)
        if at.parent == table:
            break
        at = follows.get(at.parent)
    return out


def parents_first(tables: Iterable[str], follows: Mapping[str, Follow]) -> tuple[str, ...]:
    """``tables`` in their order, except that every table comes after the tables
    it follows (an initial load copies parents before their children)."""
    tables = list(tables)
    return tuple(sorted(tables, key=lambda t: (len(ancestors(t, follows)), tables.index(t))))
