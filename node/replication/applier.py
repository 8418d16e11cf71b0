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

from node.conflicts.driver import PendingLocalChange, Resolver
from node.dr.sets import SetGuard, reconcile_sets
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
from node.replication.outside import OutsideWatch
from node.replication.resources import NodeResources
from node.replication.state import ReplicationState
from node.replication.transient import transient_reason, until_answered
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
    """The apply loop: works through ``res`` (engine, journal, their threads),
    keeps its books in ``state`` (the applied vector, the machine, counters)."""

    def __init__(self, res: NodeResources, state: ReplicationState, sets: SetGuard,
                 resolver: Resolver) -> None:
        self.res, self.state, self.sets, self.resolver = res, state, sets, resolver
        self.campus = state.campus
        self.cursor = 0
        self.machine: ApplyMachine = state.apply_machine
        self.absorb_next = False  # the last try met a local change not journaled yet
        self.outside = OutsideWatch()  # ... or a row changed outside replication
        self.alerted = ""         # the alert last logged (once per episode)

    async def run(self) -> None:
        await self._start_when_answered()
        while True:
            async with self.res.apply_gate:
                if self.state.restart_apply:  # a leaf's re-seed replaced the copy under us
                    self.state.restart_apply = False
                    await self._start_when_answered()
                ticket = self.res.journal_changed.ticket()
                step = await self.step()
            if step.delay > 0:
                if step.wake_on_journal:
                    await self.res.journal_changed.wait(ticket, step.delay)
                else:
                    await asyncio.sleep(step.delay)

    async def _start_when_answered(self) -> None:
        """``start``, waiting out a database that restarts meanwhile (status
        says so as the apply error)."""
        def note(text: str) -> None:
            self.state.apply_error = text
        await until_answered("apply cannot start", self.start, note)
        self.state.apply_error = ""

    async def start(self) -> None:
        """Read the applied vector from the database; place the cursor after it."""
        res, state = self.res, self.state
        state.applied = await res.in_engine(res.engine.target.applied_vector)
        await self._start_recording()
        start = dict(state.applied)
        start[self.campus] = res.journal.vector().get(self.campus, 0)
        self.cursor = await res.in_journal(res.journal.start_pos, start)

    async def step(self) -> Next:
        """One round: plan, apply, log an alert that starts or clears; what next."""
        step = await self._step()
        self._report()
        return step

    async def _step(self) -> Next:
        """Plan, apply, and return what the machine says to do next."""
        res, state, machine = self.res, self.state, self.machine
        plan: list[PlannedTxn] = []
        remote, head = 0, ("", 0)
        try:
            if self.sets.enabled and self.sets.undo_due():
                await res.in_engine(reconcile_sets, res.engine, res.journal, self.sets,
                                    to_local_order, state.applied.get(self.campus, 0))
            plan, cursor = await res.in_journal(self._plan)
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
                absorb = OwnFeed(res.journal,
                                 own[-1] if own else state.applied.get(self.campus, 0))
            self.resolver.adopt_outside = await self._outside_shown(bool(remote))
            try:
                result = await res.in_engine(apply_planned, res.engine, res.journal,
                                             self.resolver, plan, isolate, self.sets, absorb)
            finally:
                self.resolver.adopt_outside = False
        except SetWriterWait as e:
            if e.index == 0:
                state.apply_error = str(e)
            return machine.set_writer(e.index, str(e))
        except PendingLocalChange as e:
            # Capture journals the local change within moments; the next try
            # then records it first, holding the rows so no newer one slips in.
            state.pending_waits += 1
            self.absorb_next = True
            if not self.outside.waiting:
                self.outside.began(await res.in_engine(res.engine.source.commit_position))
            return machine.pending_local(str(e))
        except Exception as e:  # every failure: the machine decides what next
            known = isinstance(e, RingsyncError | ProtocolError)
            state.apply_error = str(e) if known else f"{type(e).__name__}: {e}"
            transient = transient_reason(e)
            was = machine.state
            blamed = 0 if isinstance(e, OwnRecordingFailed) else remote
            step = machine.failed(state.apply_error, transient, blamed, head)
            if transient is not None:
                log.log(logging.INFO if machine.transient_streak == 1 else logging.DEBUG,
                        "apply hit a transient error (%s); retrying in %.2fs: %s", transient,
                        step.delay, state.apply_error)
            elif machine.state == applystate.ISOLATING:
                log.log(logging.WARNING if was != applystate.ISOLATING else logging.INFO,
                        "apply of %d foreign transactions failed; trying %d to find the one "
                        "that fails: %s", remote, machine.window, state.apply_error)
            else:
                log.error("apply of %s/%s failed (%s), retrying in %.1fs: %s", *head,
                          machine.waiting_for, step.delay, state.apply_error,
                          exc_info=not known)
            return step
        self.absorb_next = False
        self.outside.ended()
        state.apply_error = ""
        state.conflicts_logged += result.logged
        state.dead_lettered += result.parked
        for txn in plan + result.absorbed:
            if txn.local and txn.position is not None:
                res.engine.source.local_recorded(txn.position)
            state.applied[txn.origin] = max(state.applied.get(txn.origin, 0), txn.seq)
        state.applied_txns += remote
        self.cursor = cursor
        res.applied_changed.notify()
        return machine.succeeded([(t.origin, t.seq) for t in plan if not t.local])

    async def _outside_shown(self, remote: bool) -> bool:
        """Take still-pending rows as changed outside replication on this try?"""
        if not remote or not self.outside.waiting:
            return False
        res, source = self.res, self.res.engine.source

        def books() -> tuple[int, int]:
            return (self.state.applied.get(self.campus, 0),
                    res.journal.vector().get(self.campus, 0))
        if not self.outside.outside(source.captured_through(), *books()):
            return False
        now = await res.in_engine(source.commit_position)
        return self.outside.confirm(source.captured_through(), now, *books())

    def _report(self) -> None:
        """Log an alert once when it starts, and once when it clears."""
        alert = self.machine.alert() or self.state.incomplete_alert()
        if alert and not self.alerted:
            log.error("ALERT: %s", alert)
        elif self.alerted and not alert:
            log.warning("apply is moving again (was: %s)", self.alerted)
        self.alerted = alert

    async def _start_recording(self) -> None:
        """Where recording this campus's own versions resumes. A database from
        before conflict handling has none recorded: its rows are base versions."""
        res, state, campus = self.res, self.state, self.campus
        if campus not in state.applied:
            first = await res.in_journal(res.journal.first_local_seq)
            state.applied[campus] = (first - 1) if first else res.journal.vector().get(campus, 0)
        recorded = await res.in_journal(res.journal.local_after, state.applied[campus] - 1, 1)
        if recorded and recorded[0].seq == state.applied[campus] and recorded[0].position:
            res.engine.source.local_recorded(recorded[0].position)
        elif not await res.in_journal(res.journal.local_after, state.applied[campus], 1):
            res.engine.source.local_recorded(res.journal.capture_position)

    def _plan(self) -> tuple[list[PlannedTxn], int]:
        """Collect the next transactions to apply (journal thread): this
        campus's own journaled transactions to record first, then foreign
        ones in journal order, up to the machine's window.

        An incomplete foreign transaction (its final frame not here yet)
        holds back only its origin's later transactions and those that saw
        it (their dependency vector); the cursor stays before it, and the
        plan reads on past it (a few journal windows at most).
        """
        journal = self.res.journal
        heads = journal.vector()
        applied = dict(self.state.applied)
        plan = [own_txn(e) for e in journal.local_after(applied.get(self.campus, 0),
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
                if origin == self.campus or entry.seq <= applied.get(origin, 0):
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
            self.state.incomplete.update(incomplete)
        else:
            self.state.incomplete = incomplete
        return plan, cursor


def _saw(entry: Entry, held: dict[str, int]) -> bool:
    """Did this transaction's origin see a held one when it committed? (A
    multi-frame one, whose body is not at hand, is assumed to have.)"""
    if not (entry.final and entry.chunk == 0):
        return True
    deps = pb.TxnFrame.FromString(entry.body).deps
    return any(deps.get(origin, 0) >= seq for origin, seq in held.items())

