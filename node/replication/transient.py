"""Which apply failures are transient: retried, never dead-lettered.

A deadlock, a serialization failure, a lock timeout, a lost connection or a
server shutting down say nothing about the change being applied: the same
change goes through when tried again. Only other errors (a constraint this
campus has, a value its column cannot hold) may park a change in the
dead-letter queue (node.conflicts.deadletter).

Engines wrap driver errors in ``EngineError`` with the driver's error as the
cause, so the whole cause chain is looked at. Classification is by the
driver's own codes (PostgreSQL SQLSTATE, SQLite result codes, MariaDB error
numbers), never by message text, except for a psycopg connection error that
has no SQLSTATE.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

# until_answered: the pause between tries, and how often a long wait is logged again
ANSWER_RETRY_SECONDS = 1.0
ANSWER_LOG_SECONDS = 30.0

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
# MariaDB error codes (server ER_* and client CR_*) that a retry survives.
_MARIADB_TRANSIENT = {
    1205: "lock wait timeout",
    1213: "deadlock",
    1040: "too many connections",
    1053: "server shutting down",
    1927: "connection killed",
    4031: "connection closed by the server (idle)",
    1290: "read-only server (fenced)",
    2003: "server not taking connections",
    2006: "server gone away",
    2013: "connection lost",
}


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
    if type(e).__module__.startswith("pymysql"):
        code = e.args[0] if e.args else None
        if type(e).__name__ == "InterfaceError":  # the client found the connection closed
            return "connection lost"
        return _MARIADB_TRANSIENT.get(code) if isinstance(code, int) else None
    if isinstance(e, sqlite3.Error):
        code = getattr(e, "sqlite_errorcode", None)
        if isinstance(code, int):
            return _SQLITE_BUSY.get(code & 0xFF)
    return None


async def until_answered(what: str, call: Callable[[], Awaitable[T]],
                         note: Callable[[str], None] | None = None,
                         pause: float = ANSWER_RETRY_SECONDS) -> T:
    """``await call()`` until it returns. A loop's first reads (the applied
    vector, the adopted one) meet a database that is restarting after a
    crash or lost for a moment: that is waited out, logged (at once, then
    every ``ANSWER_LOG_SECONDS``) and passed to ``note`` for status, never a
    reason for the node to stop. Any other error is raised at once."""
    since = logged = 0.0
    while True:
        try:
            result = await call()
        except Exception as e:
            reason = transient_reason(e)
            if reason is None:
                raise
            now = time.monotonic()
            since = since or now
            text = f"{what}: the database does not answer ({reason}) for {now - since:.0f}s; " \
                   f"retrying: {e}"
            if note is not None:
                note(text)
            if not logged or now - logged >= ANSWER_LOG_SECONDS:
                log.warning("%s", text)
                logged = now
            await asyncio.sleep(pause)
            continue
        if since:
            log.info("%s: the database answers again after %.0fs", what,
                     time.monotonic() - since)
        return result
