"""MariaDB campus engine: binlog capture, batched apply, trigger fences.

MariaEngine opens and closes the database: it checks what the server must
offer (node.engines.mariadb.server), reads the replicated tables' shapes
(shapes), installs ringsync's own tables (tables), the fence guards
(fence), the row stamps (stamps) and the version tables (versions), and
remembers where the binary log ended at the first install, so capture
starts there. It holds one object per role, all sharing one MariaContext
(connections): ``source`` (the binlog reader), ``target`` (apply
sessions), ``fence``, ``store`` (the conflict log, dead letters, an
operator's local write), ``inspect`` (health, rows, checksums, snapshots)
and ``verifier``. docs/mariadb.md says what a server needs and what is
not there yet.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

import pymysql

from node.engines.mariadb.apply import MariaApplyTarget
from node.engines.mariadb.connections import (
    DEFAULT_APPLY_DOMAIN,
    START_PATIENCE_SECONDS,
    START_RETRY_SECONDS,
    TRANSIENT_CONNECT_ERRORS,
    MariaContext,
)
from node.engines.mariadb.fence import MariaFence, install_fence
from node.engines.mariadb.inspection import MariaInspection
from node.engines.mariadb.server import check_server
from node.engines.mariadb.shapes import read_tables
from node.engines.mariadb.source import MariaCaptureSource, master_position
from node.engines.mariadb.stamps import install_stamps
from node.engines.mariadb.tables import INTERNAL_DDL
from node.engines.mariadb.verifying import MariaVerifier
from node.engines.mariadb.versions import MariaConflictStore, install_versions
from node.model import TableShape
from ringsync.errors import EngineError

log = logging.getLogger(__name__)

CAPTURE_START = "capture_start"


class MariaEngine:
    name = "mariadb"

    def __init__(self, url: str, tables: tuple[str, ...], campus: str,
                 frame_max_changes: int = 2000, sets: Mapping[str, str] | None = None,
                 apply_domain: int = DEFAULT_APPLY_DOMAIN) -> None:
        self.ctx = MariaContext(url, tables, campus, frame_max_changes, sets, apply_domain)
        self.source = MariaCaptureSource(self.ctx)
        self.target = MariaApplyTarget(self.ctx)
        self.inspect = MariaInspection(self.ctx)
        self.store = MariaConflictStore(self.ctx)
        self.fence = MariaFence(self.ctx)
        self.verifier = MariaVerifier(self.ctx)

    @property
    def description(self) -> str:
        return self.ctx.description

    def open(self) -> None:
        """Connect, check the server, read the tables and install. A server
        that goes away meanwhile (killed, restarting: the node was started
        beside it) is waited for within the start patience and the whole
        start made again (every step may run twice); anything else fails."""
        deadline = time.monotonic() + START_PATIENCE_SECONDS
        while True:
            try:
                self._open_once(max(1.0, deadline - time.monotonic()))
                return
            except (EngineError, pymysql.err.OperationalError) as e:
                cause = e.__cause__ if isinstance(e, EngineError) else e
                code = (cause.args[0] if isinstance(cause, pymysql.err.MySQLError) and cause.args
                        else None)
                if code not in TRANSIENT_CONNECT_ERRORS or time.monotonic() > deadline:
                    raise
                log.warning("MariaDB at %s went away while the node was starting (%s); "
                            "starting again", self.ctx.description, e)
                self.close()
                time.sleep(START_RETRY_SECONDS)

    def _open_once(self, patience: float) -> None:
        ctx = self.ctx
        ctx.main = ctx.connect_at_start(patience)
        check_server(ctx.main, ctx.url.database, ctx.description)
        ctx.tables_read = read_tables(ctx.main, ctx.url.database, ctx.tables, ctx.description)
        ctx.shapes = {name: t.shape for name, t in ctx.tables_read.items()}
        basename = str(ctx.query("SELECT @@log_bin_basename")[0][0])
        ctx.binlog_basename = basename.rsplit("/", 1)[-1]
        self._install()
        ctx.apply = ctx.connect_apply()

    def close(self) -> None:
        ctx = self.ctx
        if ctx.reader is not None:
            ctx.reader.stop()
            ctx.reader = None
        for conn in (ctx.apply, ctx.main):
            if conn is not None and conn.open:
                conn.close()
        ctx.apply = ctx.main = None

    def shapes(self) -> Mapping[str, TableShape]:
        return self.ctx.shapes

    def _install(self) -> None:
        ctx = self.ctx
        for statement in INTERNAL_DDL:
            ctx.query(statement)
        install_fence(ctx)
        for shape in ctx.shapes.values():
            install_stamps(ctx.conn, shape)
            install_versions(ctx.conn, shape)
        meta = dict(ctx.query("SELECT name, value FROM _rs_meta"))
        owner = meta.get("campus")
        if owner is None:
            ctx.query("INSERT INTO _rs_meta(name, value) VALUES ('campus', %s)", (ctx.campus,))
        elif owner != ctx.campus:
            raise EngineError(f"{ctx.description} belongs to campus {owner!r}, not "
                              f"{ctx.campus!r}; point each node at its own campus database")
        if CAPTURE_START not in meta:
            # Capture of a campus that has journaled nothing starts where the
            # log ended when ringsync was installed: what came before is the
            # data an initial load or a join compares, not changes to send.
            start = master_position(ctx)
            ctx.query("INSERT INTO _rs_meta(name, value) VALUES (%s, %s)",
                      (CAPTURE_START, str(start)))
            meta[CAPTURE_START] = str(start)
        ctx.capture_start = int(meta[CAPTURE_START])
