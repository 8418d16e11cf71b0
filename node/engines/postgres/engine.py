"""PostgreSQL campus engine: pgoutput logical decoding in, batched upserts out.

Capture. The node owns a publication and a logical slot per campus
(``ringsync_<campus>``), created at first start. A reader thread speaks the
replication protocol through psycopg's libpq layer (``replication=database``,
``START_REPLICATION … LOGICAL``, CopyBoth), decodes pgoutput, splits large
transactions into chunks of ``frame_max_changes`` rows and hands them over
through a bounded queue, so memory stays bounded and a slow journal slows
the reader instead of growing a buffer. Nothing is polled: the thread blocks
on the socket. The slot's confirmed flush position moves only to what the
journal has durably stored (``release``).

Origin. The apply connection sets the replication origin ``ringsync`` for
its session, so every transaction it commits carries that origin; pgoutput
announces it and the reader drops such transactions: applied rows are never
re-captured as local.

Replicated tables get REPLICA IDENTITY FULL, so updates and deletes carry
the whole old row (needed for key changes and for unchanged TOAST values).

Fencing (node.engines.postgres.fence). A statement trigger refuses application
writes once ``ringsync.fence.writable_until`` has passed; sessions under the
replication origin (apply) pass. A single-writer set's tables are guarded by
the set's row in ``ringsync.set_fence`` instead: writable only while it is
open.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql

from node.codec import RowSetDigest
from node.engines.base import ApplyTarget, CaptureSource, ConflictStore, Fence, Inspection
from node.engines.postgres import sync as pgsync
from node.engines.postgres.capture import APPLY_ORIGIN, PgoutputReader
from node.engines.postgres.fence import PgFenceOps, install_fence, store_reconciled
from node.engines.postgres.server import check_server, missing_table, no_primary_key, slot_name
from node.engines.postgres.snapshot import pg_snapshot
from node.engines.postgres.stage import Stager, upsert_action
from node.engines.postgres.values import canonical_row, to_pg
from node.engines.postgres.versions import DLQ, PgVersionStore, install_versions
from node.engines.runs import batched_writes
from node.engines.snapshot import ReadSnapshot
from node.model import CapturedChunk, Change, TableShape
from node.schema import PG_KINDS
from ringsync.dsn import redact_dsn
from ringsync.errors import EngineError
from ringsync.names import NODE_APPLICATION_NAME

log = logging.getLogger(__name__)

# The apply session waits this long for a row lock, then gives up (a
# transient error: retried with jitter). Shorter than PostgreSQL's default
# deadlock_timeout (1 s), so where apply and an application wait for each
# other, apply is the one that yields.
APPLY_LOCK_TIMEOUT_MS = 500


class _PgApplySession(PgVersionStore):
    holds_row_locks = True

    def __init__(self, engine: PostgresEngine, conn: psycopg.Connection[Any]) -> None:
        super().__init__(conn.cursor(), canonical_row, engine.upsert_sql, engine.delete_sql,
                         engine.stager)
        self.engine = engine

    def apply(self, changes: Iterable[Change]) -> None:
        for shape, deletes, upserts in batched_writes(changes, self.engine.shape_of):
            if deletes:
                self.cur.executemany(self.engine.delete_sql(shape),
                                     [tuple(to_pg(v) for v in k) for k in deletes])
            if upserts:
                self.cur.executemany(self.engine.upsert_sql(shape),
                                     [tuple(to_pg(v) for v in r) for r in upserts])

    def lock_rows(self, shape: TableShape, keys: list[Any]) -> None:
        """SELECT ... ORDER BY key FOR UPDATE: rows are locked in key order."""
        if not keys:
            return
        where, params = self._key_filter(shape, keys)
        order = sql.SQL(", ").join(sql.Identifier(c) for c in shape.key_columns)
        self.cur.execute(sql.SQL("SELECT 1 FROM {} WHERE {} ORDER BY {} FOR UPDATE").format(
            sql.Identifier(shape.name), where, order), params)

    def clear(self, table: str) -> None:
        shape = self.engine.shape_of(table)
        self.cur.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(shape.name)))
        self.clear_versions(shape)

    def mark_base_versions(self) -> None:
        """Rows copied in by a join become base versions."""
        for shape in self.engine.shapes().values():
            self.mark_base(shape)

    def advance(self, origin: str, seq: int, position: int | None = None,
                changes: int = 0) -> None:
        self.cur.execute(
            "INSERT INTO ringsync.applied(origin, seq, changes) VALUES (%s, %s, %s) "
            "ON CONFLICT (origin) DO UPDATE SET seq = EXCLUDED.seq, "
            "changes = ringsync.applied.changes + EXCLUDED.changes",
            (origin, seq, changes),
        )

    def mark_set_reconciled(self, name: str, epoch: int) -> None:
        store_reconciled(self.cur, name, epoch)


class PostgresEngine(PgFenceOps):
    name = "postgres"

    def __init__(self, dsn: str, tables: tuple[str, ...], campus: str,
                 frame_max_changes: int = 2000, sync: bool = False,
                 sets: Mapping[str, str] | None = None) -> None:
        self.dsn = dsn
        self.sync = sync
        self.tables = tables
        self.campus = campus
        self.sets: Mapping[str, str] = dict(sets or {})  # table -> single-writer set
        self.slot = slot_name(campus)
        self.publication = self.slot
        self.frame_max_changes = frame_max_changes
        self._conn: psycopg.Connection[Any] | None = None
        self._apply: psycopg.Connection[Any] | None = None
        self._shapes: dict[str, TableShape] = {}
        self._sql: dict[tuple[str, str], sql.Composed] = {}
        self._reader: PgoutputReader | None = None
        self.stager: Stager = Stager()

    # -- roles (node.engines.base): this engine plays each one itself -------

    @property
    def source(self) -> CaptureSource:
        return self

    @property
    def target(self) -> ApplyTarget:
        return self

    @property
    def fence(self) -> Fence:
        return self

    @property
    def store(self) -> ConflictStore:
        return self

    @property
    def inspect(self) -> Inspection:
        return self

    @property
    def description(self) -> str:
        return redact_dsn(self.dsn)  # the DSN may carry the password_file's password

    @property
    def conn(self) -> psycopg.Connection[Any]:
        if self._conn is None:
            raise EngineError("the PostgreSQL engine is not open")
        return self._conn

    # -- lifecycle -------------------------------------------------------

    def _connect(self, autocommit: bool, extra: str = "") -> psycopg.Connection[Any]:
        try:
            local = " -c synchronous_commit=local" if self.sync else ""
            local += extra
            conn = psycopg.connect(self.dsn, autocommit=autocommit, connect_timeout=10,
                                   fallback_application_name=NODE_APPLICATION_NAME,
                                   options="-c timezone=UTC -c datestyle=ISO" + local)
        except psycopg.OperationalError as e:
            raise EngineError(
                f"cannot connect to PostgreSQL ({self.description}): {e}".strip()) from e
        return conn

    def _connect_apply(self) -> psycopg.Connection[Any]:
        conn = self._connect(autocommit=False, extra=f" -c lock_timeout={APPLY_LOCK_TIMEOUT_MS}")
        conn.execute("SELECT pg_replication_origin_session_setup(%s)", (APPLY_ORIGIN,))
        conn.commit()
        return conn

    def open(self) -> None:
        self._conn = self._connect(autocommit=True)
        self._check_server()
        pgsync.configure(self._conn, self.campus, self.sync, self.dsn)
        self._shapes = {t: self._read_shape(t) for t in self.tables}
        self._install()
        self._apply = self._connect_apply()
        self.stager = Stager()

    def _check_server(self) -> None:
        check_server(self.conn, self.description)

    def _read_shape(self, table: str) -> TableShape:
        conn = self.conn
        row = conn.execute("SELECT to_regclass(%s)::oid", (table,)).fetchone()
        if row is None or row[0] is None:
            raise missing_table(table, self.description)
        oid = row[0]
        cols = conn.execute(
            "SELECT attname, atttypid FROM pg_attribute WHERE attrelid = %s AND attnum > 0 "
            "AND NOT attisdropped ORDER BY attnum",
            (oid,),
        ).fetchall()
        pk = conn.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
            "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s AND i.indisprimary "
            "ORDER BY array_position(i.indkey::int2[], a.attnum)",
            (oid,),
        ).fetchall()
        if not pk:
            raise no_primary_key(table)
        columns = tuple(c[0] for c in cols)
        kinds = tuple(PG_KINDS.get(c[1], "text") for c in cols)
        return TableShape(table, columns, tuple(columns.index(k[0]) for k in pk), kinds)

    def _install(self) -> None:
        conn = self.conn
        conn.execute("CREATE SCHEMA IF NOT EXISTS ringsync")
        conn.execute("CREATE TABLE IF NOT EXISTS ringsync.applied("
                     "origin text PRIMARY KEY, seq bigint NOT NULL)")
        conn.execute("ALTER TABLE ringsync.applied ADD COLUMN IF NOT EXISTS changes bigint "
                     "NOT NULL DEFAULT 0")
        for table in self.tables:
            ident = conn.execute(
                "SELECT relreplident FROM pg_class WHERE oid = to_regclass(%s)", (table,)
            ).fetchone()
            if ident is not None and ident[0] != "f":
                try:
                    conn.execute(sql.SQL("ALTER TABLE {} REPLICA IDENTITY FULL")
                                 .format(sql.Identifier(table)))
                except psycopg.Error as e:
                    raise EngineError(
                        f"cannot set REPLICA IDENTITY FULL on {table!r}: {e}; run it as the "
                        f"table's owner"
                    ) from e
        tables = sql.SQL(", ").join([*(sql.Identifier(t) for t in self.tables),
                                     sql.Identifier("ringsync", "applied")])
        pub = sql.Identifier(self.publication)
        exists = conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s",
                              (self.publication,)).fetchone()
        if exists:
            conn.execute(sql.SQL("ALTER PUBLICATION {} SET TABLE {}").format(pub, tables))
        else:
            conn.execute(sql.SQL(
                "CREATE PUBLICATION {} FOR TABLE {} WITH (publish = 'insert, update, delete')"
            ).format(pub, tables))
        for shape in self._shapes.values():
            install_versions(conn, shape)
        if not conn.execute("SELECT 1 FROM pg_replication_origin WHERE roname = %s",
                            (APPLY_ORIGIN,)).fetchone():
            conn.execute("SELECT pg_replication_origin_create(%s)", (APPLY_ORIGIN,))
        self.may_fence = install_fence(conn, self.tables, self.campus, self.sets)

    def start_capture(self, position: int) -> None:
        row = self.conn.execute(
            "SELECT wal_status, confirmed_flush_lsn::text FROM pg_replication_slots "
            "WHERE slot_name = %s", (self.slot,)
        ).fetchone()
        if row is None:
            if position:
                raise EngineError(
                    f"replication slot {self.slot} is gone (dropped while the node was down), "
                    f"so changes made since may be lost; this campus needs a re-sync. "
                    f"Do not delete the journal; see docs/design.md"
                )
            self.conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')",
                              (self.slot,))
        elif row[0] == "lost":
            raise EngineError(
                f"replication slot {self.slot} was invalidated (its WAL was removed, see "
                f"max_slot_wal_keep_size); this campus needs a re-sync"
            )
        self._reader = PgoutputReader(self.dsn, self.slot, self.publication, self.shape_of,
                                      self.frame_max_changes)
        if self.sync:  # commits wait for a peer's acknowledgement from the start
            self._reader.standby_name, self._reader.sync = pgsync.standby_name(self.campus), True
        self._reader.start(position, self.applied_vector())

    def sync_release(self, acked_position: int | None) -> None:
        """Sync mode: commits up to ``acked_position`` may return (a peer holds every
        local transaction up to it); None: stop waiting for peers (degraded)."""
        if self._reader is not None and self.sync:
            if acked_position is not None:
                self._reader.acked_end = max(self._reader.acked_end, acked_position)
            self._reader.sync = acked_position is not None

    def capture(self, position: int, max_changes: int) -> list[CapturedChunk]:
        """Chunks the slot reader decoded (it chunks by ``frame_max_changes`` itself)."""
        if self._reader is None:
            raise EngineError("capture was not started")
        return self._reader.take(position)

    def release(self, position: int) -> None:
        """Nothing to do here: ``capture(position)`` reports the flush position."""

    def local_recorded(self, position: int) -> None:
        """Nothing to keep: apply tells unrecorded local changes by xmin."""

    def captured_through(self) -> int:
        return self._reader.taken_through if self._reader is not None else 0

    @contextmanager
    def snapshot(self) -> Iterator[ReadSnapshot]:
        with pg_snapshot(self.dsn, self.slot, lambda: self._connect(autocommit=False),
                         self._shapes, canonical_row) as snap:
            if self._reader is not None:  # have capture confirm it got past the snapshot
                self._reader.wanted = max(self._reader.wanted, snap.position)
            yield snap

    def close(self) -> None:
        if self._reader is not None:
            self._reader.stop()
        for c in (self._apply, self._conn):
            if c is not None:
                c.close()
        self._apply = self._conn = None

    # -- metadata --------------------------------------------------------

    def shapes(self) -> Mapping[str, TableShape]:
        return self._shapes

    def shape_of(self, table: str) -> TableShape:
        try:
            return self._shapes[table]
        except KeyError:
            raise EngineError(f"table {table!r} is not replicated at {self.campus!r}") from None

    def delete_sql(self, shape: TableShape) -> sql.Composed:
        key = (shape.name, "delete")
        if key not in self._sql:
            where = sql.SQL(" AND ").join(
                sql.SQL("{} = %s").format(sql.Identifier(c)) for c in shape.key_columns)
            self._sql[key] = sql.SQL("DELETE FROM {} WHERE {}").format(
                sql.Identifier(shape.name), where)
        return self._sql[key]

    def upsert_sql(self, shape: TableShape) -> sql.Composed:
        key = (shape.name, "upsert")
        if key not in self._sql:
            action = upsert_action(shape)
            self._sql[key] = sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) {}").format(
                sql.Identifier(shape.name),
                sql.SQL(", ").join(sql.Identifier(c) for c in shape.columns),
                sql.SQL(", ").join(sql.Placeholder() for _ in shape.columns),
                sql.SQL(", ").join(sql.Identifier(c) for c in shape.key_columns),
                action,
            )
        return self._sql[key]

    # -- apply -----------------------------------------------------------

    @contextmanager
    def apply_session(self) -> Iterator[_PgApplySession]:
        if self._apply is None:
            raise EngineError("the PostgreSQL engine is not open")
        conn = self._apply
        if conn.broken or conn.closed:
            self._apply = conn = self._connect_apply()
            self.stager = Stager()
        committed = False
        try:
            with conn.transaction():
                yield _PgApplySession(self, conn)
            committed = True
        except psycopg.Error as e:
            raise EngineError(f"apply failed on PostgreSQL: {e}") from e
        finally:
            self.stager.end(committed)

    def applied_vector(self) -> dict[str, int]:
        return {o: int(s) for o, s in self._query("SELECT origin, seq FROM ringsync.applied")}

    def apply_accounting(self) -> tuple[dict[str, int], int, dict[str, int]]:
        """The applied vector, foreign row changes applied, and dead letters by
        state, from one snapshot."""
        self._query("SELECT 1")  # reconnects after a server restart
        with self.conn.transaction():  # status asks every second: no new connection
            self.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            rows = self.conn.execute(
                "SELECT origin, seq, changes FROM ringsync.applied").fetchall()
            dead = DLQ.counts(self.conn, self.campus)
        return ({o: int(s) for o, s, _ in rows},
                sum(int(n) for o, _, n in rows if o != self.campus), dead)

    # -- inspection ------------------------------------------------------

    def _query(self, query: str | sql.Composed, params: tuple[Any, ...] = ()) -> list[Any]:
        try:
            return self.conn.execute(query, params).fetchall()
        except psycopg.OperationalError:
            self._conn = self._connect(autocommit=True)  # server restarted: reconnect once
            return self.conn.execute(query, params).fetchall()

    def check_health(self) -> None:
        try:
            self._query("SELECT 1")
        except psycopg.Error as e:
            raise EngineError(f"PostgreSQL is not answering: {e}") from e
        if self._reader is not None and self._reader.error:
            raise EngineError(self._reader.error)

    def rows(self, table: str) -> list[tuple[Any, ...]]:
        """Every row of a table as canonical values (tests and verification)."""
        shape = self.shape_of(table)
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in shape.columns)
        return [canonical_row(shape.kinds, r) for r in self._query(
            sql.SQL("SELECT {} FROM {}").format(cols, sql.Identifier(table)))]

    def row_counts(self) -> dict[str, int]:
        return {t: int(self._query(sql.SQL("SELECT count(*) FROM {}").format(
            sql.Identifier(t)))[0][0]) for t in self.tables}

    def checksums(self, tables: list[str]) -> tuple[dict[str, tuple[int, str]], dict[str, int]]:
        with self._connect(autocommit=False) as conn:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            out = {}
            for table in tables:
                shape = self.shape_of(table)
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
