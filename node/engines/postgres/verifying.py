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

Each row's fields are written by SQL exactly as node.verify.rowhash writes
them from canonical values (``field_sql``), so the record text, and so the
hash, is the one a SQLite campus computes for the same row. A table with a
JSON column is hashed in Python instead (rows streamed, canonical_row, then
node.verify.rowhash): SQL has no spelling of the canonical JSON form.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql

from node.engines.postgres.connections import PgContext
from node.engines.postgres.values import canonical_row
from node.model import TableShape
from node.verify.rowhash import Digest, RowHash, hash_row
from node.verify.snapshot import TableVerify
from ringsync.errors import EngineError


def field_sql(column: str, kind: str) -> sql.Composable:
    """The SQL for one column's verification field (NULL stays NULL)."""
    c = sql.Identifier(column)
    if kind == "float":
        return sql.SQL("encode(float8send({}::float8), 'hex')").format(c)
    if kind == "bytes":
        return sql.SQL("encode({}, 'hex')").format(c)
    if kind == "timestamp":
        # exact on every version (extract gives a double before PostgreSQL 14)
        return sql.SQL(
            "CASE WHEN isfinite({c}) THEN (extract(epoch FROM date_trunc('second', {c}))"
            "::bigint * 1000000 + mod(extract(microseconds FROM {c})::bigint, 1000000))::text"
            " ELSE {c}::text END").format(c=c)
    # int, decimal, text (character keeps its padding), bool (t/f), uuid, date
    # (DateStyle ISO, set by the transaction): the type's own output
    return c


def _record(shape: TableShape, indexes: Sequence[int]) -> sql.Composable:
    return sql.SQL("ROW({})::text").format(sql.SQL(", ").join(
        field_sql(shape.columns[i], shape.kinds[i]) for i in indexes))


# A volatile, parallel-safe output column keeps a subquery from being pulled
# up into its parent, so each hash is computed once per row and every later
# reference reads the column (pulled up, each reference would recompute it);
# unlike OFFSET 0 it still lets the server scan in parallel.
_ONCE = sql.SQL("clock_timestamp() AS rs_once")


def _bucket(bits: int) -> sql.Composed:
    return sql.SQL("((get_byte(kh, 0) << 8 | get_byte(kh, 1)) >> {})").format(
        sql.Literal(16 - bits))


def _sha(text: sql.Composable) -> sql.Composed:
    return sql.SQL("sha256(convert_to({}, 'UTF8'))").format(text)


def digest_sql(shape: TableShape, bits: int) -> sql.Composed:
    """Per bucket: rows and the four word sums, in one scan."""
    words = sql.SQL(", ").join(
        sql.SQL("sum(substring(hb FROM {} FOR 64)::bigint)").format(sql.Literal(1 + 64 * i))
        for i in range(4))
    return sql.SQL(
        "SELECT b, count(*), {w} FROM ("
        "SELECT {b} AS b, ('x' || encode(h, 'hex'))::bit(256) AS hb, {once} FROM ("
        "SELECT {kh} AS kh, {h} AS h, {once} FROM {t}) AS hashed) AS words GROUP BY 1").format(
            w=words, b=_bucket(bits), once=_ONCE, t=sql.Identifier(shape.name),
            kh=_sha(_record(shape, shape.key_indexes)),
            h=_sha(_record(shape, range(len(shape.columns)))))


def rows_sql(shape: TableShape, bits: int) -> sql.Composed:
    """(key record, bucket, row hash) of the rows in the buckets given as %s."""
    return sql.SQL(
        "SELECT k, b, h FROM ("
        "SELECT k, {b} AS b, h, {once} FROM ("
        "SELECT k, {kh} AS kh, {h} AS h, {once} FROM ("
        "SELECT {k} AS k, {r} AS r, {once} FROM {t}) AS texts) AS hashed) AS placed "
        "WHERE b = ANY(%s)").format(
            b=_bucket(bits), once=_ONCE, kh=_sha(sql.SQL("k")), h=_sha(sql.SQL("r")),
            k=_record(shape, shape.key_indexes), r=_record(shape, range(len(shape.columns))),
            t=sql.Identifier(shape.name))


class PgVerifier:
    """Verification questions about one PostgreSQL campus database."""

    def __init__(self, ctx: PgContext) -> None:
        self.ctx = ctx

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
        with conn.cursor() as cur:
            for row in cur.stream(sql.SQL("SELECT {} FROM {}").format(
                    cols, sql.Identifier(shape.name)), size=2000):
                yield hash_row(shape.kinds, shape.key_indexes,
                               canonical_row(shape.kinds, row), bits)

    def bucket_digests(self, table: str, bits: int) -> TableVerify:
        shape = self.ctx.shape_of(table)
        with self._snapshot() as (conn, applied):
            buckets: dict[int, Digest] = {}
            if "json" in shape.kinds:
                for rh in self._python_rows(conn, shape, bits):
                    buckets.setdefault(rh.bucket, Digest()).add(rh.digest)
            else:
                for b, n, *words in conn.execute(digest_sql(shape, bits)):
                    buckets[b] = Digest(int(n), [int(w) % (1 << 64) for w in words])
        return TableVerify(table, bits, applied, buckets=buckets)

    def row_hashes(self, table: str, bits: int, buckets: Sequence[int]) -> TableVerify:
        shape = self.ctx.shape_of(table)
        wanted = sorted(set(buckets))
        with self._snapshot() as (conn, applied):
            if "json" in shape.kinds:
                chosen = set(wanted)
                rows = [rh for rh in self._python_rows(conn, shape, bits) if rh.bucket in chosen]
            else:
                rows = [RowHash(k, b, bytes(h)) for k, b, h in
                        conn.execute(rows_sql(shape, bits), (wanted,))]
        return TableVerify(table, bits, applied, rows=rows)
