"""Donor side of initial load: a consistent copy for a joining campus.

The engine opens a snapshot and says where it lies: a capture position for
this campus's own transactions and the foreign applied vector stored in the
database. The donor waits until capture has journaled everything up to that
position, then counts how many of its own transactions the snapshot holds,
so the header's vector is exact for every origin: the joiner adopts it and
takes the rest from the ring, missing nothing and applying nothing twice.

Rows travel as TxnFrames of INSERTs (origin = donor, seq 0), so the joiner
applies them through the same decode and column mapping as replication.
Then come the donor's journal frames of transactions the copy already holds:
the joiner keeps them (without applying them) because its successor may
still lack some, and in a ring only the joiner will send them on.
Engine reads run on worker threads; the snapshot stays open for the copy.

A leaf (node.leaf) copies from a parent: only its route's tables and the
rows its filters select, and no journal frames (a leaf serves nobody).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from typing import Any

from node.codec import build_frame, shapes_from_pb
from node.engines.snapshot import ReadSnapshot
from node.leaf.route import LeafRoute
from node.model import Change, Op
from node.replication.parts import NodeParts
from node.replication.resources import NodeResources
from node.replication.state import ReplicationState
from node.replication.vectors import Vector
from node.schema import compare
from ringsync.errors import JournalError, NotReady, PeerRejected
from ringsync.v1 import replication_pb2 as rpb

log = logging.getLogger(__name__)

FRAME_ROWS = 1000
BACKLOG_BATCH = 256
CATCH_UP_TIMEOUT_SECONDS = 60.0


def _next_batch(batches: Iterator[list[tuple[Any, ...]]]) -> list[tuple[Any, ...]] | None:
    return next(batches, None)


async def snapshot_vector(res: NodeResources, state: ReplicationState,
                          snap: ReadSnapshot) -> Vector:
    """The ring vector the snapshot holds (waits for capture to pass it)."""
    deadline = time.monotonic() + CATCH_UP_TIMEOUT_SECONDS
    campus = state.campus
    while state.journaled_through < snap.position:
        if time.monotonic() > deadline:
            raise JournalError(
                f"capture at {campus} has not reached the snapshot point after "
                f"{CATCH_UP_TIMEOUT_SECONDS:.0f}s ({state.database_error or 'no error reported'}"
                f"); the joining campus will retry"
            )
        await asyncio.sleep(0.05)
    own = await res.in_journal(res.journal.local_seq_through, snap.position)
    vector = {o: s for o, s in snap.applied.items() if o != campus}
    vector[campus] = own
    return vector


async def _backlog(res: NodeResources, vector: Vector) -> AsyncIterator[bytes]:
    """Journal frames of transactions the copy holds, in arrival order. The
    joiner keeps them so it can serve campuses that still lack them."""
    after = 0
    while batch := await res.in_journal(res.journal.held_upto, vector, after, BACKLOG_BATCH):
        after = batch[-1][0]
        for _, body in batch:
            if body:
                yield body


async def serve_snapshot(
    node: NodeParts, request: rpb.SnapshotRequest, peer_name: str
) -> AsyncIterator[rpb.SnapshotChunk]:
    """The snapshot stream for one joining campus (``node``: the donor's parts)."""
    res, state = node.res, node.state
    campus, engine = state.campus, res.engine
    if request.campus != peer_name:
        raise PeerRejected(
            f"snapshot requested for {request.campus!r} by a certificate for {peer_name!r}")
    if not state.initialized.is_set():
        raise NotReady(f"campus {campus} is itself joining the ring; copy from another campus")
    leaf = node.config.cluster.leaf(request.campus)
    shapes = dict(engine.shapes())
    route = None
    if leaf is not None:
        if campus not in leaf.parents:
            raise PeerRejected(f"{request.campus} is a leaf of {', '.join(leaf.parents)}, not "
                               f"of {campus}; it copies from one of its parents")
        if request.route != leaf.fingerprint:
            raise PeerRejected(f"leaf {leaf.name} asks for a copy of route "
                               f"{request.route[:20]!r} but this campus's cluster file says "
                               f"route {leaf.fingerprint}; make cluster.toml the same on the "
                               f"leaf and its parents")
        route = LeafRoute(leaf, {t: s for t, s in shapes.items() if t in leaf.tables})
    # The tables as the joiner holds them: a leaf's may be projected.
    sent_shapes = shapes if route is None else route.shapes
    compare(campus, sent_shapes, request.campus, shapes_from_pb(request.tables))
    with ExitStack() as stack:
        snap = await asyncio.to_thread(stack.enter_context, engine.inspect.snapshot())
        try:
            vector = await snapshot_vector(res, state, snap)
            counts = {t: n for t, n in (await asyncio.to_thread(snap.row_counts)).items()
                      if t in sent_shapes}
            log.info("snapshot for %s at %s: %d rows%s", request.campus, vector,
                     sum(counts.values()), " (digests only)" if request.digests_only else "")
            yield rpb.SnapshotChunk(header=rpb.SnapshotHeader(
                donor=campus, vector=rpb.Vector(seqs=vector), row_counts=counts))
            for table in sent_shapes:
                if request.digests_only:
                    rows, digest = await asyncio.to_thread(snap.digest, table)
                    yield rpb.SnapshotChunk(
                        digest=rpb.TableDigest(table=table, rows=rows, sha256=digest))
                    continue
                batches = snap.batches(table, FRAME_ROWS)
                chunk = 0
                now = dt.datetime.now(dt.UTC)
                while (batch := await asyncio.to_thread(_next_batch, batches)) is not None:
                    if route is not None:
                        batch = route.initial_rows(table, shapes[table].columns, batch, now)
                    frame = build_frame(campus, 0, chunk, False, 0.0,
                                        [Change(table, Op.INSERT, new=row) for row in batch],
                                        sent_shapes)
                    chunk += 1
                    yield rpb.SnapshotChunk(frame=frame.SerializeToString())
            if route is not None:
                return  # a leaf serves nobody: it needs no journal frames
            async for body in _backlog(res, vector):
                yield rpb.SnapshotChunk(journal_frame=body)
        finally:
            # Close the read transaction off the event loop.
            await asyncio.to_thread(stack.pop_all().close)
