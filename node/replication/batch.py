"""One apply batch: planned transactions into the campus database, in one
database transaction (engine thread).

node.replication.applier plans which journaled transactions go together and
decides what to try next (node.replication.applystate); this module carries
one plan out:

1. decode every single-frame transaction of the plan (multi-frame ones are
   streamed from the journal frame by frame, so memory stays bounded);
2. lock every existing row the plan updates or deletes, table by table in
   the order the transactions first touch them and by key within a table
   (``lock_rows``). Locks are therefore always taken in one order, so apply
   never deadlocks with itself and, for applications that touch a table's
   rows one per transaction, never with them either; where it still waits
   too long the apply session's short ``lock_timeout`` makes apply the one
   that yields (a transient error: retried, never parked);
3. record this campus's own journaled transactions' versions, then resolve
   the foreign ones (node.conflicts), and advance the applied vector.

``absorb``: when the last try met a row with a local change not journaled
yet, the foreign part runs under a savepoint with the rows already locked,
and on ``PendingLocalChange`` this batch waits for capture to journal the
local transactions that committed before the locks were taken, records
them in this same transaction and tries again. No new local change can
reach a locked row meanwhile, so a hot row that the campus's own users
write all the time cannot hold replication back forever.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from node.codec import decode_changes
from node.conflicts.deadletter import apply_guarded, dead_letter_entry, frame_dead_letter
from node.conflicts.driver import ConflictRecord, Key, PendingLocalChange, Resolver, TxnInfo
from node.dr.sets import SetGuard, Verdict, stale_entry
from node.engines.base import ApplySession, Engine
from node.model import Change, Op, RawInserts, TableShape
from node.replication.journal import Journal
from ringsync.errors import EngineError, RingsyncError
from ringsync.v1 import values_pb2 as pb

# How long one batch may hold its row locks waiting for capture.
ABSORB_SECONDS = 2.0
ABSORB_POLL_SECONDS = 0.01


@dataclass(slots=True)
class PlannedTxn:
    origin: str
    seq: int
    body: bytes | None  # the only frame; None: several, streamed from the journal
    rows: int
    local: bool = False
    position: int | None = None
    xid: int | None = None


@dataclass(slots=True)
class BatchResult:
    logged: int = 0       # conflicts logged
    parked: int = 0       # changes parked in the dead-letter queue
    absorbed: list[PlannedTxn] = field(default_factory=list)  # own txns recorded meanwhile
    alerts: list[tuple[int, str]] = field(default_factory=list)


class OwnRecordingFailed(RingsyncError):
    """Recording this campus's own transactions failed: no foreign
    transaction of the plan is to blame (nothing to isolate or park)."""


class SetWriterWait(RingsyncError):
    """A transaction of a single-writer set cannot be judged yet (node.dr.sets):
    the plan's first ``index`` foreign transactions may go, this one waits."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(reason)
        self.index = index


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


def apply_planned(engine: Engine, journal: Journal, resolver: Resolver,
                  plan: list[PlannedTxn], isolate: bool = False,
                  sets: SetGuard | None = None,
                  absorb: Callable[[], list[PlannedTxn]] | None = None) -> BatchResult:
    """Apply planned transactions in one database transaction (engine thread).

    Transactions go to the resolver together (``apply_many``: one read and
    one write per table run) unless a row is parked in the dead-letter queue
    (remote ones then go one by one, so changes to the parked rows wait
    behind them) or ``isolate`` asks for change-by-change savepoints. The
    applied vector moves once per origin, to the last transaction of the
    batch. ``absorb()`` returns this campus's own transactions journaled
    since the last call (see the module docstring); only engines whose
    session locks rows (``holds_row_locks``) use it.
    """
    out = BatchResult()
    with engine.target.apply_session() as session:
        batch = _Batch(session, journal, resolver, engine.shapes(), sets, isolate, out)
        own = [t for t in plan if t.local]
        remote = [t for t in plan if not t.local]
        decoded = batch.decode(own + remote)
        if not isolate:  # change by change: what cannot even be locked is parked
            batch.lock(decoded)
        try:
            batch.run(own, decoded)
            batch.advance()  # own versions recorded: the foreign part may now pass their rows
        except Exception as e:
            raise OwnRecordingFailed(f"recording this campus's own versions failed: {e}") from e
        if absorb is not None and session.holds_row_locks and remote and not isolate:
            batch.run_absorbing(remote, decoded, absorb)
        else:
            batch.run(remote, decoded)
        batch.advance()
    if sets is not None:
        for count, text in out.alerts:
            sets.stale_parked += count
            sets.alert(text)
    return out


Decoded = dict[tuple[str, int], tuple[TxnInfo, list[Change], dict[str, int]]]


class _Batch:
    def __init__(self, session: ApplySession, journal: Journal, resolver: Resolver,
                 local: Mapping[str, TableShape], sets: SetGuard | None, isolate: bool,
                 out: BatchResult) -> None:
        self.session, self.journal, self.resolver = session, journal, resolver
        self.local, self.sets, self.isolate, self.out = local, sets, isolate, out
        self.blocked = session.parked_keys()
        # a session seeing the engine through code maps checks codes ahead of apply
        self.untranslatable = getattr(session, "untranslatable", None)
        self.advances: dict[str, _Advance] = {}

    def decode(self, txns: list[PlannedTxn]) -> Decoded:
        """The single-frame transactions, decoded once for the whole batch."""
        out: Decoded = {}
        for t in txns:
            if t.body is not None and (frame := self._decode(t, t.body)) is not None:
                out[(t.origin, t.seq)] = frame
        return out

    def _decode(self, txn: PlannedTxn, body: bytes,
                ) -> tuple[TxnInfo, list[Change], dict[str, int]] | None:
        """A frame decoded into local column order; None when, going change by
        change, a foreign frame this campus cannot even read (a value out of
        its range, a column it lacks) was parked whole, so the stream moves on."""
        try:
            return _decode(body, txn, self.local, self._raw_ok(txn))
        except Exception as e:
            if txn.local or not self.isolate:
                raise
            self.session.park([frame_dead_letter(txn.origin, txn.seq, body,
                                                 f"{type(e).__name__}: {e}")])
            self.out.parked += 1
            return None

    def _raw_ok(self, txn: PlannedTxn) -> bool:
        """May this transaction's COPY text rows stay undecoded? Not when going
        change by change, nor behind parked rows, nor when single-writer sets
        must judge its changes (node.dr.sets)."""
        if self.isolate or (self.blocked and not txn.local):
            return False
        return self.sets is None or not self.sets.enabled

    def lock(self, decoded: Decoded) -> None:
        """Lock the existing rows the batch changes, in one deterministic order."""
        keys: dict[str, dict[Key, None]] = {}  # table -> keys, both in first-seen order
        for _, changes, _ in decoded.values():
            for c in changes:
                if c.op is not Op.INSERT and c.old is not None:
                    keys.setdefault(c.table, {})[self.local[c.table].key_of(c.old)] = None
        for table, found in keys.items():
            self.session.lock_rows(self.local[table], list(found))

    def frames(self, txn: PlannedTxn, decoded: Decoded,
               ) -> Iterator[tuple[TxnInfo, list[Change], dict[str, int]]]:
        if txn.body is not None:
            if (frame := decoded.get((txn.origin, txn.seq))) is not None:
                yield frame
            return
        for body in self.journal.iter_frames(txn.origin, txn.seq):
            if (frame := self._decode(txn, body)) is not None:
                yield frame

    def run(self, part: list[PlannedTxn], decoded: Decoded) -> None:
        session, out = self.session, self.out
        group: list[tuple[TxnInfo, list[Change]]] = []
        for index, txn in enumerate(part):
            applied = 0
            for info, changes, epochs in self.frames(txn, decoded):
                if not txn.local:
                    changes = self._judge(info, changes, epochs, index)
                    changes = self._park_untranslatable(info, changes)
                if not self.isolate and txn.body is not None and (txn.local or not self.blocked):
                    group.append((info, changes))
                    applied += _rows(changes)
                    continue
                if group:
                    out.logged += self.resolver.apply_many(session, group)
                    group = []
                done = apply_guarded(self.resolver, session, info, changes, self.blocked,
                                     self.isolate)
                out.logged, out.parked = out.logged + done[0], out.parked + done[1]
                applied += _rows(changes) - done[1]
            self.advances.setdefault(txn.origin, _Advance()).add(txn, applied)
        if group:
            out.logged += self.resolver.apply_many(session, group)

    def run_absorbing(self, part: list[PlannedTxn], decoded: Decoded,
                      absorb: Callable[[], list[PlannedTxn]]) -> None:
        """``run`` under a savepoint; on a pending local change, record what
        capture journals meanwhile (the rows stay locked) and run again."""
        deadline = time.monotonic() + ABSORB_SECONDS
        while True:
            logged, parked, alerts = self.out.logged, self.out.parked, len(self.out.alerts)
            blocked = dict(self.blocked)  # rows parked in the try roll back with it
            self.session.savepoint()
            try:
                self.run(part, decoded)
            except PendingLocalChange:
                self.session.rollback_to_savepoint()
                self.out.logged, self.out.parked, self.advances = logged, parked, {}
                self.blocked = blocked
                del self.out.alerts[alerts:]
                if time.monotonic() > deadline:
                    raise
                own = absorb()
                if not own:
                    time.sleep(ABSORB_POLL_SECONDS)
                    continue
                self.run(own, self.decode(own))
                self.advance()
                self.out.absorbed.extend(own)
                continue
            self.session.release_savepoint()
            return

    def advance(self) -> None:
        """Write the applied vector's moves so far (in the session's transaction)."""
        for origin, adv in self.advances.items():
            self.session.advance(origin, adv.seq, adv.position, adv.changes)
        self.advances = {}

    def _park_untranslatable(self, info: TxnInfo, changes: list[Change]) -> list[Change]:
        """Park, ahead of applying, the changes whose codes this campus's maps
        cannot translate (node.dictionary.session): a clear error naming the
        campus, the column and the code, and later changes of their rows
        park behind them until ``dlq retry``."""
        check = self.untranslatable
        if check is None:
            return changes
        def key_json(change: Change) -> str:
            image = change.new if change.new is not None else change.old
            assert image is not None
            return ConflictRecord.key_json_of(self.local[change.table].key_of(image))

        found = check(info, changes,
                      lambda c: (c.table, key_json(c)) in self.blocked)  # parks behind anyway
        if not found:
            return changes
        parked = {id(c) for c, _ in found}
        entries = []
        for change, why in found:
            entries.append(dead_letter_entry(info, change, self.local, why, key_json(change)))
            self.blocked[(change.table, key_json(change))] = 0  # later changes of the row wait
        self.session.park(entries)
        self.out.parked += len(entries)
        return [c for c in changes if id(c) not in parked]

    def _judge(self, info: TxnInfo, changes: list[Change], epochs: dict[str, int],
               index: int) -> list[Change]:
        sets = self.sets
        if sets is None or not (epochs or sets.enabled):
            return changes
        epochs = sets.stamps_of(changes, epochs) if sets.enabled else epochs
        keep, stale = judge_sets(sets, info, changes, epochs, index)
        if stale:
            self.session.park([stale_entry(info, c, self.local, why) for c, why in stale])
            self.out.parked += len(stale)
            self.out.alerts.append((len(stale), f"parked {len(stale)} change(s) of "
                                    f"{info.origin}/{info.seq}: {stale[0][1]}"))
        return keep


def _decode(body: bytes, txn: PlannedTxn, local: Mapping[str, TableShape], raw_ok: bool = False,
            ) -> tuple[TxnInfo, list[Change], dict[str, int]]:
    """A frame as changes in local column order; with ``raw_ok``, rows that
    came as COPY text in this campus's column order stay COPY text
    (node.model.RawInserts, one per run) unless they are set-stamped."""
    frame = pb.TxnFrame.FromString(body)
    info = TxnInfo(frame.origin, frame.seq, frame.hlc, dict(frame.deps), txn.local,
                   txn.position, txn.xid)
    if raw_ok and frame.raw_inserts and not frame.set_epochs and all(
            t.name in local and tuple(t.columns) == local[t.name].columns for t in frame.tables):
        raw: list[Change] = [RawInserts(frame.tables[r.table_index].name, r.rows,  # type: ignore[misc]
                                        r.copy_text) for r in frame.raw_inserts]
        return info, raw, {}
    shapes, changes = decode_changes(frame)
    return info, to_local_order(shapes, changes, local), dict(frame.set_epochs)


def _rows(changes: list[Change]) -> int:
    """Row changes in a list where COPY text runs stand for their rows."""
    return sum(c.rows if isinstance(c, RawInserts) else 1 for c in changes)


def judge_sets(sets: SetGuard, info: TxnInfo, changes: list[Change], epochs: dict[str, int],
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
