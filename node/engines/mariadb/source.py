"""The MariaDB engine's CaptureSource role: the binary log and its reader.

``start_capture`` checks that the binary log still holds the position
capture resumes from (the journal's, or for a campus that has captured
nothing yet, where the log ended when ringsync was installed) and starts
the binlog reader thread (node.engines.mariadb.binlog); ``capture`` hands
over what it read. The commit position is the end of the binary log (SHOW
MASTER STATUS): every committed transaction ends at or before it.

A change capture cannot convert (a zero date, an integer beyond what
travels) is not sent: before the chunks it was read with are handed over,
it is written to the campus's dead-letter queue in state ``rejected``
(node.conflicts.deadletter.rejected_entry), and capture goes on.
"""

from __future__ import annotations

import logging
import random

import pymysql

from node.conflicts.deadletter import rejected_entry
from node.engines.mariadb.binlog import BinlogReader, file_name, position_of
from node.engines.mariadb.binlog_rows import Rejected
from node.engines.mariadb.connections import APPLIED_TABLE, Cursor, MariaContext
from node.engines.mariadb.server import binlog_files
from node.engines.mariadb.stamps import STAMP_PREFIX
from node.engines.mariadb.tables import DLQ
from node.model import CapturedChunk
from ringsync.errors import EngineError

log = logging.getLogger(__name__)

# The reader's server_id as a replica of the campus server: MariaDB ends an
# older dump thread with the same id, so every start takes a fresh one.
READER_SERVER_IDS = (1 << 30, (1 << 31) - 1)


def master_position(ctx: MariaContext) -> int:
    rows = ctx.query("SHOW MASTER STATUS")
    if not rows:
        raise EngineError(f"MariaDB at {ctx.description} has no binary log (log_bin is OFF)")
    return position_of(str(rows[0][0]), int(rows[0][1]))


class MariaCaptureSource:
    """The campus's own committed transactions, from the binary log."""

    def __init__(self, ctx: MariaContext) -> None:
        self.ctx = ctx
        # chunks taken but held back until their rejections are stored, and
        # what captured_through said before them
        self._held: list[CapturedChunk] = []
        self._held_through: int | None = None

    def start_capture(self, position: int) -> None:
        ctx = self.ctx
        self._held, self._held_through = [], None  # read again from ``position``
        start = position or ctx.capture_start
        wanted = file_name(ctx.binlog_basename, start)
        assert ctx.main is not None
        kept = binlog_files(ctx.main)
        if wanted not in kept:
            raise EngineError(
                f"MariaDB at {ctx.description} no longer has binary log {wanted}, where this "
                f"campus's capture resumes (oldest kept: {kept[0] if kept else 'none'}): "
                f"it was purged, so local changes made since are lost to replication. Keep "
                f"binary logs longer (binlog_expire_logs_seconds) and re-join this campus "
                f"(docs/mariadb.md, Re-joining)")
        reader = BinlogReader(ctx.url.settings(), ctx.url.database, frozenset(ctx.shapes),
                              ctx.decode, APPLIED_TABLE, ctx.apply_domain,
                              ctx.frame_max_changes, random.randint(*READER_SERVER_IDS),
                              ctx.binlog_basename, STAMP_PREFIX,
                              decode_lenient=ctx.decode_lenient)
        ctx.reader = reader
        reader.start(start, ctx.applied_vector())

    def capture(self, position: int, max_changes: int) -> list[CapturedChunk]:
        reader = self.ctx.reader
        if reader is None:
            raise EngineError("capture was not started")
        through = reader.taken_through  # before this take
        chunks = self._held + reader.take()
        self._held = []
        # after take: every rejection of a transaction taken is recorded by now
        rejected = reader.rows.take_rejected()
        if rejected and not self._keep_rejected(rejected):
            # not handed over before their rejections are stored: the journal's
            # position must not pass a change kept nowhere
            self._held = chunks
            if self._held_through is None:
                self._held_through = through
            return []
        self._held_through = None
        return chunks

    def _keep_rejected(self, rejected: list[Rejected]) -> bool:
        """Write rejected changes to the dead-letter queue (once each, even if
        capture reads them again after a restart), on a connection of capture's
        own. False when the server refused: they are put back for the next call."""
        ctx = self.ctx
        try:
            conn = ctx.connect()
            try:
                db = Cursor(conn.cursor())
                for r in rejected:
                    entry = rejected_entry(ctx.campus, r.change, ctx.shapes, r.error, r.at)
                    if not DLQ.holds(db, ctx.campus, entry[3], entry[4], entry[7]):
                        db.execute(DLQ.insert_sql(), entry)
            finally:
                conn.close()
            return True
        except (EngineError, pymysql.err.MySQLError) as e:
            log.error("could not keep %d change(s) capture rejected in the dead-letter queue "
                      "yet; capture waits and tries again: %s", len(rejected), e)
            if ctx.reader is not None:
                ctx.reader.rows.keep_rejected(rejected)
            return False

    def release(self, position: int) -> None:
        """Nothing to do: the server purges its binary logs by its own settings."""

    def local_recorded(self, position: int) -> None:
        """Nothing to keep in memory."""

    def captured_through(self) -> int:
        if self._held_through is not None:
            return self._held_through
        reader = self.ctx.reader
        return reader.taken_through if reader is not None else 0

    def commit_position(self) -> int:
        return master_position(self.ctx)

    def sync_release(self, acked_position: int | None) -> None:
        """MariaDB campuses have no synchronous mode."""
