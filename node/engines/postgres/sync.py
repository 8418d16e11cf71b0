"""Synchronous mode on PostgreSQL: the node's capture connection as the
synchronous standby.

With ``durability = "sync"`` the server's ``synchronous_standby_names``
names the capture connection (application_name ``ringsync_<campus>``), so
PostgreSQL returns a commit only once that connection reports it flushed;
the reader (node.engines.postgres.capture) reports a transaction flushed only
after another campus acknowledged it in its journal (node.replication.syncrep).
The node's own sessions commit with ``synchronous_commit = local``: what
they write came from other campuses, or is bookkeeping.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import psycopg

from node.engines.postgres.server import slot_name
from ringsync.dsn import redact_dsn
from ringsync.errors import EngineError

log = logging.getLogger(__name__)

RELOAD_WAIT_SECONDS = 5.0


def standby_name(campus: str) -> str:
    """The capture connection's application_name: the slot's name."""
    return slot_name(campus)


def _names(conn: psycopg.Connection[Any]) -> str:
    return str(conn.execute("SHOW synchronous_standby_names").fetchone()[0])  # type: ignore[index]


def _set(conn: psycopg.Connection[Any], name: str, present: bool, shown: str) -> None:
    """Name (or stop naming) ``name`` as the synchronous standby, and wait for the reload."""
    command = (f"ALTER SYSTEM SET synchronous_standby_names = 'FIRST 1 (\"{name}\")'" if present
               else "ALTER SYSTEM RESET synchronous_standby_names")
    try:
        conn.execute(command)
        conn.execute("SELECT pg_reload_conf()")
    except psycopg.errors.InsufficientPrivilege:
        raise EngineError(
            f"PostgreSQL at {shown}: synchronous_standby_names must {'' if present else 'not '}"
            f"name {name} for this campus's durability; the node's role may not change it: as a "
            f"superuser run  {command}; SELECT pg_reload_conf();"
        ) from None
    deadline = time.monotonic() + RELOAD_WAIT_SECONDS
    while (name in _names(conn)) != present:
        if time.monotonic() > deadline:
            raise EngineError(f"PostgreSQL at {shown} did not reload synchronous_standby_names")
        time.sleep(0.05)


def configure(conn: psycopg.Connection[Any], campus: str, sync: bool, dsn: str) -> None:
    """Make the server's synchronous replication match this campus's durability.
    ``dsn`` connects; messages show it redacted (it may carry a password)."""
    shown = redact_dsn(dsn)
    name = standby_name(campus)
    names = _names(conn)
    if sync:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as plain:
            # as an application sees it (the node's own sessions commit locally)
            commit = str(plain.execute("SHOW synchronous_commit").fetchone()[0])  # type: ignore[index]
        if commit in ("off", "local"):
            raise EngineError(
                f"PostgreSQL at {shown} has synchronous_commit = {commit}, so commits would not "
                f"wait for another campus; set it to on (ALTER SYSTEM SET synchronous_commit = "
                f"on; SELECT pg_reload_conf();) or use durability = \"async\"")
        if name not in names:
            if names.strip():
                raise EngineError(
                    f"PostgreSQL at {shown} already has synchronous_standby_names = {names!r}; "
                    f"for durability = \"sync\" it must name ringsync's capture connection "
                    f"\"{name}\" (e.g. FIRST 1 (\"{name}\")): change it, then restart the node")
            _set(conn, name, True, shown)
        end_unacknowledged(conn, shown)
    elif name in names:
        # Left over from sync mode: commits would wait for a standby that never answers.
        _set(conn, name, False, shown)


def end_unacknowledged(conn: psycopg.Connection[Any], shown: str) -> int:
    """End the sessions whose commit is still waiting for the synchronous
    standby when the node starts (before its capture connection reports).

    They committed while the previous node ran (or while none did) and no peer
    acknowledged them then: the application has not been told they committed.
    Left waiting, they would return success once this node's capture journals
    them and a peer acknowledges, after a failover may have moved their
    campus's users (or a single-writer set) elsewhere: a write acknowledged by
    a database that served nobody by then. Ended, the application sees an
    error, like any unacknowledged commit; the transaction itself is committed
    here and replicates."""
    try:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE wait_event = 'SyncRep' AND datname = current_database() "
            "AND pid <> pg_backend_pid()").fetchall()
    except psycopg.Error as e:
        log.error("sync: cannot end the sessions waiting for a peer's acknowledgement from "
                  "before this node started (%s); they may return success late. GRANT "
                  "pg_signal_backend TO <the node's role>", str(e).strip())
        return 0
    ended = sum(1 for (ok,) in rows if ok)
    if ended:
        log.warning("sync: ended %d application session(s) whose commit was waiting, since "
                    "before this node started, for a peer's acknowledgement: committed here, "
                    "never acknowledged to the application; they replicate now (%s)", ended, shown)
    return ended
