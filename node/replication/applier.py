"""Applier: commit foreign transactions from the journal into the campus database.

Walks the journal in arrival order (a causal order: a campus journals what
it received before it captures what its users then wrote), skipping its own
origin and whatever the applied vector already holds. Transactions are
applied whole, in order per origin, several per database transaction
(node.replication.batch), and the applied vector is advanced inside that
same database transaction.

A transaction whose final frame has not arrived yet waits without holding
back the others: later transactions of other origins go past it unless
their dependency vector says they saw it. One that stays incomplete past
``INCOMPLETE_ALERT_SECONDS`` is an alert.

What to try after each outcome (isolating a failing transaction, retrying,
parking what fails, waiting for capture or for a set writer) is decided by
node.replication.applystate; status shows its state, what it waits for and
since when.

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

from node.conflicts.driver import PendingLocalChange
from node.dr.sets import reconcile_sets
from node.replication import applystate
from node.replication.applystate import ApplyMachine, Next
from node.replication.batch import (
    OwnRecordingFailed,
    PlannedTxn,
    SetWriterWait,
    apply_planned,
    to_local_order,
)
from node.replication.journal import Entry, Journal
from node.replication.transient import transient_reason
from node.runtime import NodeRuntime
from ringsync.errors import ProtocolError, RingsyncError
from ringsync.v1 import values_pb2 as pb

__all__ = ["Applier", "to_local_order"]

log = logging.getLogger(__name__)

MAX_LOCAL_PER_COMMIT = 2048
MAX_FRAMES_PER_READ = 2048
MAX_BYTES_PER_READ = 8 << 20
# Journal windows one plan may read past transactions it cannot take yet.
MAX_READS_PER_PLAN = 8


class OwnFeed:
    """This campus's own journaled transactions after a seq, for a batch that
    waits for capture while holding its row locks (node.replication.batch)."""

    def __init__(self, journal: Journal, after: int) -> None:
        self.journal, self.after = journal, after

    def __call__(self) -> list[PlannedTxn]:
        # The engine thread calls this: a read connection of its own, not the journal's.
        entries = self.journal.local_after(self.after, MAX_LOCAL_PER_COMMIT, private=True)
        if entries:
            self.after = entries[-1].seq
        return [own_txn(e) for e in entries]


def own_txn(entry: Entry) -> PlannedTxn:
    body = entry.body if entry.chunk == 0 else None
    return PlannedTxn(entry.origin, entry.seq, body, entry.nchanges, True, entry.position,
                      entry.xid)


class Applier:
    def __init__(self, rt: NodeRuntime) -> None:
        self.rt = rt
        self.cursor = 0
        self.machine: ApplyMachine = rt.apply_machine
        self.absorb_next = False  # the last try met a local change not journaled yet
        self.alerted = ""         # the alert last logged (once per episode)

    async def run(self) -> None:
        rt = self.rt
        rt.applied = await rt.in_engine(rt.engine.target.applied_vector)
        await self._start_recording()
        start = dict(rt.applied)
        start[rt.campus] = rt.journal.vector().get(rt.campus, 0)
        self.cursor = await rt.in_journal(rt.journal.start_pos, start)
        while True:
            ticket = rt.journal_changed.ticket()
            step = await self._step()
            self._report()
            if step.delay > 0:
                if step.wake_on_journal:
                    await rt.journal_changed.wait(ticket, step.delay)
                else:
                    await asyncio.sleep(step.delay)

    async def _step(self) -> Next:
        """Plan, apply, and return what the machine says to do next."""
        rt, machine = self.rt, self.machine
        plan: list[PlannedTxn] = []
        remote, head = 0, ("", 0)
        try:
            if rt.sets.enabled and rt.sets.undo_due():
                await rt.in_engine(reconcile_sets, rt.engine, rt.journal, rt.sets,
                                   to_local_order, rt.applied.get(rt.campus, 0))
            plan, cursor = await rt.in_journal(self._plan)
            if not plan:
                self.cursor = cursor
                return machine.nothing_to_do()
            foreign = [t for t in plan if not t.local]
            remote = len(foreign)
            head = (foreign[0].origin, foreign[0].seq) if foreign else (plan[0].origin,
                                                                         plan[0].seq)
            isolate = machine.started(remote, head)
            if isolate:
                log.warning("%s/%s failed %d times; applying it change by change and parking "
                            "what fails in the dead-letter queue", *head, machine.max_attempts)
            absorb = None
            if self.absorb_next and remote:
                own = [t.seq for t in plan if t.local]
                absorb = OwnFeed(rt.journal, own[-1] if own else rt.applied.get(rt.campus, 0))
            result = await rt.in_engine(apply_planned, rt.engine, rt.journal, rt.resolver, plan,
                                        isolate, rt.sets, absorb)
        except SetWriterWait as e:
            if e.index == 0:
                rt.apply_error = str(e)
            return machine.set_writer(e.index, str(e))
        except PendingLocalChange as e:
            # Capture journals the local change within moments; the next try
            # then records it first, holding the rows so no newer one slips in.
            rt.pending_waits += 1
            self.absorb_next = True
            return machine.pending_local(str(e))
        except Exception as e:  # every failure: the machine decides what next
            known = isinstance(e, RingsyncError | ProtocolError)
            rt.apply_error = str(e) if known else f"{type(e).__name__}: {e}"
            transient = transient_reason(e)
            was = machine.state
            blamed = 0 if isinstance(e, OwnRecordingFailed) else remote
            step = machine.failed(rt.apply_error, transient, blamed, head)
            if transient is not None:
                log.log(logging.INFO if machine.transient_streak == 1 else logging.DEBUG,
                        "apply hit a transient error (%s); retrying in %.2fs: %s", transient,
                        step.delay, rt.apply_error)
            elif machine.state == applystate.ISOLATING:
                log.log(logging.WARNING if was != applystate.ISOLATING else logging.INFO,
                        "apply of %d foreign transactions failed; trying %d to find the one "
                        "that fails: %s", remote, machine.window, rt.apply_error)
            else:
                log.error("apply of %s/%s failed (%s), retrying in %.1fs: %s", *head,
                          machine.waiting_for, step.delay, rt.apply_error,
                          exc_info=not known)
            return step
        self.absorb_next = False
        rt.apply_error = ""
        rt.conflicts_logged += result.logged
        rt.dead_lettered += result.parked
        for txn in plan + result.absorbed:
            if txn.local and txn.position is not None:
                rt.engine.source.local_recorded(txn.position)
            rt.applied[txn.origin] = max(rt.applied.get(txn.origin, 0), txn.seq)
        rt.applied_txns += remote
        self.cursor = cursor
        rt.applied_changed.notify()
        return machine.succeeded([(t.origin, t.seq) for t in plan if not t.local])

    def _report(self) -> None:
        """Log an alert once when it starts, and once when it clears."""
        alert = self.machine.alert() or self.rt.incomplete_alert()
        if alert and not self.alerted:
            log.error("ALERT: %s", alert)
        elif self.alerted and not alert:
            log.warning("apply is moving again (was: %s)", self.alerted)
        self.alerted = alert

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
            rt.engine.source.local_recorded(recorded[0].position)
        elif not await rt.in_journal(rt.journal.local_after, rt.applied[rt.campus], 1):
            rt.engine.source.local_recorded(rt.journal.capture_position)

    def _plan(self) -> tuple[list[PlannedTxn], int]:
        """Collect the next transactions to apply (journal thread): this
        campus's own journaled transactions to record first, then foreign
        ones in journal order, up to the machine's window.

        An incomplete foreign transaction (its final frame not here yet)
        holds back only its origin's later transactions and those that saw
        it (their dependency vector); the cursor stays before it, and the
        plan reads on past it (a few journal windows at most).
        """
        rt = self.rt
        journal = rt.journal
        heads = journal.vector()
        applied = dict(rt.applied)
        plan = [own_txn(e) for e in journal.local_after(applied.get(rt.campus, 0),
                                                        MAX_LOCAL_PER_COMMIT)]
        limit = self.machine.remote_limit()
        cursor = pos = self.cursor
        contiguous = True   # nothing held back so far: the cursor may move
        held: dict[str, int] = {}  # origin -> its first transaction that waits
        incomplete: dict[tuple[str, int], float] = {}
        taken = 0
        full = False
        for _ in range(MAX_READS_PER_PLAN):
            entries = journal.entries_after(pos, MAX_FRAMES_PER_READ, MAX_BYTES_PER_READ,
                                            only_whole_bodies=True)
            for entry in entries:
                pos = entry.pos
                origin = entry.origin
                if origin == rt.campus or entry.seq <= applied.get(origin, 0):
                    cursor = entry.pos if contiguous else cursor
                    continue
                if origin in held:
                    continue  # behind an earlier transaction of its origin
                if entry.seq > heads.get(origin, 0):
                    incomplete.setdefault((origin, entry.seq), entry.recv_time)
                    held[origin], contiguous = entry.seq, False
                    continue
                if held and _saw(entry, held):
                    held[origin], contiguous = entry.seq, False
                    continue
                if taken >= limit:
                    full = True
                    break
                if entry.seq != applied.get(origin, 0) + 1:
                    raise ProtocolError(
                        f"journal holds {origin}/{entry.seq} but {applied.get(origin, 0)} is "
                        f"the last applied; the journal is inconsistent")
                body = entry.body if entry.final and entry.chunk == 0 else None
                plan.append(PlannedTxn(origin, entry.seq, body, entry.nchanges))
                applied[origin] = entry.seq
                taken += 1
                cursor = entry.pos if contiguous else cursor
            if full or not held or len(entries) < MAX_FRAMES_PER_READ:
                break
        if full:  # the read stopped early: what it did not reach is still as known
            rt.incomplete.update(incomplete)
        else:
            rt.incomplete = incomplete
        return plan, cursor


def _saw(entry: Entry, held: dict[str, int]) -> bool:
    """Did this transaction's origin see a held one when it committed? (A
    multi-frame one, whose body is not at hand, is assumed to have.)"""
    if not (entry.final and entry.chunk == 0):
        return True
    deps = pb.TxnFrame.FromString(entry.body).deps
    return any(deps.get(origin, 0) >= seq for origin, seq in held.items())

