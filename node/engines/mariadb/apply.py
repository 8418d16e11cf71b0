"""The MariaDB engine's ApplyTarget role: apply sessions on the apply connection.

An apply session is one InnoDB transaction on the connection whose writes
carry ringsync's GTID domain (so capture drops what it commits) and
``@rs_apply`` (so the fence guards let it pass). Rows are written in
batched runs (node.engines.sessionbase: pymysql sends an executemany of
one INSERT ... ON DUPLICATE KEY UPDATE as multi-row statements), and the
applied vector is recorded in the same transaction.

Row versions, the conflict log and dead letters are written through its
version-store half (node.engines.mariadb.versions).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pymysql

from node.engines.mariadb.connections import Cursor, MariaContext
from node.engines.mariadb.tables import DLQ, MARIA
from node.engines.mariadb.values import quote
from node.engines.mariadb.versions import MariaVersionStore, mark_base_versions
from node.model import TableShape
from ringsync.errors import EngineError


class MariaApplySession(MariaVersionStore):
    holds_row_locks = True

    def lock_rows(self, shape: TableShape, keys: list[Any]) -> None:
        """SELECT ... FOR UPDATE, in key order, a run of keys at a time."""
        if not keys:
            return
        cols = ", ".join(quote(c) for c in shape.key_columns)
        one = "(" + ", ".join("%s" for _ in shape.key_columns) + ")"
        for i in range(0, len(keys), 1000):
            run = sorted(keys[i:i + 1000])
            self.db.execute(
                f"SELECT 1 FROM {quote(shape.name)} WHERE ({cols}) IN "
                f"({', '.join(one for _ in run)}) ORDER BY {cols} FOR UPDATE",
                [MARIA.native(v) for key in run for v in key])

    def clear(self, table: str) -> None:
        shape = self.ctx.shape_of(table)
        self.db.execute(f"DELETE FROM {quote(shape.name)}")
        self.clear_versions(shape)

    def mark_base_versions(self) -> None:
        """Rows copied in by a join become base versions."""
        for shape in self.ctx.shapes.values():
            mark_base_versions(self.cur, shape)


class MariaApplyTarget:
    """Apply sessions and the applied vector of a MariaDB campus database."""

    def __init__(self, ctx: MariaContext) -> None:
        self.ctx = ctx

    @contextmanager
    def apply_session(self) -> Iterator[MariaApplySession]:
        ctx = self.ctx
        if ctx.apply is None:
            raise EngineError("the MariaDB engine is not open")
        if not ctx.apply.open:
            ctx.apply = ctx.connect_apply()
        conn = ctx.apply
        try:
            conn.begin()
            yield MariaApplySession(ctx, Cursor(conn.cursor()))
            conn.commit()
        except BaseException as e:
            try:
                conn.rollback()
            except pymysql.err.MySQLError:
                conn.close()  # a new one at the next session
            if isinstance(e, pymysql.err.MySQLError):
                raise EngineError(f"apply failed on MariaDB: {e}") from e
            raise

    def applied_vector(self) -> dict[str, int]:
        return self.ctx.applied_vector()

    def apply_accounting(self) -> tuple[dict[str, int], int, dict[str, int]]:
        """The applied vector, foreign row changes applied, and dead letters by
        state, from one consistent read on the main connection (status asks
        every second: no new connection)."""
        self.ctx.query("SELECT 1")  # reconnects once after a server restart
        cur = self.ctx.conn
        cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        try:
            rows = cur.execute("SELECT origin, seq, changes FROM _rs_applied").fetchall()
            dead = DLQ.counts(cur, self.ctx.campus)
        finally:
            cur.execute("ROLLBACK")
        return ({str(o): int(s) for o, s, _ in rows},
                sum(int(n) for o, _, n in rows if o != self.ctx.campus), dead)
