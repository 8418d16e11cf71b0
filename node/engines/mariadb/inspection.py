"""The MariaDB engine's Inspection role: health, counts, rows, checksums, snapshots.

Read-only questions status, verify and join ask. Health, counts and rows
use the engine's main connection. Checksums and a joining campus's snapshot
read one consistent InnoDB snapshot on a connection of their own
(``START TRANSACTION WITH CONSISTENT SNAPSHOT``); MariaDB tells the binary
log position that snapshot corresponds to (``binlog_snapshot_file`` and
``binlog_snapshot_position``), which is the snapshot's capture position: a
local transaction is in the snapshot exactly when it ends at or before it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pymysql
import pymysql.cursors

from node.engines.mariadb.binlog import position_of
from node.engines.mariadb.connections import APPLIED_TABLE, MariaContext
from node.engines.mariadb.values import quote
from node.engines.snapshot import ReadSnapshot
from node.model import TableShape
from ringsync.errors import EngineError


def _select(ctx: MariaContext, shape: TableShape) -> str:
    table = ctx.table(shape.name)
    order = ", ".join(quote(c) for c in shape.key_columns)
    return f"SELECT {table.reader.select_list} FROM {quote(shape.name)} ORDER BY {order}"


class MariaInspection:
    """Read-only questions about a MariaDB campus database."""

    def __init__(self, ctx: MariaContext) -> None:
        self.ctx = ctx

    def check_health(self) -> None:
        try:
            self.ctx.query("SELECT 1")
        except pymysql.err.MySQLError as e:
            raise EngineError(f"MariaDB is not answering: {e}") from e
        reader = self.ctx.reader
        if reader is not None and reader.error:
            raise EngineError(reader.error)

    def rows(self, table: str) -> list[tuple[Any, ...]]:
        shape = self.ctx.shape_of(table)
        reader = self.ctx.table(table).reader
        return [reader.from_query(r) for r in self.ctx.query(_select(self.ctx, shape))]

    def row_counts(self) -> dict[str, int]:
        return {t: int(self.ctx.query(f"SELECT count(*) FROM {quote(t)}")[0][0])
                for t in self.ctx.tables}

    def checksums(self, tables: list[str]) -> tuple[dict[str, tuple[int, str]], dict[str, int]]:
        with self.snapshot() as snap:
            return {t: snap.digest(t) for t in tables}, dict(snap.applied)

    @contextmanager
    def snapshot(self) -> Iterator[ReadSnapshot]:
        ctx = self.ctx
        conn = ctx.connect(autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                cur.execute("SHOW STATUS LIKE 'binlog_snapshot_%'")
                status = {str(k).lower(): v for k, v in cur.fetchall()}
                cur.execute(f"SELECT origin, seq FROM {APPLIED_TABLE}")
                applied = {str(o): int(s) for o, s in cur.fetchall()}
            position = position_of(str(status["binlog_snapshot_file"]),
                                   int(status["binlog_snapshot_position"]))

            def count(shape: TableShape) -> int:
                with conn.cursor() as cur:
                    cur.execute(f"SELECT count(*) FROM {quote(shape.name)}")
                    return int(cur.fetchone()[0])

            def read(shape: TableShape, size: int) -> Iterator[list[tuple[Any, ...]]]:
                reader = ctx.table(shape.name).reader
                with conn.cursor(pymysql.cursors.SSCursor) as cur:  # streamed, not buffered
                    cur.execute(_select(ctx, shape))
                    while batch := cur.fetchmany(size):
                        yield [reader.from_query(r) for r in batch]

            yield ReadSnapshot(position, applied, ctx.shapes, count, read)
        finally:
            try:
                conn.rollback()
            finally:
                conn.close()
