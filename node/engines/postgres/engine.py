"""PostgreSQL campus engine: pgoutput logical decoding in, batched upserts out.

PostgresEngine opens and closes the database (checks the server, reads the
replicated tables' shapes, installs the publication, version tables and
fence) and holds one object per role, all sharing one PgContext
(node.engines.postgres.connections): ``source`` (node.engines.postgres.source),
``target`` (apply), ``fence`` (fence), ``store`` (versions), ``inspect``
(inspection) and ``verifier`` (verification).

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
from collections.abc import Mapping

import psycopg
from psycopg import sql

from node.engines.base import missing_table, no_primary_key
from node.engines.postgres import sync as pgsync
from node.engines.postgres.apply import PgApplyTarget
from node.engines.postgres.capture import APPLY_ORIGIN
from node.engines.postgres.connections import PgContext
from node.engines.postgres.digests import install_digests
from node.engines.postgres.fence import PgFence, install_fence
from node.engines.postgres.inspection import PgInspection
from node.engines.postgres.server import check_server
from node.engines.postgres.source import PgCaptureSource
from node.engines.postgres.stage import Stager
from node.engines.postgres.verifying import PgVerifier
from node.engines.postgres.versions import PgConflictStore, install_versions
from node.model import TableShape
from node.schema import PG_KINDS
from ringsync.errors import EngineError

log = logging.getLogger(__name__)


class PostgresEngine:
    name = "postgres"

    def __init__(self, dsn: str, tables: tuple[str, ...], campus: str,
                 frame_max_changes: int = 2000, sync: bool = False,
                 sets: Mapping[str, str] | None = None, digests: bool = False) -> None:
        self.ctx = PgContext(dsn, tables, campus, frame_max_changes, sync, sets)
        self.ctx.digests_wanted = digests
        self.source = PgCaptureSource(self.ctx)
        self.target = PgApplyTarget(self.ctx)
        self.fence = PgFence(self.ctx)
        self.store = PgConflictStore(self.ctx)
        self.inspect = PgInspection(self.ctx)
        self.verifier = PgVerifier(self.ctx)

    @property
    def description(self) -> str:
        return self.ctx.description

    # -- lifecycle -------------------------------------------------------

    def open(self) -> None:
        ctx = self.ctx
        ctx.main = ctx.connect(autocommit=True)
        check_server(ctx.conn, ctx.description)
        pgsync.configure(ctx.main, ctx.campus, ctx.sync, ctx.dsn)
        ctx.shapes = {t: self._read_shape(t) for t in ctx.tables}
        self._install()
        ctx.apply = ctx.connect_apply()
        ctx.stager = Stager()

    def _read_shape(self, table: str) -> TableShape:
        conn = self.ctx.conn
        row = conn.execute("SELECT to_regclass(%s)::oid", (table,)).fetchone()
        if row is None or row[0] is None:
            raise missing_table(table, self.ctx.description)
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
        conn = self.ctx.conn
        conn.execute("CREATE SCHEMA IF NOT EXISTS ringsync")
        conn.execute("CREATE TABLE IF NOT EXISTS ringsync.applied("
                     "origin text PRIMARY KEY, seq bigint NOT NULL)")
        conn.execute("ALTER TABLE ringsync.applied ADD COLUMN IF NOT EXISTS changes bigint "
                     "NOT NULL DEFAULT 0")
        for table in self.ctx.tables:
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
        tables = sql.SQL(", ").join([*(sql.Identifier(t) for t in self.ctx.tables),
                                     sql.Identifier("ringsync", "applied")])
        pub = sql.Identifier(self.ctx.publication)
        exists = conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s",
                              (self.ctx.publication,)).fetchone()
        if exists:
            conn.execute(sql.SQL("ALTER PUBLICATION {} SET TABLE {}").format(pub, tables))
        else:
            conn.execute(sql.SQL(
                "CREATE PUBLICATION {} FOR TABLE {} WITH (publish = 'insert, update, delete')"
            ).format(pub, tables))
        for shape in self.ctx.shapes.values():
            install_versions(conn, shape)
        if not conn.execute("SELECT 1 FROM pg_replication_origin WHERE roname = %s",
                            (APPLY_ORIGIN,)).fetchone():
            conn.execute("SELECT pg_replication_origin_create(%s)", (APPLY_ORIGIN,))
        self.ctx.may_fence = install_fence(conn, self.ctx.tables, self.ctx.campus, self.ctx.sets)
        self.ctx.digest_tables = install_digests(conn, self.ctx.shapes, self.ctx.digests_wanted)

    def close(self) -> None:
        ctx = self.ctx
        if ctx.reader is not None:
            ctx.reader.stop()
        for c in (ctx.apply, ctx.main):
            if c is not None:
                c.close()
        ctx.apply = ctx.main = None

    def shapes(self) -> Mapping[str, TableShape]:
        return self.ctx.shapes
