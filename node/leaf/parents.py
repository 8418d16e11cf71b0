"""Rows that follow a parent row ([leaf.follows]): where a route finds the parent.

A following table's row is in a leaf's subset only if the parent row its
``by`` columns name is (ringsync.follows). The route (node.leaf.route) asks
one of these where that parent row is:

* ``CopyParents``, for an initial load or a route view: the snapshot is read
  parents first (``LeafRoute.shapes`` is in that order), and the keys of the
  parent rows the route selected are kept, so a child is judged against the
  same snapshot as its parent;
* ``StreamParents``, for the frames a parent campus sends a leaf: the
  parent row as the frame itself writes it, or else as this campus's
  database holds it now (``lookup``, on the engine's thread). A frame is
  sent only once this campus has applied it (node.leaf.serve), so the
  database is never behind the frame; it can be ahead of it, which is
  harmless except where a parent row moves into or out of the subset, and
  that re-seeds the leaf (``ParentMoved``).

A child DELETE whose parent row is gone is sent (the leaf may hold the row;
a leaf that does not has nothing to do), so deleting a patient with their
orders leaves no orphan at the leaf.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from node.model import TableShape
from ringsync.errors import ConfigError, RingsyncError
from ringsync.follows import Follow

# (table, key) -> the row as the database holds it now (None: there is none).
RowLookup = Callable[[str, tuple[Any, ...]], tuple[Any, ...] | None]


class ParentMoved(RingsyncError):
    """A row that others follow moved into or out of a leaf's subset: its
    children go with it, so the leaf copies its subset again."""

    grpc_code = "FAILED_PRECONDITION"


@dataclass(frozen=True)
class ParentLink:
    """Compiled [leaf.follows] entry: the parent table and where, in a child
    row, the parent's key is."""

    parent: str
    by: tuple[int, ...]

    def key(self, row: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """The parent key ``row`` names; None when a column of it is NULL."""
        key = tuple(row[i] for i in self.by)
        return None if any(v is None for v in key) else key


def compile_links(leaf: str, follows: Mapping[str, Follow],
                  shapes: Mapping[str, TableShape]) -> dict[str, ParentLink]:
    """``follows`` against the tables' columns; a ConfigError names the fix."""
    out = {}
    for child, f in follows.items():
        shape, parent = shapes[child], shapes[f.parent]
        unknown = [c for c in f.by if c not in shape.columns]
        if unknown:
            raise ConfigError(f"leaf {leaf}: [leaf.follows] of {child} names "
                              f"{', '.join(unknown)}, not a column of it (its columns: "
                              f"{', '.join(shape.columns)})")
        key = [parent.columns[i] for i in parent.key_indexes]
        if len(f.by) != len(key):
            raise ConfigError(f"leaf {leaf}: [leaf.follows] of {child}: `by` names "
                              f"{len(f.by)} column(s), but the key of {f.parent} has "
                              f"{len(key)} ({', '.join(key)}); list the child's columns that "
                              f"hold it, in that order")
        out[child] = ParentLink(f.parent, tuple(shape.columns.index(c) for c in f.by))
    return out


class Judge(Protocol):
    """What a route exposes to a parent source: its verdict on one row."""

    def selects(self, table: str, row: tuple[Any, ...], now: dt.datetime,
                parents: ParentSource, missing_in: bool = False) -> bool: ...


class ParentSource(Protocol):
    def parent_in(self, table: str, key: tuple[Any, ...], missing_in: bool) -> bool:
        """Is the row of ``table`` keyed ``key`` in the subset? ``missing_in``:
        the answer when there is no such row."""


@dataclass
class CopyParents:
    """Parents judged earlier in the same snapshot: the keys the route kept."""

    kept: dict[str, set[tuple[Any, ...]]] = field(default_factory=dict)

    def keep(self, table: str, key: tuple[Any, ...]) -> None:
        self.kept.setdefault(table, set()).add(key)

    def parent_in(self, table: str, key: tuple[Any, ...], missing_in: bool) -> bool:
        return key in self.kept.get(table, ())


class StreamParents:
    """Parents of one frame's rows: the frame's own images, else the database."""

    def __init__(self, judge: Judge, lookup: RowLookup, now: dt.datetime,
                 images: dict[tuple[str, tuple[Any, ...]], tuple[Any, ...] | None]) -> None:
        self.judge, self.lookup, self.now, self.images = judge, lookup, now, images
        self.rows: dict[tuple[str, tuple[Any, ...]], tuple[Any, ...] | None] = {}
        self.verdicts: dict[tuple[str, tuple[Any, ...], bool], bool] = {}
        self.lookups = 0

    def parent_in(self, table: str, key: tuple[Any, ...], missing_in: bool) -> bool:
        at = (table, key)
        seen = self.verdicts.get((table, key, missing_in))
        if seen is not None:
            return seen
        if at in self.images:
            row = self.images[at]
        elif at in self.rows:
            row = self.rows[at]
        else:
            row = self.rows[at] = self.lookup(table, key)
            self.lookups += 1
        verdict = missing_in if row is None else self.judge.selects(table, row, self.now, self,
                                                                      missing_in)
        self.verdicts[(table, key, missing_in)] = verdict
        return verdict
