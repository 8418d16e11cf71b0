"""Reading and trimming the conflict log, on either engine.

The log is a table in the campus database (``_rs_conflicts`` on SQLite,
``ringsync.conflicts`` on PostgreSQL) written by the apply transaction
(node/engines/*/versions.py). Both have the same columns, so one set of
queries serves every engine; only the spelling differs (node.spelling). Entries come back as
node.conflicts.entries.ConflictEntry.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

from node.conflicts.entries import CONFLICT_COLUMNS, ConflictEntry
from node.spelling import Spelling, columns_sql


class _Conn(Protocol):
    def execute(self, query: Any, params: Any = ...) -> Any: ...


def select(conn: _Conn, table: str, columns: tuple[str, ...], mark: str,
           filters: list[tuple[str, Any]], order: str, limit: int) -> list[tuple[Any, ...]]:
    """Rows of a log table, ``columns`` in order: each filter whose value is set
    applies (its ``{m}`` placeholders all take that value); at most ``limit`` rows."""
    where, params = ["1 = 1"], []  # type: list[str], list[Any]
    for clause, value in filters:
        if value:
            where.append(clause.format(m=mark))
            params += [value] * clause.count("{m}")
    params.append(max(1, min(limit or 100, 10_000)))
    rows = conn.execute(f"SELECT {columns_sql(columns)} FROM {table} WHERE "
                        f"{' AND '.join(where)} ORDER BY {order} LIMIT {mark}", params).fetchall()
    return [tuple(r) for r in rows]


@dataclass(frozen=True)
class ConflictQuery:
    table: str = ""
    campus: str = ""      # either side's origin
    since: float = 0.0    # Unix seconds
    limit: int = 100
    id: int = 0           # one entry
    state: str = ""       # logged | parked | flagged | resolved


class ConflictLog:
    def __init__(self, table: str, spelling: Spelling, tally: str = "") -> None:
        self.table = table
        self.spelling = spelling
        self.mark = spelling.mark
        # counts kept instead of entries (name -> n): delta_merged, one row
        # updated once per apply batch
        self.tally = tally

    def tally_ddl(self) -> str:
        return f"CREATE TABLE IF NOT EXISTS {self.tally}(name TEXT PRIMARY KEY, n BIGINT NOT NULL)"

    def tally_add_sql(self) -> str:
        return self.spelling.upsert(self.tally, ("name", "n"), ("name",), add=("n",))

    def query(self, conn: _Conn, q: ConflictQuery) -> list[ConflictEntry]:
        m = self.mark
        filters = [("id = {m}", q.id), ("tbl = {m}", q.table), ("at >= {m}", q.since),
                   ("state = {m}", q.state),
                   ("(local_origin = {m} OR remote_origin = {m})", q.campus)]
        rows = select(conn, self.table, CONFLICT_COLUMNS, m, filters, "id DESC", q.limit)
        return [ConflictEntry.from_row(r) for r in rows]

    def counts(self, conn: _Conn) -> dict[str, int]:
        out = {"logged": 0, "parked": 0, "flagged": 0, "resolved": 0, "delta_merged": 0}
        for state, n in conn.execute(
                f"SELECT state, count(*) FROM {self.table} GROUP BY state").fetchall():
            out[str(state)] = int(n)
        if self.tally:
            for name, n in conn.execute(f"SELECT name, n FROM {self.tally}").fetchall():
                out[str(name)] = int(n)
        return out

    def prune(self, conn: _Conn, keep_rows: int, keep_days: int) -> None:
        """Drop what is beyond the retention (never a parked conflict)."""
        m = self.mark
        conn.execute(f"DELETE FROM {self.table} WHERE state <> 'parked' AND at < {m}",
                     (time.time() - keep_days * 86400.0,))
        conn.execute(
            f"DELETE FROM {self.table} WHERE state <> 'parked' AND id <= "
            f"(SELECT max(id) FROM {self.table}) - {m}", (keep_rows,))
