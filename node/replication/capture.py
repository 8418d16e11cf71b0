"""Capture loop: move committed local transactions from the engine into the journal.

The engine hands over chunks after the journal's capture position; the
journal stores them and the new position in one transaction. Only then are
the engine's captured rows released (on the next capture call), so a crash
at any point re-reads, and the journal's gapless check makes that harmless.
"""

from __future__ import annotations

import asyncio
import logging

from node.dr.sets import SetGuard
from node.hlc import HybridClock
from node.replication.resources import NodeResources
from node.replication.state import ReplicationState
from ringsync.config import NodeConfig
from ringsync.errors import RingsyncError

log = logging.getLogger(__name__)

POLL_SECONDS = 0.02
ERROR_BACKOFF_SECONDS = 1.0


async def start_capture(res: NodeResources) -> None:
    """Fatal on error: a missing or invalidated slot must stop the node, loudly."""
    await res.in_capture(res.engine.source.start_capture, res.journal.capture_position)


async def capture_loop(config: NodeConfig, res: NodeResources, state: ReplicationState,
                       sets: SetGuard, clock: HybridClock) -> None:
    """Journal local transactions as they commit (``clock`` dates them, ``sets``
    stamps them with their set's epoch); progress and errors go to ``state``."""
    engine, journal = res.engine, res.journal
    shapes = dict(engine.shapes())
    max_changes = config.replication.frame_max_changes
    while True:
        try:
            chunks = await res.in_capture(engine.source.capture, journal.capture_position,
                                          max_changes)
            through = engine.source.captured_through()
            if not chunks:
                state.journaled_through = through
                await asyncio.sleep(POLL_SECONDS)
                continue
            done = await res.in_journal(journal.append_local, chunks, shapes, clock.now,
                                        sets.stamp if sets.enabled else None)
            state.journaled_through = through
            state.captured_txns += done
            state.database_error = ""
            res.journal_changed.notify()
        except RingsyncError as e:
            log.error("capture failed, retrying in %.0fs: %s", ERROR_BACKOFF_SECONDS, e)
            state.database_error = str(e)
            await asyncio.sleep(ERROR_BACKOFF_SECONDS)
        except Exception as e:  # a driver error we did not anticipate: log, carry on
            log.exception("capture failed unexpectedly, retrying: %s", e)
            state.database_error = f"capture: {e}"
            await asyncio.sleep(ERROR_BACKOFF_SECONDS)
