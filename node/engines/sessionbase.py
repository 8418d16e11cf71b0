"""What every engine's apply session does the same way (node.engines.base.ApplySession).

An apply session writes foreign rows in batched runs (node.engines.runs),
records the applied vector and a set's reconciled epoch, and keeps the
conflict log, the delta tally and dead letters, all in its one
transaction and with the same statements on every engine but for their
spelling (node.engines.dialect). ApplySessionBase does that once, through
the session's connection or cursor; each engine's session adds reading and
writing row versions (its versions module) and what only it needs
(locking rows, clearing a table, savepoints).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from node.conflicts.driver import ConflictRecord, Key
from node.engines.dialect import Dialect
from node.engines.runs import batched_writes
from node.model import Change, TableShape


class ApplySessionBase:
    """The shared half of an apply session, writing through ``db`` (a
    connection or cursor in the session's transaction)."""

    def __init__(self, db: Any, dialect: Dialect, shape_of: Callable[[str], TableShape],
                 upsert_sql: Callable[[TableShape], Any],
                 delete_sql: Callable[[TableShape], Any]) -> None:
        self.db = db
        self.dialect = dialect
        self._shape_of = shape_of
        self._upsert_sql = upsert_sql
        self._delete_sql = delete_sql

    def apply(self, changes: Iterable[Change]) -> None:
        values = self.dialect.values
        for shape, deletes, upserts in batched_writes(changes, self._shape_of):
            if deletes:
                self.db.executemany(self._delete_sql(shape), [values(k) for k in deletes])
            if upserts:
                self.db.executemany(self._upsert_sql(shape), [values(r) for r in upserts])

    def advance(self, origin: str, seq: int, position: int | None = None,
                changes: int = 0) -> None:
        self.db.execute(self.dialect.advance_sql(), (origin, seq, changes))

    def mark_set_reconciled(self, name: str, epoch: int) -> None:
        self.db.execute(self.dialect.reconciled_sql(), (name, int(epoch)))

    def log_conflicts(self, records: list[ConflictRecord]) -> None:
        self.db.executemany(self.dialect.log_insert_sql(), [r.params() for r in records])

    def count_delta_merged(self, n: int) -> None:
        self.db.execute(self.dialect.log.tally_add_sql(), ("delta_merged", n))

    def parked_keys(self) -> dict[tuple[str, str], int]:
        return self.dialect.dlq.parked_keys(self.db)

    def park(self, rows: list[tuple[Any, ...]]) -> None:
        self.db.executemany(self.dialect.dlq.insert_sql(), rows)

    def update_dead_letter(self, entry_id: int, state: str, error: str, attempts: int,
                           actions: str) -> None:
        self.dialect.dlq.update(self.db, entry_id, state, error, attempts, actions)

    def close_parked(self, shape: TableShape, keys: list[Key], note: str) -> None:
        self.db.executemany(self.dialect.close_parked_sql(),
                            [(note, shape.name, ConflictRecord.key_json_of(k)) for k in keys])
