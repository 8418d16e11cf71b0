"""Dead-letter queue: changes that cannot be applied, parked without stopping apply.

A foreign transaction that fails to apply (a constraint this campus has and
the others lack, a value its column cannot hold) is first retried whole, with
bounded exponential backoff (node/replication/applier.py). When the retries
are exhausted it is applied *change by change*, each under a savepoint: the
changes that still fail are parked here with their error, the rest commit,
and the stream moves on. A transient error met change by change (a lock
timeout, a lost connection: node.replication.transient) parks nothing: the
batch is retried whole. Later changes to a parked row park behind it, so a
row's history is never applied out of order; other rows keep flowing.

Parked changes live in the campus database (``_rs_dlq`` / ``ringsync.dlq``),
written in the apply transaction. An operator retries one (after fixing the
cause: it and the changes waiting behind it are applied in order) or skips
it (it is dropped; those behind it are then retried); every action is kept
with the entry. Entries and action results are the typed records of
node.conflicts.entries.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from node.codec import build_frame, decode_changes
from node.conflicts.driver import (
    ConflictRecord,
    PendingLocalChange,
    Resolver,
    TxnInfo,
    VersionStore,
    row_to_json,
)
from node.conflicts.entries import (
    DEAD_LETTER_COLUMNS,
    DeadLetterEntry,
    DeadLetterOutcome,
    DescribedDeadLetter,
)
from node.conflicts.fresh import raw_changes
from node.conflicts.log import select
from node.model import Change, RawInserts, TableShape
from node.replication.transient import transient_reason
from node.spelling import Spelling, columns_sql
from ringsync.errors import RingsyncError
from ringsync.v1 import values_pb2 as pb

WAITING = "waiting behind an earlier parked change of this row{ahead}"


class DeadLetterRefused(RingsyncError):
    """An operator action that cannot be carried out; the message says why."""

    grpc_code = "FAILED_PRECONDITION"


@dataclass(frozen=True)
class DeadLetterQuery:
    id: int = 0
    table: str = ""
    state: str = ""     # parked | applied | skipped
    limit: int = 100


class DeadLetterStore(VersionStore, Protocol):
    def parked_keys(self) -> dict[tuple[str, str], int]:
        """(table, key JSON) -> id of the oldest parked change of that row."""

    def park(self, rows: list[tuple[Any, ...]]) -> None:
        """Insert entries: (at, origin, seq, tbl, key, op, frame, error, attempts, state,
        actions)."""

    def dead_letters(self, query: DeadLetterQuery) -> list[DeadLetterEntry]: ...

    def update_dead_letter(self, entry_id: int, state: str, error: str, attempts: int,
                           actions: str) -> None: ...

    def savepoint(self) -> None: ...

    def release_savepoint(self) -> None: ...

    def rollback_to_savepoint(self) -> None: ...


def dead_letter_entry(txn: TxnInfo, change: Change, shapes: Mapping[str, TableShape],
                      error: str, key_json: str, state: str = "parked") -> tuple[Any, ...]:
    """A row for the queue (``park``). ``state`` "stale": a single-writer set's
    change from an ended tenure (node.dr.sets), kept for the record; it does
    not hold back later changes of its row."""
    frame = build_frame(txn.origin, txn.seq, 0, True, 0.0, [change], dict(shapes),
                        hlc=txn.hlc, deps=dict(txn.deps))
    action = [{"at": time.time(), "by": "apply", "action": state, "result": error}]
    return (time.time(), txn.origin, txn.seq, change.table, key_json, change.op.value,
            frame.SerializeToString(), error, 1, state, json.dumps(action))


REJECTED = "rejected"


def rejected_entry(campus: str, change: Change, shapes: Mapping[str, TableShape], error: str,
                   at: str = "") -> tuple[Any, ...]:
    """A queue row for a change of this campus that capture could not convert
    (state ``rejected``): never sent, kept with the row as far as it converts
    and what to do. It holds nothing back; ``retry`` is refused (the row must
    be corrected where it was written), ``skip`` drops it."""
    shape = shapes[change.table]
    image = change.new if change.new is not None else change.old
    assert image is not None
    frame = build_frame(campus, 0, 0, True, 0.0, [change], dict(shapes))
    where = f" (binary log {at})" if at else ""
    why = (f"capture could not convert this campus's change{where}, so it was not sent to the "
           f"other campuses: {error}. Correct the row here (the correction replicates), "
           f"then drop this entry (ringsync ctl dlq skip <its id> --at {campus})")
    action = [{"at": time.time(), "by": "capture", "action": REJECTED, "result": error}]
    return (time.time(), campus, 0, change.table,
            ConflictRecord.key_json_of(shape.key_of(image)), change.op.value,
            frame.SerializeToString(), why, 1, REJECTED, json.dumps(action))


def frame_dead_letter(origin: str, seq: int, body: bytes, error: str) -> tuple[Any, ...]:
    """A queue row for a whole frame that cannot be decoded here (table ``*``):
    kept for the record and for ``skip``; ``retry`` tries to decode it again."""
    action = [{"at": time.time(), "by": "apply", "action": "parked", "result": error}]
    return (time.time(), origin, seq, "*", "", "frame", body, f"cannot decode the frame: {error}",
            1, "parked", json.dumps(action))


def apply_guarded(resolver: Resolver, store: DeadLetterStore, txn: TxnInfo,
                  changes: Iterable[Change], blocked: dict[tuple[str, str], int],
                  isolate: bool) -> tuple[int, int]:
    """Apply a transaction's changes, parking those behind a parked row and,
    with ``isolate``, those that fail. Returns (conflicts logged, changes parked)."""
    if not isolate and (txn.local or not blocked):  # nothing parked: the common case
        return resolver.apply(store, txn, changes), 0
    shapes = {t: r.shape for t, r in resolver.rules.items()}
    # rows that came as COPY text, one by one (a row parked earlier in the
    # batch may make a transaction decoded whole go change by change)
    changes = [row for c in changes for row in (
        raw_changes(c, shapes[c.table]) if isinstance(c, RawInserts) else (c,))]
    flowing: list[Change] = []
    parked: list[tuple[Any, ...]] = []
    logged = 0
    for change in changes:  # counted as they came (a key change is one change)
        shape = shapes[change.table]
        image = change.new if change.new is not None else change.old
        assert image is not None
        key_json = ConflictRecord.key_json_of(shape.key_of(image))
        ahead = blocked.get((change.table, key_json))
        if ahead is not None and not txn.local:
            note = WAITING.format(ahead=f" (dead letter {ahead})" if ahead else "")
            parked.append(dead_letter_entry(txn, change, shapes, note, key_json))
            continue
        if not isolate or txn.local:
            flowing.append(change)
            continue
        store.savepoint()
        try:
            logged += resolver.apply(store, txn, [change])
        except PendingLocalChange:
            raise
        except Exception as e:  # the change itself cannot be applied: park it
            if transient_reason(e) is not None:
                # a lock timeout, a lost connection: says nothing about the
                # change; the whole batch is retried, nothing is parked
                raise
            store.rollback_to_savepoint()
            parked.append(dead_letter_entry(txn, change, shapes, f"{type(e).__name__}: {e}".strip(),
                                 key_json))
            blocked[(change.table, key_json)] = 0  # its id is known once stored
            continue
        store.release_savepoint()
    if flowing:
        logged += resolver.apply(store, txn, flowing)
    if parked:
        store.park(parked)
    return logged, len(parked)


def _decode(entry: DeadLetterEntry) -> tuple[TxnInfo, list[Change]]:
    frame = pb.TxnFrame.FromString(entry.frame)
    _, changes = decode_changes(frame)
    return TxnInfo(frame.origin, frame.seq, frame.hlc, dict(frame.deps), False), changes


def _record(entry: DeadLetterEntry, who: str, action: str, result: str) -> str:
    actions = json.loads(entry.actions or "[]")
    actions.append({"at": time.time(), "by": who, "action": action, "result": result})
    return json.dumps(actions)


def describe(entry: DeadLetterEntry, resolver: Resolver) -> DescribedDeadLetter:
    """An entry for operators: the change's row as JSON beside it."""
    try:
        _, changes = _decode(entry)
    except Exception:  # a whole frame parked because it cannot be decoded here
        return DescribedDeadLetter(entry, None)
    change = changes[0] if changes else None
    rules = resolver.rules.get(entry.table)
    image = None if change is None else change.new if change.new is not None else change.old
    return DescribedDeadLetter(
        entry, row_to_json(rules.shape.columns, image) if rules is not None else None)


def act_in(session: AbstractContextManager[DeadLetterStore], resolver: Resolver, entry_id: int,
           action: str, who: str) -> list[DeadLetterOutcome]:
    """``act`` inside a fresh apply session (committed when it returns)."""
    if action not in ("retry", "skip"):
        raise DeadLetterRefused(f"action {action!r}: use retry or skip")
    with session as store:
        return act(resolver, store, entry_id, action, who)


def act(resolver: Resolver, store: DeadLetterStore, entry_id: int, action: str,
        who: str) -> list[DeadLetterOutcome]:
    """Retry or skip a parked change, then retry the changes waiting behind it
    on the same row, in order, until one fails. Returns what happened to each."""
    found = store.dead_letters(DeadLetterQuery(id=entry_id, limit=1))
    if not found:
        raise DeadLetterRefused(f"no dead letter {entry_id} here")
    first = found[0]
    if first.state == REJECTED:
        if action == "retry":
            raise DeadLetterRefused(
                f"dead letter {entry_id} is a change of this campus that capture could not "
                f"convert; it cannot be retried: correct the row here (the correction "
                f"replicates), then skip this entry")
        store.update_dead_letter(first.id, "skipped", first.error, first.attempts,
                                 _record(first, who, "skip", "dropped"))
        return [DeadLetterOutcome(first.id, "skipped")]
    if first.state != "parked":
        raise DeadLetterRefused(f"dead letter {entry_id} is {first.state}, not parked")
    same_row = [e for e in store.dead_letters(
        DeadLetterQuery(table=first.table, state="parked", limit=10_000))
        if e.key == first.key and e.id >= entry_id]
    same_row.sort(key=lambda e: e.id)
    outcome: list[DeadLetterOutcome] = []
    for n, entry in enumerate(same_row):
        if n == 0 and action == "skip":
            store.update_dead_letter(entry.id, "skipped", entry.error, entry.attempts,
                                     _record(entry, who, "skip", "dropped"))
            outcome.append(DeadLetterOutcome(entry.id, "skipped"))
            continue
        try:
            txn, changes = _decode(entry)
        except Exception as e:  # a whole frame that still cannot be decoded here
            error = f"cannot decode the frame: {type(e).__name__}: {e}".strip()
            store.update_dead_letter(entry.id, "parked", error, entry.attempts + 1,
                                     _record(entry, who, "retry", f"failed: {error}"))
            outcome.append(DeadLetterOutcome(entry.id, "parked", error))
            break
        store.savepoint()
        try:
            resolver.apply(store, txn, changes)
        except Exception as e:
            store.rollback_to_savepoint()
            error = f"{type(e).__name__}: {e}".strip()
            store.update_dead_letter(entry.id, "parked", error, entry.attempts + 1,
                                     _record(entry, who, "retry", f"failed: {error}"))
            outcome.append(DeadLetterOutcome(entry.id, "parked", error))
            break
        store.release_savepoint()
        store.update_dead_letter(entry.id, "applied", "", entry.attempts + 1,
                                 _record(entry, who, "retry" if n == 0 else "retry (behind)",
                                         "applied"))
        outcome.append(DeadLetterOutcome(entry.id, "applied"))
    return outcome


class DeadLetterTable:
    """The queue's SQL, the same on both engines but for the placeholder."""

    def __init__(self, table: str, spelling: Spelling) -> None:
        self.table, self.mark = table, spelling.mark

    def ddl(self, serial: str, blob: str) -> str:
        return (f"CREATE TABLE IF NOT EXISTS {self.table}(id {serial}, at double precision "
                f"NOT NULL, origin text NOT NULL, seq bigint NOT NULL, tbl text NOT NULL, "
                f"\"key\" text NOT NULL, op text NOT NULL, frame {blob} NOT NULL, error text NOT "
                f"NULL, attempts bigint NOT NULL, state text NOT NULL, actions text NOT NULL)")

    def parked_keys(self, conn: Any) -> dict[tuple[str, str], int]:
        return {(t, k): int(i) for t, k, i in conn.execute(
            f'SELECT tbl, "key", min(id) FROM {self.table} WHERE state = \'parked\' '
            f'GROUP BY tbl, "key"').fetchall()}

    def holds(self, conn: Any, origin: str, table: str, key: str, error: str) -> bool:
        """Is there an entry (in any state) of ``origin`` for this row with this
        error already? (A rejected change's error names its binlog position.)"""
        m = self.mark
        return conn.execute(f'SELECT 1 FROM {self.table} WHERE origin = {m} AND tbl = {m} AND '
                            f'"key" = {m} AND error = {m}', (origin, table, key, error)
                            ).fetchone() is not None

    def insert_sql(self) -> str:
        cols = DEAD_LETTER_COLUMNS[1:]
        return (f"INSERT INTO {self.table}({columns_sql(cols)}) "
                f"VALUES ({', '.join(self.mark for _ in cols)})")

    def query(self, conn: Any, q: DeadLetterQuery) -> list[DeadLetterEntry]:
        filters = [("id = {m}", q.id), ("tbl = {m}", q.table), ("state = {m}", q.state)]
        rows = select(conn, self.table, DEAD_LETTER_COLUMNS, self.mark, filters, "id", q.limit)
        return [DeadLetterEntry.from_row(r) for r in rows]

    def update(self, conn: Any, entry_id: int, state: str, error: str, attempts: int,
               actions: str) -> None:
        m = self.mark
        conn.execute(f"UPDATE {self.table} SET state = {m}, error = {m}, attempts = {m}, "
                     f"actions = {m} WHERE id = {m}", (state, error, attempts, actions, entry_id))

    def counts(self, conn: Any, campus: str = "") -> dict[str, int]:
        """Entries by state; ``campus``'s own stale changes (undone here, never
        received: node.dr.sets) apart, as ``stale_own``, and its own rejected
        changes an operator skipped (never received either) as ``rejected_skipped``."""
        out = {"parked": 0, "applied": 0, "skipped": 0}
        m = self.mark
        for state, n in conn.execute(
                f"SELECT CASE WHEN state = 'stale' AND origin = {m} THEN 'stale_own' "
                f"WHEN state = 'skipped' AND origin = {m} AND seq = 0 THEN 'rejected_skipped' "
                f"ELSE state END, count(*) FROM {self.table} GROUP BY 1",
                (campus, campus)).fetchall():
            out[str(state)] = int(n)
        return out
