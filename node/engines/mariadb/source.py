"""The MariaDB engine's CaptureSource role: the binary log and its reader.

``start_capture`` checks that the binary log still holds the position
capture resumes from (the journal's, or for a campus that has captured
nothing yet, where the log ended when ringsync was installed) and starts
the binlog reader thread (node.engines.mariadb.binlog); ``capture`` hands
over what it read. The commit position is the end of the binary log (SHOW
MASTER STATUS): every committed transaction ends at or before it.
"""

from __future__ import annotations

import random

from node.engines.mariadb.binlog import BinlogReader, file_name, position_of
from node.engines.mariadb.connections import APPLIED_TABLE, MariaContext
from node.engines.mariadb.server import binlog_files
from node.engines.mariadb.stamps import STAMP_PREFIX
from node.model import CapturedChunk
from ringsync.errors import EngineError

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

    def start_capture(self, position: int) -> None:
        ctx = self.ctx
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
                              ctx.binlog_basename, STAMP_PREFIX)
        ctx.reader = reader
        reader.start(start, ctx.applied_vector())

    def capture(self, position: int, max_changes: int) -> list[CapturedChunk]:
        if self.ctx.reader is None:
            raise EngineError("capture was not started")
        return self.ctx.reader.take()

    def release(self, position: int) -> None:
        """Nothing to do: the server purges its binary logs by its own settings."""

    def local_recorded(self, position: int) -> None:
        """Nothing to keep in memory."""

    def captured_through(self) -> int:
        reader = self.ctx.reader
        return reader.taken_through if reader is not None else 0

    def commit_position(self) -> int:
        return master_position(self.ctx)

    def sync_release(self, acked_position: int | None) -> None:
        """MariaDB campuses have no synchronous mode."""
