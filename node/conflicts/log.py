"""Reading and trimming the conflict log, on either engine.

The log is a table in the campus database (``_rs_conflicts`` on SQLite,
``ringsync.conflicts`` on PostgreSQL) written by the apply transaction
(node/engines/*versions.py). Both have the same columns, so one set of
queries serves both; only the placeholder differs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

COLUMNS = ("id", "at", "tbl", "key", "kind", "rule", "winner", "local_origin", "local_hlc",
           "remote_origin", "remote_seq", "remote_hlc", "local_row", "remote_row", "skew_ms",
           "state", "resolution")


class _Conn(Protocol):
    def execute(self, query: Any, params: Any = ...) -> Any: ...


@dataclass(frozen=True)
class ConflictQuery:
    table: str = ""
    campus: str = ""      # either side's origin
    since: float = 0.0    # Unix seconds
    limit: int = 100
    id: int = 0           # one entry
    state: str = ""       # logged | parked | flagged | resolved


class ConflictLog:
    def __init__(self, table: str, mark: str) -> None:
        self.table = table
        self.mark = mark

    def query(self, conn: _Conn, q: ConflictQuery) -> list[dict[str, Any]]:
        where: list[str] = ["1 = 1"]
        params: list[Any] = []
        m = self.mark
        if q.id:
            where.append(f"id = {m}")
            params.append(q.id)
        if q.table:
            where.append(f"tbl = {m}")
            params.append(q.table)
        if q.campus:
            where.append(f"(local_origin = {m} OR remote_origin = {m})")
            params += [q.campus, q.campus]
        if q.since:
            where.append(f"at >= {m}")
            params.append(q.since)
        if q.state:
            where.append(f"state = {m}")
            params.append(q.state)
        sql = (f"SELECT {', '.join(COLUMNS)} FROM {self.table} WHERE {' AND '.join(where)} "
               f"ORDER BY id DESC LIMIT {m}")
        params.append(max(1, min(q.limit or 100, 10_000)))
        return [dict(zip(COLUMNS, r, strict=True)) for r in conn.execute(sql, params).fetchall()]

    def counts(self, conn: _Conn) -> dict[str, int]:
        out = {"logged": 0, "parked": 0, "flagged": 0, "resolved": 0}
        for state, n in conn.execute(
                f"SELECT state, count(*) FROM {self.table} GROUP BY state").fetchall():
            out[str(state)] = int(n)
        return out

    def prune(self, conn: _Conn, keep_rows: int, keep_days: int) -> None:
        """Drop what is beyond the retention (never a parked conflict)."""
        m = self.mark
        conn.execute(f"DELETE FROM {self.table} WHERE state <> 'parked' AND at < {m}",
                     (time.time() - keep_days * 86400.0,))
        conn.execute(
            f"DELETE FROM {self.table} WHERE state <> 'parked' AND id <= "
            f"(SELECT max(id) FROM {self.table}) - {m}", (keep_rows,))
