"""The SQLite engine's Inspection role: health, counts, rows, checksums, snapshots.

Read-only questions status, verify and join ask, on the engine's main
connection (checksums in one read transaction); a snapshot for a joining
campus reads a connection of its own (node.engines.sqlite.snapshot).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from node.codec import RowSetDigest
from node.engines.snapshot import ReadSnapshot
from node.engines.sqlite.connections import SQLiteContext
from node.engines.sqlite.snapshot import q, sqlite_snapshot
from node.engines.sqlite.values import from_sqlite
from ringsync.errors import EngineError


class SQLiteInspection:
    """Read-only questions about a SQLite campus database."""

    def __init__(self, ctx: SQLiteContext) -> None:
        self.ctx = ctx

    def check_health(self) -> None:
        try:
            self.ctx.conn.execute("SELECT count(*) FROM _rs_state").fetchone()
        except sqlite3.Error as e:
            raise EngineError(f"SQLite database {self.ctx.path} is not readable: {e}") from e

    def rows(self, table: str) -> list[tuple[Any, ...]]:
        """Every row of a table as canonical values (tests and verification)."""
        shape = self.ctx.shape_of(table)
        cols = ", ".join(q(c) for c in shape.columns)
        return [from_sqlite(shape.kinds, r)
                for r in self.ctx.conn.execute(f"SELECT {cols} FROM {q(table)}")]

    def row_counts(self) -> dict[str, int]:
        return {
            t: self.ctx.conn.execute(f"SELECT count(*) FROM {q(t)}").fetchone()[0]
            for t in self.ctx.tables
        }

    def checksums(self, tables: list[str]) -> tuple[dict[str, tuple[int, str]], dict[str, int]]:
        conn = self.ctx.conn
        conn.execute("BEGIN")  # one read snapshot across every table
        try:
            out = {}
            for table in tables:
                shape = self.ctx.shape_of(table)
                cols = ", ".join(q(c) for c in shape.columns)
                digest = RowSetDigest()
                for row in conn.execute(f"SELECT {cols} FROM {q(table)}"):
                    digest.add(from_sqlite(shape.kinds, row))
                out[table] = (digest.rows, digest.hexdigest())
            applied = self.ctx.applied_vector()
        finally:
            conn.execute("COMMIT")
        return out, applied

    @contextmanager
    def snapshot(self) -> Iterator[ReadSnapshot]:
        with sqlite_snapshot(self.ctx.connect, self.ctx.shapes) as snap:
            yield snap
