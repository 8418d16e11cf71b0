"""The SQLite engine's ApplyTarget role: apply sessions on the main connection.

An apply session is one ``BEGIN IMMEDIATE`` transaction (it holds the
database's write lock throughout) with ``_rs_state.applying = 1`` set inside
it, so the capture triggers skip what it writes and the fence guards let
it pass. Row versions, the conflict log and dead letters are written
through its version-store half (node.engines.sqlite.versions); the applied
vector is recorded in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from node.engines.sqlite.connections import SQLiteContext
from node.engines.sqlite.snapshot import q
from node.engines.sqlite.versions import DLQ, SQLiteVersionStore
from node.model import TableShape


class SQLiteApplySession(SQLiteVersionStore):
    holds_row_locks = False  # the session holds the database's one write lock

    def __init__(self, ctx: SQLiteContext) -> None:
        super().__init__(ctx.conn, ctx.recorded_position, ctx.shape_of, ctx.upsert_sql,
                         ctx.delete_sql)
        self.ctx = ctx

    def lock_rows(self, shape: TableShape, keys: list[Any]) -> None:
        """Nothing to do: BEGIN IMMEDIATE took the write lock for the session."""

    def clear(self, table: str) -> None:
        shape = self.ctx.shape_of(table)
        self.conn.execute(f"DELETE FROM {q(shape.name)}")
        self.clear_versions(shape)

    def mark_base_versions(self) -> None:
        """Nothing to do: a row without recorded versions is a base version."""

    def advance(self, origin: str, seq: int, position: int | None = None,
                changes: int = 0) -> None:
        if position is not None:  # a local transaction's versions are now recorded
            self.recorded_position = max(self.recorded_position, position)
        super().advance(origin, seq, position, changes)


class SQLiteApplyTarget:
    """Apply sessions and the applied vector of a SQLite campus database."""

    def __init__(self, ctx: SQLiteContext) -> None:
        self.ctx = ctx

    @contextmanager
    def apply_session(self) -> Iterator[SQLiteApplySession]:
        conn = self.ctx.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("UPDATE _rs_state SET applying = 1 WHERE id = 1")
            yield SQLiteApplySession(self.ctx)
            conn.execute("UPDATE _rs_state SET applying = 0 WHERE id = 1")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def applied_vector(self) -> dict[str, int]:
        return self.ctx.applied_vector()

    def apply_accounting(self) -> tuple[dict[str, int], int, dict[str, int]]:
        """The applied vector, foreign row changes applied, and dead letters by
        state, from one read."""
        conn = self.ctx.conn
        conn.execute("BEGIN")
        try:
            rows = conn.execute("SELECT origin, seq, changes FROM _rs_applied").fetchall()
            dead = DLQ.counts(self.ctx.conn, self.ctx.campus)
        finally:
            conn.execute("COMMIT")
        return ({o: s for o, s, _ in rows}, sum(n for o, _, n in rows if o != self.ctx.campus),
                dead)
