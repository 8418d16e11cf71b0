"""Row hashes in SQL: the statements PostgreSQL runs to hash rows for verification.

``field_sql`` writes each column's verification field exactly as
node.verify.rowhash writes it from canonical values, so the record text,
and so the hash, is the one a SQLite campus computes for the same row.
``digest_sql`` sums a table's (or a transition table's) row hashes per
bucket; ``rows_sql`` lists the (key, row hash) of some buckets. Used by the
verifier (node.engines.postgres.verifying) and by the incremental digests'
triggers (node.engines.postgres.digests).
"""

from __future__ import annotations

from collections.abc import Sequence

from psycopg import sql

from node.model import TableShape


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
    if kind == "decimal":  # without the trailing zeros a declared scale adds (rowhash)
        return sql.SQL("trim_scale({})").format(c)
    # int, text (character keeps its padding), bool (t/f), uuid, date
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


def digest_sql(shape: TableShape, bits: int,
               source: sql.Composable | None = None) -> sql.Composed:
    """Per bucket: rows and the four word sums, in one scan of the table (or of
    ``source``, a relation with the table's columns: a trigger's transition
    table, node.engines.postgres.digests)."""
    words = sql.SQL(", ").join(
        sql.SQL("sum(substring(hb FROM {} FOR 64)::bigint)").format(sql.Literal(1 + 64 * i))
        for i in range(4))
    return sql.SQL(
        "SELECT b, count(*), {w} FROM ("
        "SELECT {b} AS b, ('x' || encode(h, 'hex'))::bit(256) AS hb, {once} FROM ("
        "SELECT {kh} AS kh, {h} AS h, {once} FROM {t}) AS hashed) AS words GROUP BY 1").format(
            w=words, b=_bucket(bits), once=_ONCE,
            t=source if source is not None else sql.Identifier(shape.name),
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
