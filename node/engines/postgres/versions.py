"""Row versions and the conflict log in a PostgreSQL campus database.

PgVersionStore is the version-store half of an apply session
(node.engines.postgres.apply); PgConflictStore is the engine's
ConflictStore role (the conflict log and dead letters as the servicers ask
for them, and an operator's local write).

``ringsync."meta_<table>"`` holds each row's recorded versions keyed like the
table, plus the xid of the row version they describe and whether the row
exists. Rows already there when ringsync first starts (or copied in when a
campus joins) get a base entry (``meta`` NULL). ``ringsync.conflicts`` is
the conflict log. All of it is written in the apply transaction.

Capture reads the WAL, so a user's change is not seen by the node when it
commits. Apply detects it instead: a row whose ``xmin`` is not the xid its
entry records (or a row that appeared or vanished against its entry) has a
local change whose versions are not recorded yet, so it is *pending*. Apply
locks the rows it reads (FOR UPDATE) so none changes before it writes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import psycopg
from psycopg import errors, sql

from node.conflicts.deadletter import DeadLetterQuery, DeadLetterTable
from node.conflicts.driver import (
    Key,
    PendingLocalChange,
    Row,
    StoredRow,
    TxnInfo,
)
from node.conflicts.entries import ConflictEntry, DeadLetterEntry
from node.conflicts.log import ConflictLog, ConflictQuery
from node.engines.dialect import Dialect, write_local_rows
from node.engines.postgres.connections import PgContext
from node.engines.postgres.fresh import PgFreshWrites, in_keys, meta_ident
from node.engines.postgres.stage import (
    STAGE_MIN_ROWS,
    Stager,
    insert_from,
    probe,
    upsert_action,
)
from node.engines.postgres.values import canonical_row, to_pg
from node.engines.sessionbase import ApplySessionBase
from node.model import TableShape
from node.spelling import Spelling
from ringsync.errors import EngineError

CONFLICTS_DDL = """
CREATE TABLE IF NOT EXISTS ringsync.conflicts(
    id bigserial PRIMARY KEY,
    at double precision NOT NULL,
    tbl text NOT NULL,
    key text NOT NULL,
    kind text NOT NULL,
    rule text NOT NULL,
    winner text NOT NULL,
    local_origin text NOT NULL,
    local_hlc bigint NOT NULL,
    remote_origin text NOT NULL,
    remote_seq bigint NOT NULL,
    remote_hlc bigint NOT NULL,
    local_row text,
    remote_row text,
    skew_ms bigint NOT NULL,
    state text NOT NULL,
    resolution text
)
"""
XID_SQL = "SELECT txid_current() % 4294967296"
PG_SPELLING = Spelling("%s")
CONFLICT_LOG = ConflictLog("ringsync.conflicts", PG_SPELLING, "ringsync.conflict_tally")
DLQ = DeadLetterTable("ringsync.dlq", PG_SPELLING)
PG = Dialect(spelling=PG_SPELLING, applied="ringsync.applied", set_fence="ringsync.set_fence",
             log=CONFLICT_LOG, dlq=DLQ, native=to_pg)


def install_versions(conn: psycopg.Connection[Any], shape: TableShape) -> None:
    """Create the version table and give every unrecorded row a base entry."""
    types = dict(conn.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped",
        (shape.name,)).fetchall())
    keys = sql.SQL(", ").join(sql.Identifier(c) for c in shape.key_columns)
    defs = sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(types[c]))
                              for c in shape.key_columns)
    conn.execute(sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} ({}, xid bigint, live boolean NOT NULL, meta text, "
        "PRIMARY KEY ({}))").format(meta_ident(shape.name), defs, keys))
    conn.execute(CONFLICTS_DDL)
    conn.execute(CONFLICT_LOG.tally_ddl())
    conn.execute(DLQ.ddl("bigserial PRIMARY KEY", "bytea"))
    mark_base_versions(conn, shape)


def mark_base_versions(conn: psycopg.Connection[Any], shape: TableShape) -> None:
    keys = sql.SQL(", ").join(sql.Identifier(c) for c in shape.key_columns)
    conn.execute(sql.SQL(
        "INSERT INTO {} ({}, xid, live, meta) SELECT {}, xmin::text::bigint, true, NULL FROM {} "
        "ON CONFLICT DO NOTHING").format(meta_ident(shape.name), keys, keys,
                                         sql.Identifier(shape.name)))


class PgVersionStore(PgFreshWrites, ApplySessionBase):
    """The version-store half of a PostgreSQL apply session."""

    def __init__(self, cur: psycopg.Cursor[Any], shape_of: Callable[[str], TableShape],
                 upsert_sql: Callable[[TableShape], sql.Composed],
                 delete_sql: Callable[[TableShape], sql.Composed],
                 stager: Stager | None = None) -> None:
        super().__init__(cur, PG, shape_of, upsert_sql, delete_sql)
        self.cur = cur
        self._stager = stager
        self._canonical = canonical_row
        self._xid: int | None = None
        self._savepoints = 0

    def _session_xid(self) -> int:
        if self._xid is None:
            self._xid = int(self.cur.execute(XID_SQL).fetchone()[0])  # type: ignore[index]
        return self._xid

    def read_versions(self, shape: TableShape,
                      keys: Mapping[Key, TxnInfo]) -> dict[Key, StoredRow]:
        cur = self.cur
        source = self._key_source(shape, list(keys))
        table = [sql.SQL("rs_t.xmin::text::bigint"),
                 *(sql.Identifier("rs_t", c) for c in shape.columns)]
        found: dict[Key, tuple[int, Row]] = {}
        for rec in cur.execute(*self._keyed(shape, source, sql.Identifier(shape.name), table,
                                            lock=True)).fetchall():
            row = self._canonical(shape.kinds, rec[1:])
            found[shape.key_of(row)] = (int(rec[0]), row)
        key_kinds = [shape.kinds[i] for i in shape.key_indexes] if shape.kinds else []
        metas: dict[Key, tuple[int | None, bool, str | None]] = {}
        width = len(shape.key_columns)
        versions = [sql.Identifier("rs_t", c) for c in (*shape.key_columns, "xid", "live", "meta")]
        for rec in cur.execute(*self._keyed(shape, source, meta_ident(shape.name),
                                            versions)).fetchall():
            key = self._canonical(key_kinds, rec[:width]) if key_kinds else tuple(rec[:width])
            metas[key] = (rec[width], bool(rec[width + 1]), rec[width + 2])
        out: dict[Key, StoredRow] = {}
        for key, txn in keys.items():
            xmin: int | None = None
            current: Row | None = None
            if key in found:
                xmin, current = found[key]
            entry = metas.get(key)
            if txn.local:  # a later local change holds the row (or took it away)
                pending = current is None or xmin != txn.xid
            elif current is not None:
                pending = entry is None or entry[0] != xmin
            else:
                pending = entry is not None and entry[1]
            out[key] = StoredRow(current, entry[2] if entry else None, pending, xmin)
        return out

    def _key_source(self, shape: TableShape, keys: list[Key]) -> sql.Identifier | list[Any]:
        """Where statements find ``keys``: a staging table for many, else their
        values as parameters."""
        if self._stager is not None and len(keys) >= STAGE_MIN_ROWS:
            return self._stager.load(self.cur, sql.Identifier(shape.name), shape.name,
                                     shape.key_columns,
                                     [tuple(to_pg(v) for v in k) for k in keys])
        return [to_pg(v) for k in keys for v in k]

    def _keyed(self, shape: TableShape, source: sql.Identifier | list[Any],
               target: sql.Composable, columns: Sequence[sql.Composable], lock: bool = False,
               ordered: bool = False) -> tuple[sql.Composed, list[Any]]:
        """A statement selecting ``columns`` (over ``rs_t``) of ``target``'s rows
        with the keys of ``source`` (see _key_source), and its parameters;
        ``lock``: FOR UPDATE, ``ordered``: rows taken in key order. Staged keys
        are primary-key probes whatever the statistics say (stage.probe)."""
        inner = sql.SQL(", ").join(columns)
        keys = sql.SQL(", ").join(sql.Identifier(c) for c in shape.key_columns)
        if isinstance(source, sql.Identifier):
            return probe(shape, source, target, inner, lock, ordered), []
        width = len(shape.key_columns)
        return sql.SQL("SELECT {} FROM {} rs_t WHERE {}{}{}").format(
            inner, target, in_keys(shape, len(source) // width),
            sql.SQL(" ORDER BY {}").format(keys) if ordered else sql.SQL(""),
            sql.SQL(" FOR UPDATE" if lock else "")), source

    def _stage_rows(self, shape: TableShape, rows: list[tuple[Any, ...]]) -> sql.Identifier:
        assert self._stager is not None
        return self._stager.load(self.cur, sql.Identifier(shape.name), shape.name,
                                 shape.columns, rows)

    def _bulk(self, rows: list[Any]) -> bool:
        return self._stager is not None and len(rows) >= STAGE_MIN_ROWS

    def write_rows(self, shape: TableShape, rows: Mapping[Key, Row | None],
                   absent: frozenset[Key] = frozenset()) -> None:
        deletes = [k for k, r in rows.items() if r is None]
        upserts = [tuple(to_pg(v) for v in r) for k, r in rows.items()
                   if r is not None and k not in absent]
        inserts = [tuple(to_pg(v) for v in r) for k, r in rows.items()
                   if r is not None and k in absent]
        table = sql.Identifier(shape.name)
        if self._bulk(deletes):  # rows already locked: their ctids cannot move
            select, _ = self._keyed(shape, self._key_source(shape, deletes), table,
                                    [sql.SQL("rs_t.ctid")])
            self.cur.execute(sql.SQL("DELETE FROM {} WHERE ctid = ANY (ARRAY({}))").format(
                table, select))
        elif deletes:
            self.cur.executemany(self._delete_sql(shape),
                                 [tuple(to_pg(v) for v in k) for k in deletes])
        if self._bulk(upserts):
            conflict = sql.SQL("ON CONFLICT ({}) {}").format(
                sql.SQL(", ").join(sql.Identifier(c) for c in shape.key_columns),
                upsert_action(shape))
            self.cur.execute(insert_from(table, shape.columns, self._stage_rows(shape, upserts),
                                         conflict))
        elif upserts:
            self.cur.executemany(self._upsert_sql(shape), upserts)
        if inserts:
            self._insert_new(shape, inserts)

    def _insert_new(self, shape: TableShape, rows: list[tuple[Any, ...]]) -> None:
        """Rows that did not exist when read (no row lock could hold their
        place): a local insert of the same key may have committed since, and
        must not be overwritten before capture has recorded it."""
        if self._bulk(rows):
            self.cur.execute(insert_from(sql.Identifier(shape.name), shape.columns,
                                         self._stage_rows(shape, rows),
                                         sql.SQL("ON CONFLICT DO NOTHING")))
            self._check_inserted(shape, self.cur.rowcount, len(rows))
            return
        width = len(shape.columns)
        one = sql.SQL("({})").format(sql.SQL(", ").join(sql.Placeholder() for _ in range(width)))
        step = max(1, 30_000 // width)
        for i in range(0, len(rows), step):
            part = rows[i:i + step]
            query = sql.SQL("INSERT INTO {} ({}) VALUES {} ON CONFLICT DO NOTHING RETURNING 1"
                            ).format(sql.Identifier(shape.name),
                                     sql.SQL(", ").join(sql.Identifier(c) for c in shape.columns),
                                     sql.SQL(", ").join([one] * len(part)))
            self._check_inserted(shape, len(self.cur.execute(
                query, [v for r in part for v in r]).fetchall()), len(part))

    @staticmethod
    def _check_inserted(shape: TableShape, written: int, wanted: int) -> None:
        if written != wanted:
            raise PendingLocalChange(
                f"{shape.name}: {wanted - written} row(s) appeared locally since apply "
                f"read them; waiting for capture")

    def write_versions(self, shape: TableShape, metas: Mapping[Key, tuple[str | None, bool]],
                       stored: Mapping[Key, StoredRow], written: set[Key],
                       owners: Mapping[Key, TxnInfo]) -> None:
        keys = sql.SQL(", ").join(sql.Identifier(c) for c in shape.key_columns)
        marks = sql.SQL(", ").join(sql.Placeholder() for _ in range(len(shape.key_columns) + 3))
        records = []
        # Rows written under a savepoint carry the subtransaction's xid: read it.
        actual = self._xmins(shape, list(written)) if written and self._savepoints else {}
        for key, (text, live) in metas.items():
            if key in written:
                xid: int | None = actual.get(key, self._session_xid())
            elif owners[key].local:
                xid = stored[key].tag if not stored[key].pending else owners[key].xid
            else:
                xid = stored[key].tag
            records.append((*(to_pg(v) for v in key), xid, live, text))
        update = sql.SQL("ON CONFLICT ({}) DO UPDATE SET xid = EXCLUDED.xid, "
                         "live = EXCLUDED.live, meta = EXCLUDED.meta").format(keys)
        if self._bulk(records):
            assert self._stager is not None
            columns = (*shape.key_columns, "xid", "live", "meta")
            stage = self._stager.load(self.cur, meta_ident(shape.name), f"meta_{shape.name}",
                                      columns, records)
            self.cur.execute(insert_from(meta_ident(shape.name), columns, stage, update))
            return
        self.cur.executemany(sql.SQL("INSERT INTO {} ({}, xid, live, meta) VALUES ({}) {}").format(
            meta_ident(shape.name), keys, marks, update), records)

    def dead_letters(self, query: DeadLetterQuery) -> list[DeadLetterEntry]:
        return DLQ.query(self.cur, query)

    def savepoint(self) -> None:
        self.cur.execute("SAVEPOINT rs_change")
        self._savepoints += 1

    def release_savepoint(self) -> None:
        self.cur.execute("RELEASE SAVEPOINT rs_change")
        self._savepoints -= 1

    def rollback_to_savepoint(self) -> None:
        self.cur.execute("ROLLBACK TO SAVEPOINT rs_change")
        self.cur.execute("RELEASE SAVEPOINT rs_change")
        self._savepoints -= 1
        if self._stager is not None:
            self._stager.rolled_back()

    def _xmins(self, shape: TableShape, keys: list[Key]) -> dict[Key, int]:
        kinds = [shape.kinds[i] for i in shape.key_indexes] if shape.kinds else []
        out = {}
        columns = [sql.SQL("rs_t.xmin::text::bigint"),
                   *(sql.Identifier("rs_t", c) for c in shape.key_columns)]
        for rec in self.cur.execute(*self._keyed(  # staged when many (no parameter limit)
                shape, self._key_source(shape, keys), sql.Identifier(shape.name),
                columns)).fetchall():
            key = canonical_row(kinds, rec[1:]) if kinds else tuple(rec[1:])
            out[key] = int(rec[0])
        return out

    def reset_versions(self, shape: TableShape, rows: Mapping[Key, bool]) -> None:
        """A restored row gets a base entry with this session's xid (its xmin
        now, so it is not taken for a pending local change); a removed one
        loses its entry."""
        gone = [tuple(to_pg(v) for v in k) for k, exists in rows.items() if not exists]
        if gone:
            self.cur.executemany(sql.SQL("DELETE FROM {} WHERE {}").format(
                meta_ident(shape.name), in_keys(shape, 1)), gone)
        kept = [(*(to_pg(v) for v in k), self._session_xid(), True, None)
                for k, exists in rows.items() if exists]
        if kept:
            keys = sql.SQL(", ").join(sql.Identifier(c) for c in shape.key_columns)
            marks = sql.SQL(", ").join(sql.Placeholder() for _ in range(len(shape.key_columns) + 3))
            self.cur.executemany(sql.SQL(
                "INSERT INTO {} ({}, xid, live, meta) VALUES ({}) ON CONFLICT ({}) DO UPDATE "
                "SET xid = EXCLUDED.xid, live = EXCLUDED.live, meta = EXCLUDED.meta").format(
                meta_ident(shape.name), keys, marks, keys), kept)

    def clear_versions(self, shape: TableShape) -> None:
        self.cur.execute(sql.SQL("DELETE FROM {}").format(meta_ident(shape.name)))

    def mark_base(self, shape: TableShape) -> None:
        mark_base_versions(self.cur.connection, shape)


class PgConflictStore:
    """The ConflictStore role of PostgresEngine: the conflict log and dead-letter
    queries and an operator's local write, on the engine's main connection
    (from the shared context, with the shapes and the SQL builders)."""

    def __init__(self, ctx: PgContext) -> None:
        self.ctx = ctx

    def conflicts(self, query: ConflictQuery) -> list[ConflictEntry]:
        self.ctx.ensure_connected()
        return CONFLICT_LOG.query(self.ctx.conn, query)

    def read_version(self, table: str, key: tuple[Any, ...]) -> tuple[tuple[Any, ...] | None,
                                                                     str | None]:
        shape = self.ctx.shape_of(table)
        where = sql.SQL(" AND ").join(
            sql.SQL("{} = %s").format(sql.Identifier(c)) for c in shape.key_columns)
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in shape.columns)
        params = tuple(to_pg(v) for v in key)
        rows = self.ctx.query(sql.SQL("SELECT {} FROM {} WHERE {}").format(
            cols, sql.Identifier(table), where), params)
        metas = self.ctx.query(sql.SQL("SELECT meta FROM {} WHERE {}").format(
            meta_ident(table), where), params)
        return (canonical_row(shape.kinds, rows[0]) if rows else None), (
            metas[0][0] if metas else None)

    def write_local(self, table: str, key: tuple[Any, ...], row: tuple[Any, ...] | None,
                    prior: tuple[Any, ...] | None = None) -> None:
        """An ordinary local write (no replication origin: captured like a user's).
        An operator's resolution, so while fenced (or, for a table of a
        single-writer set, while the set is closed here) the database refuses
        it like an application's (as EngineError)."""
        shape = self.ctx.shape_of(table)
        self.ctx.ensure_connected()
        try:
            with self.ctx.conn.transaction():
                write_local_rows(self.ctx.conn, PG, self.ctx.upsert_sql(shape),
                                 self.ctx.delete_sql(shape), key, row, prior)
        except errors.ReadOnlySqlTransaction as e:
            raise EngineError(e.diag.message_primary or str(e).strip()) from e

    def mark_conflict(self, conflict_id: int, state: str, resolution: str) -> None:
        self.ctx.ensure_connected()
        self.ctx.conn.execute(PG.mark_conflict_sql(), (state, resolution, conflict_id))

    def dead_letter_list(self, query: DeadLetterQuery) -> list[DeadLetterEntry]:
        return DLQ.query(self.ctx.conn, query)

    def dead_letter_counts(self) -> dict[str, int]:
        return DLQ.counts(self.ctx.conn, self.ctx.campus)

    def conflict_counts(self) -> dict[str, int]:
        self.ctx.ensure_connected()
        return CONFLICT_LOG.counts(self.ctx.conn)

    def prune_conflicts(self, keep_rows: int, keep_days: int) -> None:
        self.ctx.ensure_connected()
        CONFLICT_LOG.prune(self.ctx.conn, keep_rows, keep_days)

