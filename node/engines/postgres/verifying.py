"""The PostgreSQL engine's part of verification: row hashes computed in SQL.

``PgVerifier`` answers node.verify's two questions about one table, each in
one REPEATABLE READ, READ ONLY transaction on a connection of its own (never
the engine's: a long scan must not hold apply up), tagged with the applied
vector read in the same snapshot:

* ``bucket_digests``: per key-hash bucket, the row count and the four word
  sums of the row hashes, computed by the server in one scan (a parallel
  scan where the server's settings allow one: max_parallel_workers_per_gather
  and the table's size decide); no row reaches Python;
* ``row_hashes``: the (key, row hash) of every row in some buckets, for the
  buckets whose digests differ between campuses.

The SQL is node.engines.postgres.rowsql's. A table with a JSON column is
hashed in Python instead (rows streamed, canonical_row, then
node.verify.rowhash): SQL has no spelling of the canonical JSON form.

With ``[verify] incremental`` (node.engines.postgres.digests) a covered
table's bucket digests are read from the digests the database keeps, not
hashed from the rows, unless a stock check is asked for; a stock check
also compares them with the rows and rebuilds them when they drifted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql

from node.engines.postgres.connections import PgContext
from node.engines.postgres.digests import fold, read_digests, reseed
from node.engines.postgres.rowsql import digest_sql, rows_sql
from node.engines.postgres.values import canonical_row
from node.model import TableShape
from node.verify.rowhash import Digest, RowHash, buckets_differ, hash_row
from node.verify.snapshot import TableVerify
from ringsync.errors import EngineError

log = logging.getLogger(__name__)

VACUUM_AFTER_DEAD = 50_000  # dead delta rows past which a fold vacuums the delta table


Row = tuple[Any, ...]


def _same(row: Row) -> Row:
    return row


def _dead_deltas(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = "
                       "'ringsync.vdigest_delta'::regclass").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


class PgVerifier:
    """Verification questions about one PostgreSQL campus database."""

    def __init__(self, ctx: PgContext) -> None:
        self.ctx = ctx
        # table -> a view of its canonical rows (node.dictionary's code maps):
        # such a table is hashed in Python, through the view, never from kept digests
        self.views: dict[str, Callable[[Row], Row]] = {}

    @contextmanager
    def _snapshot(self) -> Iterator[tuple[psycopg.Connection[Any], dict[str, int]]]:
        try:
            conn = self.ctx.connect(autocommit=False)
        except psycopg.Error as e:
            raise EngineError(f"PostgreSQL is not answering: {e}") from e
        try:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            conn.execute("SET LOCAL DateStyle = 'ISO, YMD'")
            # The planner cannot estimate the bucket count; hashing the groups
            # beats sorting every row by bucket.
            conn.execute("SET LOCAL enable_sort = off")
            applied = {o: int(s) for o, s in conn.execute(
                "SELECT origin, seq FROM ringsync.applied").fetchall()}
            yield conn, applied
            conn.rollback()
        except psycopg.Error as e:
            raise EngineError(f"verification query failed: {e}") from e
        finally:
            conn.close()

    def _python_rows(self, conn: psycopg.Connection[Any], shape: TableShape,
                     bits: int) -> Iterator[RowHash]:
        cols = sql.SQL(", ").join(map(sql.Identifier, shape.columns))
        view = self.views.get(shape.name, _same)
        with conn.cursor() as cur:
            for row in cur.stream(sql.SQL("SELECT {} FROM {}").format(
                    cols, sql.Identifier(shape.name)), size=2000):
                yield hash_row(shape.kinds, shape.key_indexes,
                               view(canonical_row(shape.kinds, row)), bits)

    def bucket_digests(self, table: str, bits: int, incremental: bool = False) -> TableVerify:
        shape = self.ctx.shape_of(table)
        kept = table in self.ctx.digest_tables and table not in self.views
        with self._snapshot() as (conn, applied):
            if incremental and kept:
                return TableVerify(table, bits, applied, buckets=read_digests(conn, table, bits),
                                   mode="incremental")
            buckets: dict[int, Digest] = {}
            if "json" in shape.kinds or shape.name in self.views:
                for rh in self._python_rows(conn, shape, bits):
                    buckets.setdefault(rh.bucket, Digest()).add(rh.digest)
            else:
                for b, n, *words in conn.execute(digest_sql(shape, bits)):
                    buckets[b] = Digest(int(n), [int(w) % (1 << 64) for w in words])
            drift = kept and buckets_differ(buckets, read_digests(conn, table, bits))
        if drift:
            log.warning("the incremental digests of %s disagree with its rows (a write "
                        "bypassed their triggers, e.g. with them disabled); rebuilt", table)
            self._rebuild(shape)
        return TableVerify(table, bits, applied, buckets=buckets, drift=drift)

    def _rebuild(self, shape: TableShape) -> None:
        try:
            with self.ctx.connect(autocommit=True) as conn:
                reseed(conn, shape)
        except psycopg.Error as e:
            raise EngineError(f"could not rebuild the digests of {shape.name}: {e}") from e

    def fold_digests(self) -> int:
        """Fold every covered table's deltas into its base; delta rows folded."""
        if not self.ctx.digest_tables:
            return 0
        try:
            with self.ctx.connect(autocommit=True) as conn:
                folded = sum(fold(conn, t) for t in sorted(self.ctx.digest_tables))
                if folded and _dead_deltas(conn) + folded >= VACUUM_AFTER_DEAD:
                    # the fold's deletes (and a long transaction's upserts of its
                    # own delta rows) leave dead rows every digest read wades
                    # through until autovacuum comes round, a minute or more
                    conn.execute("VACUUM ringsync.vdigest_delta")
                return folded
        except psycopg.Error as e:
            raise EngineError(f"folding verification digests failed: {e}") from e

    def row_hashes(self, table: str, bits: int, buckets: Sequence[int]) -> TableVerify:
        shape = self.ctx.shape_of(table)
        wanted = sorted(set(buckets))
        with self._snapshot() as (conn, applied):
            if "json" in shape.kinds or shape.name in self.views:
                chosen = set(wanted)
                rows = [rh for rh in self._python_rows(conn, shape, bits) if rh.bucket in chosen]
            else:
                rows = [RowHash(k, b, bytes(h)) for k, b, h in
                        conn.execute(rows_sql(shape, bits), (wanted,))]
        return TableVerify(table, bits, applied, rows=rows)
