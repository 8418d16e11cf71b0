"""Capture loop: move committed local transactions from the engine into the journal.

The engine hands over chunks after the journal's capture position; the
journal stores them and the new position in one transaction. Only then are
the engine's captured rows released (on the next capture call), so a crash
at any point re-reads, and the journal's gapless check makes that harmless.
"""

from __future__ import annotations

import asyncio
import logging

from node.runtime import NodeRuntime
from ringsync.errors import RingsyncError

log = logging.getLogger(__name__)

POLL_SECONDS = 0.02
ERROR_BACKOFF_SECONDS = 1.0


async def start_capture(rt: NodeRuntime) -> None:
    """Fatal on error: a missing or invalidated slot must stop the node, loudly."""
    await rt.in_capture(rt.engine.source.start_capture, rt.journal.capture_position)


async def capture_loop(rt: NodeRuntime) -> None:
    shapes = dict(rt.engine.shapes())
    max_changes = rt.config.replication.frame_max_changes
    while True:
        try:
            chunks = await rt.in_capture(rt.engine.source.capture, rt.journal.capture_position,
                                         max_changes)
            through = rt.engine.source.captured_through()
            if not chunks:
                rt.journaled_through = through
                await asyncio.sleep(POLL_SECONDS)
                continue
            done = await rt.in_journal(rt.journal.append_local, chunks, shapes, rt.clock.now,
                                       rt.sets.stamp if rt.sets.enabled else None)
            rt.journaled_through = through
            rt.captured_txns += done
            rt.database_error = ""
            rt.journal_changed.notify()
        except RingsyncError as e:
            log.error("capture failed, retrying in %.0fs: %s", ERROR_BACKOFF_SECONDS, e)
            rt.database_error = str(e)
            await asyncio.sleep(ERROR_BACKOFF_SECONDS)
        except Exception as e:  # a driver error we did not anticipate: log, carry on
            log.exception("capture failed unexpectedly, retrying: %s", e)
            rt.database_error = f"capture: {e}"
            await asyncio.sleep(ERROR_BACKOFF_SECONDS)
