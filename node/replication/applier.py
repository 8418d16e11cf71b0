"""Applier: commit foreign transactions from the journal into the campus database.

Walks the journal in arrival order (a causal order: a campus journals what
it received before it captures what its users then wrote), skipping its own
origin and whatever the applied vector already holds. Transactions are
applied whole, in order per origin, several per database transaction, and
the applied vector is advanced inside that same database transaction.
A transaction whose final frame has not arrived yet stops the walk until it
does, so nothing is ever applied half or out of order.

Every change goes through node.conflicts: a foreign change is resolved
against the row's recorded versions, and this campus's own journaled
transactions have their versions recorded first, in the same database
transaction (the applied vector's entry for this campus says how far).
A foreign change to a row with a local change not journaled yet waits
(``PendingLocalChange``) until capture has journaled it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from node.codec import decode_changes
from node.conflicts.deadletter import apply_guarded
from node.conflicts.driver import PendingLocalChange, Resolver, TxnInfo
from node.dr.sets import SetGuard, Verdict, reconcile_sets, stale_entry
from node.engines.base import Engine
from node.model import Change, TableShape
from node.replication.journal import Journal
from node.runtime import NodeRuntime
from ringsync.errors import EngineError, ProtocolError, RingsyncError
from ringsync.v1 import values_pb2 as pb

log = logging.getLogger(__name__)

MAX_TXNS_PER_COMMIT = 2048
MAX_FRAMES_PER_READ = 2048
MAX_BYTES_PER_READ = 8 << 20
IDLE_WAIT_SECONDS = 0.5
RETRY_MIN_SECONDS = 0.2
RETRY_MAX_SECONDS = 10.0


PENDING_WAIT_SECONDS = 0.05
SET_WAIT_SECONDS = 0.2
# Tries of a transaction that fails alone before its failing changes are
# dead-lettered: 0.2 + 0.4 + 0.8 + 1.6 s of backoff, a few seconds in all.
MAX_ATTEMPTS = 5
PENDING_WARN_EVERY = 100


@dataclass(slots=True)
class PlannedTxn:
    origin: str
    seq: int
    body: bytes | None  # the only frame; None: several, streamed from the journal
    rows: int
    local: bool = False
    position: int | None = None
    xid: int | None = None


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


class SetWriterWait(RingsyncError):
    """A transaction of a single-writer set cannot be judged yet (node.dr.sets):
    the plan's first ``index`` transactions may go, this one waits."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(reason)
        self.index = index


def apply_planned(engine: Engine, journal: Journal, resolver: Resolver,
                  plan: list[PlannedTxn], isolate: bool = False,
                  sets: SetGuard | None = None) -> tuple[int, int]:
    """Apply planned transactions in one database transaction (engine thread);
    return (conflicts logged, changes parked in the dead-letter queue).

    Transactions go to the resolver together (``apply_many``: one read and
    one write per table run, not per transaction; this campus's own ones to
    record their versions, then remote ones) unless a row is parked in the
    dead-letter queue (remote ones then go one by one, so changes to the
    parked rows wait behind them) or ``isolate`` asks for change-by-change
    savepoints. A multi-frame transaction is read from the journal frame by
    frame, so memory stays bounded however large it is. The applied vector
    moves once per origin, to the last transaction of the batch.
    """
    local = engine.shapes()
    logged = parked = 0
    alerts: list[tuple[int, str]] = []  # stale set changes parked (counted once committed)
    with engine.apply_session() as session:
        blocked = session.parked_keys()
        # Own transactions first: once their versions are recorded (and the
        # session told so by advance), remote changes to those rows may go.
        for part in ([t for t in plan if t.local], [t for t in plan if not t.local]):
            advances: dict[str, _Advance] = {}
            group: list[tuple[TxnInfo, list[Change]]] = []
            for index, txn in enumerate(part):
                bodies = [txn.body] if txn.body is not None else journal.iter_frames(
                    txn.origin, txn.seq)
                applied = 0
                for body in bodies:
                    info, changes, epochs = _decode(body, txn, local)
                    if sets is not None and not txn.local and (epochs or sets.enabled):
                        epochs = sets.stamps_of(changes, epochs) if sets.enabled else epochs
                        changes, stale = _judge_sets(sets, info, changes, epochs, index)
                        if stale:
                            session.park([stale_entry(info, c, local, why) for c, why in stale])
                            parked += len(stale)
                            alerts.append((len(stale), f"parked {len(stale)} change(s) of "
                                           f"{info.origin}/{info.seq}: {stale[0][1]}"))
                    if not isolate and txn.body is not None and (txn.local or not blocked):
                        group.append((info, changes))
                        applied += len(changes)
                        continue
                    if group:
                        logged += resolver.apply_many(session, group)
                        group = []
                    done = apply_guarded(resolver, session, info, changes, blocked, isolate)
                    logged, parked = logged + done[0], parked + done[1]
                    applied += len(changes) - done[1]
                advances.setdefault(txn.origin, _Advance()).add(txn, applied)
            if group:
                logged += resolver.apply_many(session, group)
            for origin, adv in advances.items():
                session.advance(origin, adv.seq, adv.position, adv.changes)
    for count, text in alerts:
        assert sets is not None
        sets.stale_parked += count
        sets.alert(text)
    return logged, parked


def _decode(body: bytes, txn: PlannedTxn, local: Mapping[str, TableShape],
            ) -> tuple[TxnInfo, list[Change], dict[str, int]]:
    frame = pb.TxnFrame.FromString(body)
    shapes, changes = decode_changes(frame)
    info = TxnInfo(frame.origin, frame.seq, frame.hlc, dict(frame.deps), txn.local,
                   txn.position, txn.xid)
    return info, to_local_order(shapes, changes, local), dict(frame.set_epochs)


def _judge_sets(sets: SetGuard, info: TxnInfo, changes: list[Change], epochs: dict[str, int],
                index: int) -> tuple[list[Change], list[tuple[Change, str]]]:
    """Split a foreign frame's changes into those to apply and the stale ones
    of single-writer sets (to park); raise SetWriterWait when undecidable."""
    reasons: dict[str, str] = {}
    for name, epoch in epochs.items():
        verdict, why = sets.verdict(name, info.origin, epoch, info.seq)
        if verdict is Verdict.WAIT:
            raise SetWriterWait(index, f"{info.origin}/{info.seq} of set {name}: {why}")
        if verdict is Verdict.PARK:
            reasons[name] = why
    if not reasons:
        return changes, []
    keep, stale = [], []
    for change in changes:
        name = sets.set_of_table.get(change.table, "")
        if name in reasons:
            stale.append((change, reasons[name]))
        else:
            keep.append(change)
    return keep, stale


@dataclass(slots=True)
class _Advance:
    """How far one origin's applied entry moves in this batch."""

    seq: int = 0
    position: int | None = None  # local: the capture position now recorded
    changes: int = 0             # remote: changes applied (accounting)

    def add(self, txn: PlannedTxn, applied: int) -> None:
        self.seq = txn.seq
        if txn.local:
            if txn.position is not None:
                self.position = max(self.position or 0, txn.position)
        else:
            self.changes += applied


class Applier:
    def __init__(self, rt: NodeRuntime) -> None:
        self.rt = rt
        self.cursor = 0
        self.attempts: dict[tuple[str, int], int] = {}  # failed tries of a lone transaction
        self.one_at_a_time = False  # after a failed batch: find the transaction that fails
        # Not None: the next plan takes at most this many foreign transactions
        # (it stops before one of a single-writer set that must wait).
        self.remote_limit: int | None = None

    async def run(self) -> None:
        rt = self.rt
        rt.applied = await rt.in_engine(rt.engine.applied_vector)
        await self._start_recording()
        start = dict(rt.applied)
        start[rt.campus] = rt.journal.vector().get(rt.campus, 0)
        self.cursor = await rt.in_journal(rt.journal.start_pos, start)
        delay = RETRY_MIN_SECONDS
        waits = 0
        while True:
            ticket = rt.journal_changed.ticket()
            plan: list[PlannedTxn] = []
            head = ("", 0)
            try:
                if rt.sets.enabled and rt.sets.undo_due():
                    await rt.in_engine(reconcile_sets, rt.engine, rt.journal, rt.sets,
                                       to_local_order, rt.applied.get(rt.campus, 0))
                plan, cursor = await rt.in_journal(self._plan)
                if not plan:
                    self.cursor = cursor
                    await rt.journal_changed.wait(ticket, IDLE_WAIT_SECONDS)
                    continue
                head = (plan[0].origin, plan[0].seq)
                isolate = len(plan) == 1 and self.attempts.get(head, 0) >= MAX_ATTEMPTS
                if isolate:
                    log.warning("%s/%s failed %d times; applying it change by change and "
                                "parking what fails in the dead-letter queue", *head,
                                MAX_ATTEMPTS)
                logged, parked = await rt.in_engine(
                    apply_planned, rt.engine, rt.journal, rt.resolver, plan, isolate, rt.sets)
                rt.conflicts_logged += logged
                rt.dead_lettered += parked
            except SetWriterWait as e:
                # The foreign transactions before it may go now; it (and,
                # journal order being causal, everything after it) waits.
                self.remote_limit = e.index
                if e.index == 0:
                    rt.apply_error = str(e)
                    await asyncio.sleep(SET_WAIT_SECONDS)
                continue
            except PendingLocalChange as e:
                # Capture journals the local change within moments; then it is
                # recorded first and this plan goes through.
                rt.pending_waits += 1
                waits += 1
                if waits % PENDING_WARN_EVERY == 0:
                    log.warning("apply has waited %d times for capture to journal a local "
                                "change (%s); is capture running?", waits, e)
                await rt.journal_changed.wait(ticket, PENDING_WAIT_SECONDS)
                continue
            except (RingsyncError, ProtocolError, Exception) as e:
                rt.apply_error = str(e) if isinstance(e, RingsyncError | ProtocolError) else (
                    f"{type(e).__name__}: {e}")
                if len(plan) > 1:
                    # Find the transaction that fails: retry one at a time, now.
                    self.one_at_a_time = True
                    log.warning("apply of %d transactions failed; retrying them one by one: %s",
                                len(plan), rt.apply_error)
                    continue
                attempt = self.attempts[head] = self.attempts.get(head, 0) + 1
                log.error("apply of %s/%s failed (attempt %d of %d), retrying in %.1fs: %s",
                          *head, attempt, MAX_ATTEMPTS, delay, rt.apply_error,
                          exc_info=not isinstance(e, RingsyncError | ProtocolError))
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)
                continue
            delay = RETRY_MIN_SECONDS
            waits = 0
            rt.apply_error = ""
            self.attempts.clear()
            self.one_at_a_time = False
            for txn in plan:
                rt.applied[txn.origin] = txn.seq
                if txn.local and txn.position is not None:
                    rt.engine.local_recorded(txn.position)
            rt.applied_txns += sum(not t.local for t in plan)
            self.cursor = cursor
            rt.applied_changed.notify()

    async def _start_recording(self) -> None:
        """Where recording this campus's own versions resumes. A database from
        before conflict handling has none recorded: its rows are base versions."""
        rt = self.rt
        if rt.campus not in rt.applied:
            first = await rt.in_journal(rt.journal.first_local_seq)
            rt.applied[rt.campus] = (first - 1) if first else rt.journal.vector().get(
                rt.campus, 0)
        recorded = await rt.in_journal(rt.journal.local_after, rt.applied[rt.campus] - 1, 1)
        if recorded and recorded[0].seq == rt.applied[rt.campus] and recorded[0].position:
            rt.engine.local_recorded(recorded[0].position)
        elif not await rt.in_journal(rt.journal.local_after, rt.applied[rt.campus], 1):
            rt.engine.local_recorded(rt.journal.capture_position)

    def _plan(self) -> tuple[list[PlannedTxn], int]:
        """Collect the next complete transactions to apply (journal thread):
        this campus's own journaled transactions to record first, then
        foreign ones in journal order."""
        rt = self.rt
        journal = rt.journal
        heads = journal.vector()
        applied = dict(rt.applied)
        plan: list[PlannedTxn] = []
        limit = 1 if self.one_at_a_time else MAX_TXNS_PER_COMMIT
        remote_limit, self.remote_limit = self.remote_limit, None
        for entry in journal.local_after(applied.get(rt.campus, 0), limit):
            body = entry.body if entry.chunk == 0 else None
            plan.append(PlannedTxn(rt.campus, entry.seq, body, entry.nchanges, True,
                                   entry.position, entry.xid))
        cursor = self.cursor
        for entry in journal.entries_after(cursor, MAX_FRAMES_PER_READ, MAX_BYTES_PER_READ,
                                           only_whole_bodies=True):
            if entry.origin == rt.campus or entry.seq <= applied.get(entry.origin, 0):
                cursor = entry.pos
                continue
            if entry.seq > heads.get(entry.origin, 0):
                break  # its final frame has not arrived yet
            if remote_limit is not None and sum(not t.local for t in plan) >= remote_limit:
                break
            if entry.seq != applied.get(entry.origin, 0) + 1:
                raise ProtocolError(
                    f"journal holds {entry.origin}/{entry.seq} but {applied.get(entry.origin, 0)} "
                    f"is the last applied; the journal is inconsistent"
                )
            body = entry.body if entry.final and entry.chunk == 0 else None
            plan.append(PlannedTxn(entry.origin, entry.seq, body, entry.nchanges))
            applied[entry.origin] = entry.seq
            cursor = entry.pos
            if len(plan) >= limit:
                break
        return plan, cursor
