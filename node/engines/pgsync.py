"""Synchronous mode on PostgreSQL: the node's capture connection as the
synchronous standby.

With ``durability = "sync"`` the server's ``synchronous_standby_names``
names the capture connection (application_name ``ringsync_<campus>``), so
PostgreSQL returns a commit only once that connection reports it flushed;
the reader (node.engines.pgcapture) reports a transaction flushed only
after another campus acknowledged it in its journal (node.replication.syncrep).
The node's own sessions commit with ``synchronous_commit = local``: what
they write came from other campuses, or is bookkeeping.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg

from ringsync.errors import EngineError

RELOAD_WAIT_SECONDS = 5.0


def standby_name(campus: str) -> str:
    return f"ringsync_{campus}".replace("-", "_")


def _names(conn: psycopg.Connection[Any]) -> str:
    return str(conn.execute("SHOW synchronous_standby_names").fetchone()[0])  # type: ignore[index]


def _set(conn: psycopg.Connection[Any], name: str, present: bool, dsn: str) -> None:
    """Name (or stop naming) ``name`` as the synchronous standby, and wait for the reload."""
    command = (f"ALTER SYSTEM SET synchronous_standby_names = 'FIRST 1 (\"{name}\")'" if present
               else "ALTER SYSTEM RESET synchronous_standby_names")
    try:
        conn.execute(command)
        conn.execute("SELECT pg_reload_conf()")
    except psycopg.errors.InsufficientPrivilege:
        raise EngineError(
            f"PostgreSQL at {dsn}: synchronous_standby_names must {'' if present else 'not '}"
            f"name {name} for this campus's durability; the node's role may not change it: as a "
            f"superuser run  {command}; SELECT pg_reload_conf();"
        ) from None
    deadline = time.monotonic() + RELOAD_WAIT_SECONDS
    while (name in _names(conn)) != present:
        if time.monotonic() > deadline:
            raise EngineError(f"PostgreSQL at {dsn} did not reload synchronous_standby_names")
        time.sleep(0.05)


def configure(conn: psycopg.Connection[Any], campus: str, sync: bool, dsn: str) -> None:
    """Make the server's synchronous replication match this campus's durability."""
    name = standby_name(campus)
    names = _names(conn)
    if sync:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as plain:
            # as an application sees it (the node's own sessions commit locally)
            commit = str(plain.execute("SHOW synchronous_commit").fetchone()[0])  # type: ignore[index]
        if commit in ("off", "local"):
            raise EngineError(
                f"PostgreSQL at {dsn} has synchronous_commit = {commit}, so commits would not "
                f"wait for another campus; set it to on (ALTER SYSTEM SET synchronous_commit = "
                f"on; SELECT pg_reload_conf();) or use durability = \"async\"")
        if name not in names:
            if names.strip():
                raise EngineError(
                    f"PostgreSQL at {dsn} already has synchronous_standby_names = {names!r}; "
                    f"for durability = \"sync\" it must name ringsync's capture connection "
                    f"\"{name}\" (e.g. FIRST 1 (\"{name}\")): change it, then restart the node")
            _set(conn, name, True, dsn)
    elif name in names:
        # Left over from sync mode: commits would wait for a standby that never answers.
        _set(conn, name, False, dsn)
