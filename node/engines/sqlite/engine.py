"""SQLite campus engine: trigger capture into a change log, batched apply.

SQLiteEngine opens and closes the database (reads the replicated tables'
shapes, installs ringsync's tables, the capture triggers, version tables
and fence) and holds one object per role, all sharing one SQLiteContext
(node.engines.sqlite.connections): ``source`` (node.engines.sqlite.source),
``target`` (apply), ``fence`` (fence), ``store`` (versions), ``inspect``
(inspection) and ``verifier`` (verification).

Capture. Triggers on every replicated table append to ``_rs_log`` (one row
per changed row, in commit order) and store the old and new images in
``_rs_img_<table>``, inside the application's own transaction. SQLite has no
transaction id, so the triggers number transactions themselves: the first
change after the node's last capture bumps ``_rs_state.tx`` and clears
``claimed``; capture reads under ``BEGIN IMMEDIATE`` (so no writer is half
way through) and sets ``claimed`` again. A captured transaction is therefore
one or more consecutive committed application transactions, never a part of
one. ``AUTOINCREMENT`` keeps log ids from ever being reused after release.

Apply. Foreign changes are applied with ``_rs_state.applying = 1`` set inside
the same transaction, so the triggers skip them: applied rows are never
re-captured as local. The applied vector (``_rs_applied``) is written in the
same transaction as the rows.

Fencing (node.engines.sqlite.fence). BEFORE triggers refuse application
writes once ``_rs_fence.writable_until`` has passed; apply sessions
(``applying = 1``) pass. A single-writer set's tables are guarded by the
set's row in ``_rs_set_fence`` instead: writable only while it is open.

Verification digests (node.engines.sqlite.digests), with ``[verify]
incremental``: triggers log the keys every write touches; the verifier
folds them into kept bucket digests.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from node.engines.sqlite.apply import SQLiteApplyTarget
from node.engines.sqlite.connections import SQLiteContext, write_transaction
from node.engines.sqlite.digests import install_digests
from node.engines.sqlite.fence import SQLiteFence, install_fence
from node.engines.sqlite.inspection import SQLiteInspection
from node.engines.sqlite.snapshot import q
from node.engines.sqlite.source import SQLiteCaptureSource, install_capture
from node.engines.sqlite.verifying import SQLiteVerifier
from node.engines.sqlite.versions import SQLiteConflictStore, install_versions
from node.model import TableShape
from node.schema import sqlite_kind
from ringsync.errors import EngineError, SchemaError

log = logging.getLogger(__name__)

INTERNAL_DDL = """
CREATE TABLE IF NOT EXISTS _rs_state(
    id INTEGER PRIMARY KEY CHECK (id = 1),
    tx INTEGER NOT NULL,
    claimed INTEGER NOT NULL,
    applying INTEGER NOT NULL,
    fenced INTEGER NOT NULL DEFAULT 0
);
INSERT OR IGNORE INTO _rs_state(id, tx, claimed, applying) VALUES (1, 0, 1, 0);
CREATE TABLE IF NOT EXISTS _rs_log(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tx INTEGER NOT NULL,
    tbl TEXT NOT NULL,
    op TEXT NOT NULL,
    ts REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS _rs_applied(origin TEXT PRIMARY KEY, seq INTEGER NOT NULL,
                                       changes INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS _rs_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class SQLiteEngine:
    name = "sqlite"

    def __init__(self, path: Path, tables: tuple[str, ...], campus: str,
                 sets: Mapping[str, str] | None = None, digests: bool = False) -> None:
        self.ctx = SQLiteContext(path, tables, campus, sets)
        self.ctx.digests_wanted = digests
        self.source = SQLiteCaptureSource(self.ctx)
        self.target = SQLiteApplyTarget(self.ctx)
        self.fence = SQLiteFence(self.ctx)
        self.store = SQLiteConflictStore(self.ctx)
        self.inspect = SQLiteInspection(self.ctx)
        self.verifier = SQLiteVerifier(self.ctx)

    @property
    def description(self) -> str:
        return str(self.ctx.path)

    # -- lifecycle -------------------------------------------------------

    def open(self) -> None:
        ctx = self.ctx
        if not ctx.path.exists():
            raise EngineError(
                f"SQLite database {ctx.path} does not exist; create it with the application "
                f"schema first (ringsync never creates application tables)"
            )
        ctx.main = ctx.connect()
        ctx.shapes = {t: self._read_shape(t) for t in ctx.tables}
        self._install()
        ctx.capture = ctx.connect()

    def close(self) -> None:
        ctx = self.ctx
        for conn in (ctx.capture, ctx.main):
            if conn is not None:
                conn.close()
        ctx.main = ctx.capture = None

    def shapes(self) -> Mapping[str, TableShape]:
        return self.ctx.shapes

    def _read_shape(self, table: str) -> TableShape:
        path = self.ctx.path
        info = self.ctx.conn.execute(f"PRAGMA table_info({q(table)})").fetchall()
        if not info:
            raise SchemaError(
                f"table {table!r} is listed in cluster.tables but does not exist in {path}; "
                f"create it with the same schema as the other campuses, or remove it from the list"
            )
        columns = tuple(row[1] for row in info)
        pk = sorted((row[5], i) for i, row in enumerate(info) if row[5] > 0)
        if not pk:
            raise SchemaError(
                f"table {table!r} in {path} has no primary key, so its rows cannot be "
                f"matched across campuses; recreate it with a PRIMARY KEY (SQLite cannot add one "
                f"with ALTER TABLE) or remove it from cluster.tables"
            )
        kinds = tuple(sqlite_kind(row[2] or "") for row in info)
        return TableShape(table, columns, tuple(i for _, i in pk), kinds)

    def _install(self) -> None:
        with write_transaction(self.ctx.conn) as conn:
            for statement in INTERNAL_DDL.split(";"):
                if statement.strip():
                    conn.execute(statement)
            row = conn.execute("SELECT value FROM _rs_meta WHERE key = 'campus'").fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO _rs_meta(key, value) VALUES ('campus', ?)", (self.ctx.campus,)
                )
            elif row[0] != self.ctx.campus:
                raise EngineError(
                    f"{self.ctx.path} belongs to campus {row[0]!r}, not {self.ctx.campus!r}; "
                    f"point each node at its own campus database"
                )
            if "changes" not in [r[1] for r in conn.execute("PRAGMA table_info(_rs_applied)")]:
                conn.execute("ALTER TABLE _rs_applied ADD COLUMN changes INTEGER NOT NULL "
                             "DEFAULT 0")
            for shape in self.ctx.shapes.values():
                install_capture(conn, shape)
                install_versions(conn, shape)
            install_fence(conn, self.ctx.shapes.values(), self.ctx.campus, self.ctx.sets)
            self.ctx.digest_tables = install_digests(conn, self.ctx.shapes,
                                                     self.ctx.digests_wanted)
