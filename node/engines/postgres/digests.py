"""Incremental verification digests on PostgreSQL ([verify] incremental = true).

Bucket digests kept up to date by the database itself, in the transaction
of every write, so a verification after N changes reads O(buckets + N)
instead of hashing the table:

* ``ringsync.vdigest_base(tbl, bucket, rows, w0..w3)``: per table and
  bucket (MAX_BITS deep), the row count and word sums at the last fold;
* ``ringsync.vdigest_delta(tbl, xact, bucket, rows, w0..w3)``: what each
  transaction since added (+) or removed (-), per bucket, written by
  statement-level AFTER triggers that hash the statement's transition
  tables with the same SQL as a full verification
  (node.engines.postgres.rowsql.digest_sql). The rows are keyed by the
  writing transaction: no two transactions ever touch the same row (none
  waits on another, whatever buckets they touch), and a transaction of many
  statements keeps one row per bucket it touched. The triggers are ENABLE ALWAYS, so they fire
  for apply, for applications, for a DBA's session with
  session_replication_role = replica, and for COPY; a TRUNCATE trigger
  empties the table's digests in the same transaction;
* ``fold``: the node moves deltas into the base, one table at a time, in one
  transaction (DELETE ... RETURNING into an upsert; writers never wait).

A digest read is a REPEATABLE READ sum of base and deltas per bucket, with
the applied vector read in the same snapshot. Installing on a table with
rows seeds its base from a full hash under SHARE ROW EXCLUSIVE (writes wait
for that one scan; reads do not). Turning the setting off drops the triggers
and the digests. A restart only replaces the trigger functions (no table
lock), unless the kept digests were built by an older row hash definition
(node.verify.rowhash.HASH_DEFINITION, recorded in
``ringsync.vdigest_definition``): the tables whose hashes it changed are
then reseeded once, under the same lock. Tables with a JSON column are not
covered (SQL has no spelling of the canonical JSON form): their
verifications hash the table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import psycopg
from psycopg import sql

from node.engines.postgres.rowsql import digest_sql
from node.model import TableShape
from node.verify.rowhash import HASH_DEFINITION, MAX_BITS, Digest

_WORDS = ("w0", "w1", "w2", "w3")
_MOD = 1 << 64
DDL = (
    "CREATE TABLE IF NOT EXISTS ringsync.vdigest_base(tbl text NOT NULL, bucket int NOT NULL, "
    "rows bigint NOT NULL, w0 numeric NOT NULL, w1 numeric NOT NULL, w2 numeric NOT NULL, "
    "w3 numeric NOT NULL, PRIMARY KEY (tbl, bucket))",
    "CREATE TABLE IF NOT EXISTS ringsync.vdigest_delta(tbl text NOT NULL, "
    "xact bigint NOT NULL, bucket int NOT NULL, rows bigint NOT NULL, w0 numeric NOT NULL, "
    "w1 numeric NOT NULL, w2 numeric NOT NULL, w3 numeric NOT NULL, "
    "PRIMARY KEY (tbl, xact, bucket))",
    "CREATE TABLE IF NOT EXISTS ringsync.vdigest_definition(version int NOT NULL)",
)
EVENTS = {"i": "INSERT", "u": "UPDATE", "d": "DELETE"}


def covered(shape: TableShape) -> bool:
    return "json" not in shape.kinds


def _name(prefix: str, table: str) -> str:
    return f"rs_vd{prefix}_{table}"[:63]


def _delta_insert(shape: TableShape, source: str, sign: int) -> sql.Composed:
    """Add the per-bucket sums of ``source`` (a transition table), signed, to
    this transaction's delta rows: keyed by the transaction, so no other
    writer ever touches them, and a transaction of many statements (apply's
    batches) keeps at most one row per bucket."""
    s = sql.Literal(sign)
    return sql.SQL(
        "INSERT INTO ringsync.vdigest_delta AS v(tbl, xact, bucket, rows, w0, w1, w2, w3) "
        "SELECT {tbl}, txid_current(), d.b, {s} * d.n, {s} * d.w0, {s} * d.w1, {s} * d.w2, "
        "{s} * d.w3 FROM ({digest}) AS d(b, n, w0, w1, w2, w3) "
        "ON CONFLICT (tbl, xact, bucket) DO UPDATE SET rows = v.rows + excluded.rows, "
        "w0 = v.w0 + excluded.w0, w1 = v.w1 + excluded.w1, w2 = v.w2 + excluded.w2, "
        "w3 = v.w3 + excluded.w3").format(
            tbl=sql.Literal(shape.name), s=s,
            digest=digest_sql(shape, MAX_BITS, sql.Identifier(source)))


def _function_sql(shape: TableShape, op: str) -> sql.Composed:
    body = {
        "i": [_delta_insert(shape, "rs_new", 1)],
        "d": [_delta_insert(shape, "rs_old", -1)],
        "u": [_delta_insert(shape, "rs_old", -1), _delta_insert(shape, "rs_new", 1)],
    }[op]
    statements = sql.SQL("; ").join(body)
    # SECURITY DEFINER (the node's role) with a fixed search_path, as the fence's
    # function: an application role needs no privilege on the ringsync schema.
    # SET DateStyle: a date's output must not depend on the writer's session.
    return sql.SQL(
        "CREATE OR REPLACE FUNCTION ringsync.{fn}() RETURNS trigger LANGUAGE plpgsql "
        "SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET DateStyle = 'ISO, YMD' "
        "AS $rs$ BEGIN {body}; RETURN NULL; END $rs$").format(
            fn=sql.Identifier(_name(op, shape.name)), body=statements)


def _trigger_sql(shape: TableShape, op: str) -> list[sql.Composed]:
    table, trigger = sql.Identifier(shape.name), sql.Identifier(_name(op, shape.name))
    refs = {"i": "NEW TABLE AS rs_new", "d": "OLD TABLE AS rs_old",
            "u": "OLD TABLE AS rs_old NEW TABLE AS rs_new"}[op]
    return [
        sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(trigger, table),
        sql.SQL("CREATE TRIGGER {trg} AFTER {event} ON {tbl} REFERENCING {refs} "
                "FOR EACH STATEMENT EXECUTE FUNCTION ringsync.{fn}()").format(
            trg=trigger, event=sql.SQL(EVENTS[op]), tbl=table, refs=sql.SQL(refs),
            fn=sql.Identifier(_name(op, shape.name))),
        sql.SQL("ALTER TABLE {} ENABLE ALWAYS TRIGGER {}").format(table, trigger),
    ]


def _truncate_sql(shape: TableShape) -> list[sql.Composed]:
    fn, table = sql.Identifier(_name("t", shape.name)), sql.Identifier(shape.name)
    name = sql.Literal(shape.name)
    return [
        sql.SQL("CREATE OR REPLACE FUNCTION ringsync.{fn}() RETURNS trigger LANGUAGE plpgsql "
                "SECURITY DEFINER SET search_path = pg_catalog, pg_temp "
                "AS $rs$ BEGIN DELETE FROM ringsync.vdigest_base WHERE tbl = {n}; "
                "DELETE FROM ringsync.vdigest_delta WHERE tbl = {n}; RETURN NULL; END $rs$"
                ).format(fn=fn, n=name),
        sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(fn, table),
        sql.SQL("CREATE TRIGGER {fn} AFTER TRUNCATE ON {t} FOR EACH STATEMENT "
                "EXECUTE FUNCTION ringsync.{fn}()").format(fn=fn, t=table),
        sql.SQL("ALTER TABLE {} ENABLE ALWAYS TRIGGER {}").format(table, fn),
    ]


def _installed(conn: psycopg.Connection[Any], table: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_trigger WHERE tgrelid = to_regclass(%s) "
                        "AND tgname = %s", (table, _name("i", table))).fetchone() is not None


def install_digests(conn: psycopg.Connection[Any], shapes: Mapping[str, TableShape],
                    enabled: bool) -> set[str]:
    """Install (or, disabled, remove) the digests; the tables they cover."""
    if not enabled:
        for shape in shapes.values():
            if _installed(conn, shape.name):
                with conn.transaction():
                    for op in (*EVENTS, "t"):
                        conn.execute(sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(
                            sql.Identifier(_name(op, shape.name)), sql.Identifier(shape.name)))
                    for t in ("base", "delta"):
                        conn.execute(sql.SQL("DELETE FROM ringsync.{} WHERE tbl = %s").format(
                            sql.Identifier(f"vdigest_{t}")), (shape.name,))
        return set()
    for ddl in DDL:
        conn.execute(ddl)
    stale = _stale_definition(conn)
    out = set()
    for shape in shapes.values():
        if not covered(shape):
            continue
        out.add(shape.name)
        if _installed(conn, shape.name):  # a restart: new function bodies, no table lock
            with conn.transaction():
                for op in EVENTS:
                    conn.execute(_function_sql(shape, op))
            if stale and "decimal" in shape.kinds:  # built by an older definition
                reseed(conn, shape)
            continue
        with conn.transaction():  # writes wait for this one scan; reads do not
            conn.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(
                sql.Identifier(shape.name)))
            for op in EVENTS:
                conn.execute(_function_sql(shape, op))
                for statement in _trigger_sql(shape, op):
                    conn.execute(statement)
            for statement in _truncate_sql(shape):
                conn.execute(statement)
            _seed(conn, shape)  # digests of the rows already there
    if stale:
        with conn.transaction():
            conn.execute("DELETE FROM ringsync.vdigest_definition")
            conn.execute("INSERT INTO ringsync.vdigest_definition VALUES (%s)", (HASH_DEFINITION,))
    return out


def _stale_definition(conn: psycopg.Connection[Any]) -> bool:
    """Were the kept digests built by another row hash definition? (None
    recorded: by the first, or none are kept yet.)"""
    row = conn.execute("SELECT max(version) FROM ringsync.vdigest_definition").fetchone()
    return row is None or row[0] != HASH_DEFINITION


def _seed(conn: psycopg.Connection[Any], shape: TableShape) -> None:
    """Replace the table's digests by a full hash of its rows (in the caller's
    transaction, which holds the table against writes)."""
    conn.execute("DELETE FROM ringsync.vdigest_base WHERE tbl = %s", (shape.name,))
    conn.execute("DELETE FROM ringsync.vdigest_delta WHERE tbl = %s", (shape.name,))
    conn.execute("SET LOCAL DateStyle = 'ISO, YMD'")
    conn.execute(sql.SQL(
        "INSERT INTO ringsync.vdigest_base(tbl, bucket, rows, w0, w1, w2, w3) "
        "SELECT {}, * FROM ({}) AS d").format(sql.Literal(shape.name), digest_sql(shape, MAX_BITS)))


def reseed(conn: psycopg.Connection[Any], shape: TableShape) -> None:
    """Rebuild a table's digests from its rows (after they drifted)."""
    with conn.transaction():
        conn.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(
            sql.Identifier(shape.name)))
        _seed(conn, shape)


def fold(conn: psycopg.Connection[Any], table: str) -> int:
    """Move a table's deltas into its base; the number of delta rows folded."""
    with conn.transaction():
        cur = conn.execute(
            "WITH moved AS (DELETE FROM ringsync.vdigest_delta WHERE tbl = %s "
            "RETURNING bucket, rows, w0, w1, w2, w3), "
            "summed AS (SELECT bucket, sum(rows) AS rows, sum(w0) AS w0, sum(w1) AS w1, "
            "sum(w2) AS w2, sum(w3) AS w3, count(*) AS n FROM moved GROUP BY bucket), "
            "done AS (INSERT INTO ringsync.vdigest_base(tbl, bucket, rows, w0, w1, w2, w3) "
            "SELECT %s, bucket, rows, mod(w0, %s), mod(w1, %s), mod(w2, %s), mod(w3, %s) "
            "FROM summed ON CONFLICT (tbl, bucket) DO UPDATE SET "
            "rows = vdigest_base.rows + excluded.rows, "
            "w0 = mod(vdigest_base.w0 + excluded.w0, %s), "
            "w1 = mod(vdigest_base.w1 + excluded.w1, %s), "
            "w2 = mod(vdigest_base.w2 + excluded.w2, %s), "
            "w3 = mod(vdigest_base.w3 + excluded.w3, %s) RETURNING 1) "
            "SELECT coalesce(sum(n), 0) FROM summed",
            (table, table, *([_MOD] * 8)))
        row = cur.fetchone()
    return int(row[0]) if row else 0


def read_digests(conn: psycopg.Connection[Any], table: str, bits: int) -> dict[int, Digest]:
    """The table's bucket digests at ``bits``, from base and deltas (in the
    caller's snapshot)."""
    out: dict[int, Digest] = {}
    for bucket, rows, *words in conn.execute(
            "SELECT bucket >> %s, sum(rows), sum(w0), sum(w1), sum(w2), sum(w3) FROM ("
            "SELECT bucket, rows, w0, w1, w2, w3 FROM ringsync.vdigest_base WHERE tbl = %s "
            "UNION ALL SELECT bucket, rows, w0, w1, w2, w3 FROM ringsync.vdigest_delta "
            "WHERE tbl = %s) AS parts GROUP BY 1", (MAX_BITS - bits, table, table)):
        if int(rows) == 0:
            continue  # every row of the bucket is gone (the sums are 0 too)
        out[int(bucket)] = Digest(int(rows), [int(w) % _MOD for w in words])
    return out


def pending_deltas(conn: psycopg.Connection[Any], tables: Iterable[str]) -> dict[str, int]:
    return {t: int(n) for t, n in conn.execute(
        "SELECT tbl, count(*) FROM ringsync.vdigest_delta WHERE tbl = ANY(%s) GROUP BY tbl",
        (list(tables),))}
