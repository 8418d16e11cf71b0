"""The PostgreSQL engine's ApplyTarget role: apply sessions on the apply connection.

An apply session is one transaction on the connection set up under the
replication origin ``ringsync`` (so capture drops what it commits, and the
fence guards let it pass). Row versions, the conflict log and dead letters
are written through its version-store half (node.engines.postgres.versions);
the applied vector is recorded in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql

from node.engines.postgres.connections import PgContext
from node.engines.postgres.stage import Stager
from node.engines.postgres.versions import DLQ, PgVersionStore
from node.model import TableShape
from ringsync.errors import EngineError


class PgApplySession(PgVersionStore):
    holds_row_locks = True

    def __init__(self, ctx: PgContext, conn: psycopg.Connection[Any]) -> None:
        super().__init__(conn.cursor(), ctx.shape_of, ctx.upsert_sql, ctx.delete_sql,
                         ctx.stager)
        self.ctx = ctx

    def lock_rows(self, shape: TableShape, keys: list[Any]) -> None:
        """SELECT ... ORDER BY key FOR UPDATE: rows are locked in key order."""
        if not keys:
            return
        self.cur.execute(*self._keyed(shape, self._key_source(shape, keys),
                                      sql.Identifier(shape.name), [sql.SQL("1")], lock=True,
                                      ordered=True))

    def clear(self, table: str) -> None:
        shape = self.ctx.shape_of(table)
        self.cur.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(shape.name)))
        self.clear_versions(shape)

    def mark_base_versions(self) -> None:
        """Rows copied in by a join become base versions."""
        for shape in self.ctx.shapes.values():
            self.mark_base(shape)


class PgApplyTarget:
    """Apply sessions and the applied vector of a PostgreSQL campus database."""

    def __init__(self, ctx: PgContext) -> None:
        self.ctx = ctx

    @contextmanager
    def apply_session(self) -> Iterator[PgApplySession]:
        ctx = self.ctx
        if ctx.apply is None:
            raise EngineError("the PostgreSQL engine is not open")
        conn = ctx.apply
        if conn.broken or conn.closed:
            ctx.apply = conn = ctx.connect_apply()
            ctx.stager = Stager()
        committed = False
        try:
            with conn.transaction():
                yield PgApplySession(ctx, conn)
            committed = True
        except psycopg.Error as e:
            raise EngineError(f"apply failed on PostgreSQL: {e}") from e
        finally:
            ctx.stager.end(committed)

    def applied_vector(self) -> dict[str, int]:
        return self.ctx.applied_vector()

    def apply_accounting(self) -> tuple[dict[str, int], int, dict[str, int]]:
        """The applied vector, foreign row changes applied, and dead letters by
        state, from one snapshot."""
        ctx = self.ctx
        ctx.ensure_connected()
        with ctx.conn.transaction():  # status asks every second: no new connection
            ctx.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            rows = ctx.conn.execute(
                "SELECT origin, seq, changes FROM ringsync.applied").fetchall()
            dead = DLQ.counts(ctx.conn, ctx.campus)
        return ({o: int(s) for o, s, _ in rows},
                sum(int(n) for o, _, n in rows if o != ctx.campus), dead)
