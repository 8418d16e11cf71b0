"""How each engine's SQL spells what the shared statements need.

ringsync's own tables (the applied vector, the conflict log and its tally,
the dead-letter queue, the set fences) are read and written with the same
statements on every engine (node.engines.dialect, node.conflicts.log,
node.conflicts.deadletter). Engines differ in three things those statements
use: the parameter mark (``%s`` or ``?``), the upsert (PostgreSQL and SQLite
``ON CONFLICT ... DO UPDATE``, MariaDB ``ON DUPLICATE KEY UPDATE``) and how
a column named like a keyword is quoted: the statements write ``"key"``,
which MariaDB reads as a name only with ``ANSI_QUOTES`` in the session's
sql_mode (the MariaDB engine's own sessions set it).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

ON_CONFLICT = "on conflict"
ON_DUPLICATE_KEY = "on duplicate key"


def columns_sql(columns: Iterable[str]) -> str:
    """A column list, every name quoted (``key`` is a keyword in MariaDB)."""
    return ", ".join(f'"{c}"' for c in columns)


@dataclass(frozen=True)
class Spelling:
    mark: str  # "%s" or "?"
    upsert_style: str = ON_CONFLICT

    def marks(self, n: int) -> str:
        return ", ".join(self.mark for _ in range(n))

    def upsert(self, table: str, columns: tuple[str, ...], conflict: tuple[str, ...],
               replace: tuple[str, ...] = (), add: tuple[str, ...] = ()) -> str:
        """INSERT one row; when ``conflict`` (the primary key) matches a row,
        set each ``replace`` column to the new value and add the new value to
        each ``add`` column instead."""
        head = f"INSERT INTO {table}({columns_sql(columns)}) VALUES ({self.marks(len(columns))})"
        if self.upsert_style == ON_DUPLICATE_KEY:
            sets = [f'"{c}" = VALUES("{c}")' for c in replace]
            sets += [f'"{c}" = "{c}" + VALUES("{c}")' for c in add]
            return f"{head} ON DUPLICATE KEY UPDATE {', '.join(sets)}"
        sets = [f'"{c}" = EXCLUDED."{c}"' for c in replace]
        sets += [f'"{c}" = {table}."{c}" + EXCLUDED."{c}"' for c in add]
        return f"{head} ON CONFLICT ({columns_sql(conflict)}) DO UPDATE SET {', '.join(sets)}"
