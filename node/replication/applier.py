"""Applier: commit foreign transactions from the journal into the campus database.

Walks the journal in arrival order (a causal order: a campus journals what
it received before it captures what its users then wrote), skipping its own
origin and whatever the applied vector already holds. Transactions are
applied whole, in order per origin, several per database transaction, and
the applied vector is advanced inside that same database transaction.
A transaction whose final frame has not arrived yet stops the walk until it
does, so nothing is ever applied half or out of order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from node.codec import decode_changes
from node.engines.base import Engine
from node.model import Change, TableShape
from node.replication.journal import Journal
from node.runtime import NodeRuntime
from ringsync.errors import EngineError, ProtocolError, RingsyncError
from ringsync.v1 import values_pb2 as pb

log = logging.getLogger(__name__)

MAX_TXNS_PER_COMMIT = 256
MAX_FRAMES_PER_READ = 1024
MAX_BYTES_PER_READ = 8 << 20
IDLE_WAIT_SECONDS = 0.5
RETRY_MIN_SECONDS = 0.2
RETRY_MAX_SECONDS = 10.0


@dataclass(slots=True)
class PlannedTxn:
    origin: str
    seq: int
    body: bytes | None  # the only frame; None: several, streamed from the journal
    rows: int


def to_local_order(
    frame_shapes: list[TableShape], changes: list[Change], local: Mapping[str, TableShape]
) -> list[Change]:
    """Reorder values from the sender's column order into the local one."""
    mapping: dict[str, list[int] | None] = {}
    for shape in frame_shapes:
        mine = local.get(shape.name)
        if mine is None:
            raise EngineError(
                f"received a change to table {shape.name!r}, which this campus does not "
                f"replicate; make cluster.tables the same on every campus"
            )
        if shape.columns == mine.columns:
            mapping[shape.name] = None
            continue
        try:
            mapping[shape.name] = [shape.columns.index(c) for c in mine.columns]
        except ValueError as e:
            missing = sorted(set(mine.columns) - set(shape.columns))
            raise EngineError(
                f"table {shape.name!r} differs between campuses: the sender lacks columns "
                f"{missing}; align the schemas"
            ) from e
    if all(m is None for m in mapping.values()):
        return changes
    out = []
    for c in changes:
        order = mapping[c.table]
        if order is None:
            out.append(c)
            continue
        new = tuple(c.new[i] for i in order) if c.new is not None else None
        old = tuple(c.old[i] for i in order) if c.old is not None else None
        out.append(Change(c.table, c.op, new, old))
    return out


def apply_planned(engine: Engine, journal: Journal, plan: list[PlannedTxn]) -> None:
    """Apply planned transactions in one database transaction (engine thread).

    A multi-frame transaction is read from the journal frame by frame, so
    memory stays bounded however large it is.
    """
    local = engine.shapes()
    with engine.apply_session() as session:
        for txn in plan:
            bodies = [txn.body] if txn.body is not None else journal.iter_frames(
                txn.origin, txn.seq)
            for body in bodies:
                frame = pb.TxnFrame.FromString(body)
                shapes, changes = decode_changes(frame)
                session.apply(to_local_order(shapes, changes, local))
            session.advance(txn.origin, txn.seq)


class Applier:
    def __init__(self, rt: NodeRuntime) -> None:
        self.rt = rt
        self.cursor = 0

    async def run(self) -> None:
        rt = self.rt
        rt.applied = await rt.in_engine(rt.engine.applied_vector)
        start = dict(rt.applied)
        start[rt.campus] = rt.journal.vector().get(rt.campus, 0)
        self.cursor = await rt.in_journal(rt.journal.start_pos, start)
        delay = RETRY_MIN_SECONDS
        while True:
            ticket = rt.journal_changed.ticket()
            try:
                plan, cursor = await rt.in_journal(self._plan)
                if not plan:
                    self.cursor = cursor
                    await rt.journal_changed.wait(ticket, IDLE_WAIT_SECONDS)
                    continue
                await rt.in_engine(apply_planned, rt.engine, rt.journal, plan)
            except (RingsyncError, ProtocolError) as e:
                rt.apply_error = str(e)
                log.error("apply failed, retrying in %.1fs: %s", delay, e)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)
                continue
            except Exception as e:  # driver errors: keep the node alive, retry later
                rt.apply_error = f"{type(e).__name__}: {e}"
                log.exception("apply failed unexpectedly, retrying in %.1fs", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)
                continue
            delay = RETRY_MIN_SECONDS
            rt.apply_error = ""
            for txn in plan:
                rt.applied[txn.origin] = txn.seq
            rt.applied_txns += len(plan)
            self.cursor = cursor
            rt.applied_changed.notify()

    def _plan(self) -> tuple[list[PlannedTxn], int]:
        """Collect the next complete transactions to apply (journal thread)."""
        rt = self.rt
        journal = rt.journal
        heads = journal.vector()
        applied = dict(rt.applied)
        plan: list[PlannedTxn] = []
        cursor = self.cursor
        for entry in journal.entries_after(cursor, MAX_FRAMES_PER_READ, MAX_BYTES_PER_READ,
                                           only_whole_bodies=True):
            if entry.origin == rt.campus or entry.seq <= applied.get(entry.origin, 0):
                cursor = entry.pos
                continue
            if entry.seq > heads.get(entry.origin, 0):
                break  # its final frame has not arrived yet
            if entry.seq != applied.get(entry.origin, 0) + 1:
                raise ProtocolError(
                    f"journal holds {entry.origin}/{entry.seq} but {applied.get(entry.origin, 0)} "
                    f"is the last applied; the journal is inconsistent"
                )
            body = entry.body if entry.final and entry.chunk == 0 else None
            plan.append(PlannedTxn(entry.origin, entry.seq, body, entry.nchanges))
            applied[entry.origin] = entry.seq
            cursor = entry.pos
            if len(plan) >= MAX_TXNS_PER_COMMIT:
                break
        return plan, cursor
