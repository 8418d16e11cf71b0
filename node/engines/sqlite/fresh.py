"""Fresh rows on SQLite: the set-wise half of the fast path (node.conflicts.fresh).

The apply session holds the database's one write lock, so nothing can
change between the check and the write. The check asks, a few hundred
keys per statement, whether any key of the run has a version entry or a
row (a row without an entry is a base version here, which the exact path
must see), and whether the table has local changes capture has not
recorded yet (then a key may be pending: the exact path looks key by key).
The write is two prepared ``executemany`` calls, rows and version rows,
with no per-row resolution.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from node.conflicts.fresh import FreshRun
from node.engines.sqlite.snapshot import q
from node.engines.sqlite.values import to_sqlite
from node.model import TableShape

# Keys per checking statement (well inside SQLite's parameter limit).
CHECK_KEYS = 400


def meta_table(table: str) -> str:
    return q(f"_rs_meta_{table}")


def _native(key: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(to_sqlite(v) for v in key)


class SQLiteFreshWrites:
    """The fresh-row writes of a SQLite apply session (SQLiteVersionStore
    mixes this in: it provides the connection and the recorded position)."""

    conn: sqlite3.Connection
    recorded_position: int

    def insert_fresh(self, shape: TableShape, run: FreshRun) -> bool:
        keys = [_native(k) for k in run.keys]
        if self._unrecorded_local(shape) or self._any_of(meta_table(shape.name), shape, keys) or (
                self._any_of(q(shape.name), shape, keys)):
            return False
        cols = ", ".join(q(c) for c in shape.columns)
        marks = ", ".join("?" for _ in shape.columns)
        self.conn.executemany(f"INSERT INTO {q(shape.name)}({cols}) VALUES ({marks})",
                              [tuple(to_sqlite(v) for v in r) for r in run.rows])
        self._insert_versions(shape, keys, run.metas)
        return True

    def record_fresh(self, shape: TableShape, run: FreshRun) -> bool:
        keys = [_native(k) for k in run.keys]
        if self._any_of(meta_table(shape.name), shape, keys):
            return False
        self._insert_versions(shape, keys, run.metas)
        return True

    def _unrecorded_local(self, shape: TableShape) -> bool:
        """Has capture logged a local change to this table that is not recorded?"""
        return self.conn.execute(
            f"SELECT 1 FROM {q('_rs_img_' + shape.name)} WHERE log_id > ? LIMIT 1",
            (self.recorded_position,)).fetchone() is not None

    def _any_of(self, table: str, shape: TableShape, keys: list[tuple[Any, ...]]) -> bool:
        """Does ``table`` (keyed like ``shape``) hold any of ``keys``?"""
        width = len(shape.key_columns)
        cols = ", ".join(q(c) for c in shape.key_columns)
        one = "(" + ", ".join("?" for _ in range(width)) + ")"
        for i in range(0, len(keys), CHECK_KEYS):
            part = keys[i:i + CHECK_KEYS]
            found = self.conn.execute(
                f"SELECT 1 FROM {table} WHERE ({cols}) IN (VALUES {', '.join([one] * len(part))})"
                f" LIMIT 1", [v for k in part for v in k]).fetchone()
            if found is not None:
                return True
        return False

    def _insert_versions(self, shape: TableShape, keys: list[tuple[Any, ...]],
                         metas: list[str]) -> None:
        cols = ", ".join(q(c) for c in shape.key_columns)
        marks = ", ".join("?" for _ in shape.key_columns)
        self.conn.executemany(f"INSERT INTO {meta_table(shape.name)}({cols}, meta) "
                              f"VALUES ({marks}, ?)",
                              [(*k, m) for k, m in zip(keys, metas, strict=True)])
