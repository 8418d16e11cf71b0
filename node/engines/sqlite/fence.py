"""Database-enforced fencing of a SQLite campus database (disaster recovery).

``install_fence`` runs in the engine's install transaction; SQLiteFence is
the engine's Fence role, on the main connection (the engine thread).

``_rs_fence(writable_until)`` holds one Unix time; +infinity (stored as
SQLite's REAL Inf, written ``9e999``) means never fenced. BEFORE INSERT /
UPDATE / DELETE triggers on every replicated table abort the statement once
the database's clock reaches that time, unless the write comes from the
node's apply session: that session sets ``_rs_state.applying = 1`` inside its
own transaction (and clears it before commit), so no other connection ever
sees it set. The node extends the time periodically: a dead node, or one
that lost its coordination lease, leaves the database to fence itself.

The triggers are named ``_rs_fence_<i|u|d>_<table>``; capture's are
``_rs_<i|u|d>_<table>`` and run AFTER the change, so neither set can replace
or reorder the other. A refused write raises ``sqlite3.IntegrityError``
(SQLITE_CONSTRAINT) with the fence message; the application's transaction
stays open, only the statement is undone.

Single-writer sets. The tables of a ``[[set]]`` take application writes at
one campus at a time, the set's writer. ``_rs_set_fence`` holds one row per
set: ``writable_until`` (Unix time; 0 = closed), the ``epoch`` the node last
opened or closed it under and the last epoch ``reconciled`` here (written by
an apply session, in its transaction). A configured set's row is created
closed if missing and never reset at open. A set's tables get the set guard
``_rs_sfence_<i|u|d>_<table>`` INSTEAD of the campus guard: it refuses an
application write unless the set's row is open (a missing row is closed),
whatever the campus fence says; apply sessions pass, as above.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable, Mapping

from node.engines.base import SetFence, fence_message, set_fence_message
from node.engines.fencing import check_fence_time, set_fences_of
from node.engines.sqlite.connections import SQLiteContext, write_transaction
from node.engines.sqlite.snapshot import q
from node.engines.sqlite.versions import SQLITE
from node.model import TableShape

FENCE_DDL = "CREATE TABLE IF NOT EXISTS _rs_fence(writable_until REAL NOT NULL)"
# 9e999 overflows to +Inf: the row a cluster that never fences keeps forever.
FENCE_SEED = ("INSERT INTO _rs_fence(writable_until) SELECT 9e999 "
              "WHERE NOT EXISTS (SELECT 1 FROM _rs_fence)")
SET_FENCE_DDL = ("CREATE TABLE IF NOT EXISTS _rs_set_fence(name TEXT PRIMARY KEY, "
                 "writable_until REAL NOT NULL DEFAULT 0, epoch INTEGER NOT NULL DEFAULT 0, "
                 "reconciled INTEGER NOT NULL DEFAULT 0)")
_TRIGGER_PREFIX = "_rs_fence_"
_SET_TRIGGER_PREFIX = "_rs_sfence_"
_UNIX_NOW = "(julianday('now') - 2440587.5) * 86400.0"
_EVENTS = {"i": "INSERT", "u": "UPDATE", "d": "DELETE"}


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def guard_trigger_sql(shape: TableShape, op: str, campus: str) -> str:
    """The BEFORE trigger refusing one kind of write to one table while fenced.

    The fence check comes first: unfenced (the usual case) it is false and
    the ``applying`` lookup is never made. Both are one-row lookups.
    """
    return (
        f"CREATE TRIGGER {q(_TRIGGER_PREFIX + op + '_' + shape.name)} "
        f"BEFORE {_EVENTS[op]} ON {q(shape.name)} "
        f"WHEN (SELECT writable_until FROM _rs_fence) <= {_UNIX_NOW} "
        f"AND (SELECT applying FROM _rs_state WHERE id = 1) = 0 BEGIN "
        f"SELECT RAISE(ABORT, {_literal(fence_message(campus))}); END"
    )


def set_guard_trigger_sql(shape: TableShape, op: str, campus: str, set_name: str) -> str:
    """The BEFORE trigger refusing one kind of write to one table of a
    single-writer set unless the set's row is open here. Closed (the usual
    case at every campus but the writer) the ``applying`` lookup decides."""
    return (
        f"CREATE TRIGGER {q(_SET_TRIGGER_PREFIX + op + '_' + shape.name)} "
        f"BEFORE {_EVENTS[op]} ON {q(shape.name)} "
        f"WHEN NOT EXISTS (SELECT 1 FROM _rs_set_fence WHERE name = {_literal(set_name)} "
        f"AND writable_until > {_UNIX_NOW}) "
        f"AND (SELECT applying FROM _rs_state WHERE id = 1) = 0 BEGIN "
        f"SELECT RAISE(ABORT, {_literal(set_fence_message(campus, set_name))}); END"
    )


def install_fence(conn: sqlite3.Connection, shapes: Iterable[TableShape], campus: str,
                  sets: Mapping[str, str] | None = None) -> None:
    """Create the fence row (+inf) if missing, a closed row for every set in
    ``sets`` (table -> set name) that has none, and (re)install the guards: the
    set guard on a set's tables, the campus guard on every other replicated
    table; drop guards of the other kind, and those left on tables no longer
    replicated. Runs in the caller's install transaction."""
    sets = sets or {}
    conn.execute(FENCE_DDL)
    conn.execute(FENCE_SEED)
    conn.execute(SET_FENCE_DDL)
    for seed in sorted(set(sets.values())):
        conn.execute("INSERT OR IGNORE INTO _rs_set_fence(name) VALUES (?)", (seed,))
    wanted: set[str] = set()
    for shape in shapes:
        set_name = sets.get(shape.name)
        for op in _EVENTS:
            if set_name is None:
                name = _TRIGGER_PREFIX + op + "_" + shape.name
                create = guard_trigger_sql(shape, op, campus)
            else:
                name = _SET_TRIGGER_PREFIX + op + "_" + shape.name
                create = set_guard_trigger_sql(shape, op, campus, set_name)
            wanted.add(name.lower())
            conn.execute(f"DROP TRIGGER IF EXISTS {q(name)}")
            conn.execute(create)
    for prefix in (_TRIGGER_PREFIX, _SET_TRIGGER_PREFIX):
        stale = [name for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND substr(name, 1, ?) = ?",
            (len(prefix), prefix)) if name.lower() not in wanted]
        for name in stale:
            conn.execute(f"DROP TRIGGER IF EXISTS {q(name)}")


class SQLiteFence:
    """The Fence role of SQLiteEngine: the campus fence and the set fences, on
    the engine's main connection (from the shared context)."""

    own_fence_connection = False

    def __init__(self, ctx: SQLiteContext) -> None:
        self.ctx = ctx

    def close_fence(self) -> None:
        """Nothing to close: the fence uses the engine's main connection."""

    def set_fence(self, writable_until: float) -> None:
        value = check_fence_time(writable_until)
        with write_transaction(self.ctx.conn) as conn:
            if conn.execute("UPDATE _rs_fence SET writable_until = ?", (value,)).rowcount == 0:
                conn.execute("INSERT INTO _rs_fence(writable_until) VALUES (?)", (value,))

    def fence_state(self) -> float:
        row = self.ctx.conn.execute("SELECT writable_until FROM _rs_fence LIMIT 1").fetchone()
        return math.inf if row is None or row[0] is None else float(row[0])

    def set_set_fence(self, name: str, writable_until: float, epoch: int) -> None:
        value = check_fence_time(writable_until)
        with write_transaction(self.ctx.conn) as conn:
            conn.execute(SQLITE.set_set_fence_sql(), (name, value, int(epoch)))

    def wait_set_writers(self, name: str, timeout: float = 5.0) -> None:
        """Nothing to wait for: closing the set (BEGIN IMMEDIATE) waited for
        any open write transaction to end."""

    def set_fence_states(self) -> dict[str, SetFence]:
        return set_fences_of(self.ctx.conn.execute(SQLITE.set_fences_sql()))

    def end_app_sessions(self) -> int:
        """SQLite has no sessions to end: the guard refuses the next write of
        every open connection."""
        return 0
