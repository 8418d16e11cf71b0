"""The MariaDB engine's part of verification: rows hashed in Python.

``MariaVerifier`` answers the same questions as the other engines'
verifiers (node.engines.postgres.verifying, node.engines.sqlite.verifying)
from one consistent InnoDB snapshot on a connection of its own (apply keeps
writing meanwhile), with the applied vector read in it. Each row is read as
canonical values (node.engines.mariadb.values) and hashed by
node.verify.rowhash, the definition every engine matches. Rows stream from
the server (an unbuffered cursor), so a big table is never held in memory.

Kept (incremental) digests are not built on MariaDB yet: every check is a
stock check, reported as such (``TableVerify.mode``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pymysql
import pymysql.cursors

from node.engines.mariadb.connections import APPLIED_TABLE, MariaContext
from node.engines.mariadb.values import quote
from node.model import TableShape
from node.verify.rowhash import Digest, RowHash, hash_row
from node.verify.snapshot import TableVerify
from ringsync.errors import EngineError

FETCH_ROWS = 5000
Row = tuple[Any, ...]


class MariaVerifier:
    """Verification questions about one MariaDB campus database."""

    def __init__(self, ctx: MariaContext) -> None:
        self.ctx = ctx
        # table -> a view of its canonical rows (node.dictionary's code maps)
        self.views: dict[str, Callable[[Row], Row]] = {}

    @contextmanager
    def _snapshot(self, shape: TableShape) -> Iterator[tuple[Any, dict[str, int]]]:
        conn = self.ctx.connect()
        try:
            with conn.cursor() as cur:
                cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                cur.execute(f"SELECT origin, seq FROM {APPLIED_TABLE}")
                applied = {str(o): int(s) for o, s in cur.fetchall()}
            yield conn, applied
            conn.rollback()
        except pymysql.err.MySQLError as e:
            raise EngineError(f"verification read of {shape.name} failed: {e}") from e
        finally:
            conn.close()

    def _hashes(self, conn: Any, shape: TableShape, bits: int) -> Iterator[RowHash]:
        reader = self.ctx.table(shape.name).reader
        view = self.views.get(shape.name)
        with conn.cursor(pymysql.cursors.SSCursor) as cur:
            cur.execute(f"SELECT {reader.select_list} FROM {quote(shape.name)}")
            while batch := cur.fetchmany(FETCH_ROWS):
                for rec in batch:
                    row = reader.from_query(rec)
                    yield hash_row(shape.kinds, shape.key_indexes,
                                   view(row) if view is not None else row, bits)

    def bucket_digests(self, table: str, bits: int, incremental: bool = False) -> TableVerify:
        shape = self.ctx.shape_of(table)
        buckets: dict[int, Digest] = {}
        with self._snapshot(shape) as (conn, applied):
            for rh in self._hashes(conn, shape, bits):
                buckets.setdefault(rh.bucket, Digest()).add(rh.digest)
        return TableVerify(table, bits, applied, buckets=buckets)

    def row_hashes(self, table: str, bits: int, buckets: Sequence[int]) -> TableVerify:
        shape = self.ctx.shape_of(table)
        keep = set(buckets)
        with self._snapshot(shape) as (conn, applied):
            rows = [rh for rh in self._hashes(conn, shape, bits) if rh.bucket in keep]
        return TableVerify(table, bits, applied, rows=rows)

    def fold_digests(self) -> int:
        """Nothing to fold: no kept digests on MariaDB yet."""
        return 0
