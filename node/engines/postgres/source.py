"""The PostgreSQL engine's CaptureSource role: the logical slot and its reader.

``start_capture`` creates the campus's slot at first start (or refuses a
slot that is gone or invalidated) and starts the pgoutput reader thread
(node.engines.postgres.capture); ``capture`` hands over what it decoded.
``commit_position`` and ``sync_release`` are what the DR agent and
synchronous mode (node.engines.postgres.sync) ask of capture.
"""

from __future__ import annotations

import psycopg

from node.engines.postgres import pgoutput as po
from node.engines.postgres import sync as pgsync
from node.engines.postgres.capture import PgoutputReader
from node.engines.postgres.connections import PgContext
from node.model import CapturedChunk
from ringsync.errors import EngineError


class PgCaptureSource:
    """The campus's own committed transactions, from its logical slot."""

    def __init__(self, ctx: PgContext) -> None:
        self.ctx = ctx

    def start_capture(self, position: int) -> None:
        ctx = self.ctx
        row = ctx.conn.execute(
            "SELECT wal_status, confirmed_flush_lsn::text FROM pg_replication_slots "
            "WHERE slot_name = %s", (ctx.slot,)
        ).fetchone()
        if row is None:
            if position:
                raise EngineError(
                    f"replication slot {ctx.slot} is gone (dropped while the node was down), "
                    f"so changes made since may be lost; this campus needs a re-sync. "
                    f"Do not delete the journal; see docs/design.md"
                )
            ctx.conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')",
                             (ctx.slot,))
        elif row[0] == "lost":
            raise EngineError(
                f"replication slot {ctx.slot} was invalidated (its WAL was removed, see "
                f"max_slot_wal_keep_size); this campus needs a re-sync"
            )
        reader = PgoutputReader(ctx.dsn, ctx.slot, ctx.publication, ctx.shape_of,
                                ctx.frame_max_changes)
        ctx.reader = reader
        if ctx.sync:  # commits wait for a peer's acknowledgement from the start
            reader.standby_name, reader.sync = pgsync.standby_name(ctx.campus), True
        reader.start(position, ctx.applied_vector())

    def sync_release(self, acked_position: int | None) -> None:
        """Sync mode: commits up to ``acked_position`` may return (a peer holds every
        local transaction up to it); None: stop waiting for peers (degraded)."""
        reader = self.ctx.reader
        if reader is not None and self.ctx.sync:
            if acked_position is not None:
                reader.acked_end = max(reader.acked_end, acked_position)
            reader.sync = acked_position is not None

    def capture(self, position: int, max_changes: int) -> list[CapturedChunk]:
        """Chunks the slot reader decoded (it chunks by ``frame_max_changes`` itself)."""
        if self.ctx.reader is None:
            raise EngineError("capture was not started")
        return self.ctx.reader.take(position)

    def release(self, position: int) -> None:
        """Nothing to do here: ``capture(position)`` reports the flush position."""

    def local_recorded(self, position: int) -> None:
        """Nothing to keep: apply tells unrecorded local changes by xmin."""

    def captured_through(self) -> int:
        reader = self.ctx.reader
        return reader.taken_through if reader is not None else 0

    def commit_position(self) -> int:
        """The WAL insert position, read in a transaction that then commits
        with a local flush.

        Not pg_current_wal_lsn() (the write position): with synchronous_commit
        = off a commit is visible before its WAL is written, so that can be
        behind a committed transaction's end LSN, while every commit record
        inserted so far ends at or before the insert position. The insert
        position itself may lie in WAL nobody flushes soon (a running
        autovacuum, an open transaction), which logical decoding, reading only
        flushed WAL, would not pass; this transaction's own commit (it takes
        an xid) flushes everything before it, so capture's
        ``captured_through`` reaches the position. The reader is asked for
        keepalives until it does, as for a snapshot."""
        ctx = self.ctx
        try:
            ctx.ensure_connected()
            with ctx.conn.transaction():
                ctx.conn.execute("SET LOCAL synchronous_commit = local")
                row = ctx.conn.execute("SELECT pg_current_wal_insert_lsn()::text, "
                                       "txid_current()").fetchone()
        except psycopg.Error as e:
            raise EngineError(f"cannot read the WAL position on PostgreSQL: {e}") from e
        assert row is not None
        position = po.str_to_lsn(row[0])
        if ctx.reader is not None:
            ctx.reader.wanted = max(ctx.reader.wanted, position)
        return position
