"""How each engine spells the statements every engine makes the same way.

Every engine keeps the same internal tables under its own names and spells
a few things its own way (node.spelling: the parameter mark, the upsert,
quoted names): PostgreSQL ``ringsync.applied`` and ``%s``, SQLite
``_rs_applied`` and ``?``. An engine describes itself with one Dialect
(node.engines.postgres.versions.PG, node.engines.sqlite.versions.SQLITE);
the statements built from it, and
the writes made with them (node.engines.sessionbase for apply sessions,
``write_local_rows`` for an operator's local write), are written once
here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from node.conflicts.deadletter import DeadLetterTable
from node.conflicts.driver import log_insert_sql
from node.conflicts.log import ConflictLog
from node.spelling import Spelling


class Executes(Protocol):
    """A DB-API connection or cursor (sqlite3 or psycopg)."""

    def execute(self, query: Any, params: Any = ..., /) -> Any: ...


@dataclass(frozen=True)
class Dialect:
    """One engine's names for ringsync's tables, its parameter mark and its
    driver's form of a canonical value."""

    spelling: Spelling
    applied: str  # the applied vector: origin, seq, changes
    set_fence: str  # single-writer sets: name, writable_until, epoch, reconciled
    log: ConflictLog  # the conflict log (its table and tally)
    dlq: DeadLetterTable
    native: Callable[[Any], Any]  # canonical value -> driver parameter

    @property
    def mark(self) -> str:
        return self.spelling.mark

    def values(self, row: Iterable[Any]) -> tuple[Any, ...]:
        return tuple(self.native(v) for v in row)

    def advance_sql(self) -> str:
        """Record (origin, seq) as applied and add to its row-change count."""
        return self.spelling.upsert(self.applied, ("origin", "seq", "changes"), ("origin",),
                                    replace=("seq",), add=("changes",))

    def reconciled_sql(self) -> str:
        """``reconciled = epoch`` for a set; a missing row is created closed."""
        return self.spelling.upsert(self.set_fence, ("name", "reconciled"), ("name",),
                                    replace=("reconciled",))

    def set_set_fence_sql(self) -> str:
        """A set's writable_until and epoch; ``reconciled`` is kept."""
        return self.spelling.upsert(self.set_fence, ("name", "writable_until", "epoch"),
                                    ("name",), replace=("writable_until", "epoch"))

    def set_fences_sql(self) -> str:
        return f"SELECT name, writable_until, epoch, reconciled FROM {self.set_fence}"

    def log_insert_sql(self) -> str:
        return log_insert_sql(self.log.table, self.mark)

    def mark_conflict_sql(self) -> str:
        m = self.mark
        return f"UPDATE {self.log.table} SET state = {m}, resolution = {m} WHERE id = {m}"

    def close_parked_sql(self) -> str:
        """A parked conflict of one row becomes resolved, with a note."""
        m = self.mark
        return (f"UPDATE {self.log.table} SET state = 'resolved', resolution = {m} "
                f"WHERE state = 'parked' AND tbl = {m} AND \"key\" = {m}")


def write_local_rows(db: Executes, dialect: Dialect, upsert: Any, delete: Any,
                     key: tuple[Any, ...],
                     row: tuple[Any, ...] | None, prior: tuple[Any, ...] | None) -> None:
    """An operator's local write, inside the caller's transaction: ``prior``
    (the row as it should have been) and then ``row`` upserted, or the key
    deleted when ``row`` is None. ``upsert`` and ``delete`` are the table's
    statements."""
    for image in (prior, row):
        if image is not None:
            db.execute(upsert, dialect.values(image))
    if row is None:
        db.execute(delete, dialect.values(key))
