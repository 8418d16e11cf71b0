"""Which apply failures are transient: retried, never dead-lettered.

A deadlock, a serialization failure, a lock timeout, a lost connection or a
server shutting down say nothing about the change being applied: the same
change goes through when tried again. Only other errors (a constraint this
campus has, a value its column cannot hold) may park a change in the
dead-letter queue (node.conflicts.deadletter).

Engines wrap driver errors in ``EngineError`` with the driver's error as the
cause, so the whole cause chain is looked at. Classification is by the
driver's own codes (PostgreSQL SQLSTATE, SQLite result codes), never by
message text, except for a psycopg connection error that has no SQLSTATE.
"""

from __future__ import annotations

import sqlite3

# PostgreSQL SQLSTATEs (and classes) that a retry of the same work survives.
_PG_TRANSIENT_STATES = {
    "40001": "serialization failure",
    "40P01": "deadlock",
    "55P03": "lock timeout",
    "57014": "statement cancelled",
    "57P01": "server shutting down",
    "57P02": "server crashed",
    "57P03": "server not accepting connections yet",
    "53300": "too many connections",
    "25006": "read-only transaction (fenced)",
}
_PG_TRANSIENT_CLASSES = {
    "08": "connection lost",
    "53": "server out of resources",
}
# SQLite primary result codes: busy and locked.
_SQLITE_BUSY = {5: "database busy", 6: "table locked"}


def transient_reason(error: BaseException) -> str | None:
    """A few words naming why ``error`` is transient, or None if it is not."""
    seen: set[int] = set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        reason = _one(e)
        if reason is not None:
            return reason
        e = e.__cause__ or e.__context__
    return None


def _one(e: BaseException) -> str | None:
    state = getattr(e, "sqlstate", None)
    if isinstance(state, str) and state:
        return _PG_TRANSIENT_STATES.get(state) or _PG_TRANSIENT_CLASSES.get(state[:2])
    if type(e).__module__.startswith("psycopg") and type(e).__name__ in (
            "OperationalError", "InterfaceError"):
        # No SQLSTATE: the connection is lost (server gone, network), unless
        # the client refused the query itself on a live connection (e.g. too
        # many parameters), which the same work would hit again.
        pgconn = getattr(e, "pgconn", None)
        status = getattr(pgconn, "status", None)
        if pgconn is None or status is None or int(status) != 0:  # 0: CONNECTION_OK
            return "connection lost"
        return None
    if isinstance(e, sqlite3.Error):
        code = getattr(e, "sqlite_errorcode", None)
        if isinstance(code, int):
            return _SQLITE_BUSY.get(code & 0xFF)
    return None
