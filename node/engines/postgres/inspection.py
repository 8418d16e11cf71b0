"""The PostgreSQL engine's Inspection role: health, counts, rows, checksums, snapshots.

Read-only questions status, verify and join ask. Health, counts and rows
use the engine's main connection; checksums read one REPEATABLE READ
transaction on a connection of their own; a snapshot for a joining campus
is exported from a temporary slot (node.engines.postgres.snapshot).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql

from node.codec import RowSetDigest
from node.engines.postgres.connections import PgContext
from node.engines.postgres.snapshot import pg_snapshot
from node.engines.postgres.values import canonical_row
from node.engines.snapshot import ReadSnapshot
from ringsync.errors import EngineError


class PgInspection:
    """Read-only questions about a PostgreSQL campus database."""

    def __init__(self, ctx: PgContext) -> None:
        self.ctx = ctx

    def check_health(self) -> None:
        try:
            self.ctx.ensure_connected()
        except psycopg.Error as e:
            raise EngineError(f"PostgreSQL is not answering: {e}") from e
        reader = self.ctx.reader
        if reader is not None and reader.error:
            raise EngineError(reader.error)

    def rows(self, table: str) -> list[tuple[Any, ...]]:
        """Every row of a table as canonical values (tests and verification)."""
        shape = self.ctx.shape_of(table)
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in shape.columns)
        return [canonical_row(shape.kinds, r) for r in self.ctx.query(
            sql.SQL("SELECT {} FROM {}").format(cols, sql.Identifier(table)))]

    def row_counts(self) -> dict[str, int]:
        return {t: int(self.ctx.query(sql.SQL("SELECT count(*) FROM {}").format(
            sql.Identifier(t)))[0][0]) for t in self.ctx.tables}

    def checksums(self, tables: list[str]) -> tuple[dict[str, tuple[int, str]], dict[str, int]]:
        with self.ctx.connect(autocommit=False) as conn:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            out = {}
            for table in tables:
                shape = self.ctx.shape_of(table)
                digest = RowSetDigest()
                cols = sql.SQL(", ").join(sql.Identifier(c) for c in shape.columns)
                with conn.cursor() as cur:
                    for row in cur.stream(sql.SQL("SELECT {} FROM {}").format(
                            cols, sql.Identifier(table))):
                        digest.add(canonical_row(shape.kinds, row))
                out[table] = (digest.rows, digest.hexdigest())
            applied = {o: int(s) for o, s in conn.execute(
                "SELECT origin, seq FROM ringsync.applied").fetchall()}
        return out, applied

    @contextmanager
    def snapshot(self) -> Iterator[ReadSnapshot]:
        ctx = self.ctx
        with pg_snapshot(ctx.dsn, ctx.slot, lambda: ctx.connect(autocommit=False),
                         ctx.shapes, canonical_row) as snap:
            if ctx.reader is not None:  # have capture confirm it got past the snapshot
                ctx.reader.wanted = max(ctx.reader.wanted, snap.position)
            yield snap
