"""Database-enforced fencing of a PostgreSQL campus database (disaster recovery).

``install_fence`` runs at open; PgFence is the engine's Fence role, writing
on a connection of its own (the DR agent calls it from its fence thread).

``ringsync.fence(writable_until)`` holds one Unix time; 'Infinity' means
never fenced. ``ringsync.fence_guard()`` runs BEFORE every INSERT, UPDATE,
DELETE and TRUNCATE statement on a replicated table (FOR EACH STATEMENT, so
a bulk statement pays once) and raises SQLSTATE 25006
(read_only_sql_transaction) once the server's clock (``clock_timestamp()``,
not the transaction's start) has reached that time, unless the session runs
under a replication origin: the node's apply connection sets up the origin
``ringsync`` for its whole session, so foreign changes, initial-load copies,
staging-table ``INSERT ... SELECT`` and dead-letter retries all pass.

The function is SECURITY DEFINER (owned by the node's role, with a fixed
search_path), so an application role needs no privilege on the ``ringsync``
schema to be told it is fenced. The origin test,
``pg_replication_origin_session_is_setup()``, is kept for superusers unless
granted: a node role without that grant can still open (the guard reads the
fence first and never calls it while unfenced) but cannot set a fence, since
its own apply would then be refused too.

Single-writer sets. The tables of a ``[[set]]`` take application writes at
one campus at a time, the set's writer. ``ringsync.set_fence`` holds one row
per set: ``writable_until`` (Unix time; 0 = closed), the ``epoch`` the node
last opened or closed it under and the last epoch ``reconciled`` here
(written by an apply session, in its transaction). A configured set's row is
created closed if missing and never reset at open. A set's tables get the
statement trigger ``ringsync_set_fence`` (``ringsync.set_fence_guard()``,
the set's name as its argument) INSTEAD of the campus guard: it raises
SQLSTATE 25006 unless the set's row is open (a missing row is closed),
whatever ``ringsync.fence`` says; apply sessions pass, as above. A set is
closed at every campus but its writer, so the guard reaches the origin test
all the time: with sets configured, the node's role needs it. A set's tables
also carry ``ringsync_set_commit``, a deferred constraint trigger running the
same check at COMMIT for every row the transaction changed, so a transaction
that wrote while the set was open cannot commit once it has closed (the
statement check alone lets it: a writer killed with an application
transaction open).
"""

from __future__ import annotations

import logging
import math
import threading
import time
import weakref
from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg import errors, sql

from node.engines.base import SetFence, fence_message, set_fence_message
from node.engines.fencing import check_fence_time, set_fences_of
from node.engines.postgres.connections import PgContext
from node.engines.postgres.versions import PG
from ringsync.dsn import redact_dsn
from ringsync.errors import EngineError
from ringsync.names import NODE_APPLICATION_NAME

log = logging.getLogger(__name__)

TRIGGER = "ringsync_fence"
SET_TRIGGER = "ringsync_set_fence"
SET_COMMIT_TRIGGER = "ringsync_set_commit"  # the same check, deferred to commit
ORIGIN_TEST = "pg_catalog.pg_replication_origin_session_is_setup()"
GRANT_HINT = (f"GRANT EXECUTE ON FUNCTION {ORIGIN_TEST.removeprefix('pg_catalog.')} "
              f"TO <the node's role> (as a superuser)")
# How long end_app_sessions waits for terminated backends to be gone.
END_SESSIONS_WAIT_SECONDS = 5.0
# The fence connection's own settings. It never waits for a synchronous standby
# (a fence or DR write must not wait for a peer: a dead successor would fence a
# healthy campus), gives up on a row lock after FENCE_LOCK_TIMEOUT (an
# application may hold one on a set's fence row while its commit waits for a
# peer) and on any statement after FENCE_STATEMENT_TIMEOUT: a stuck write fails
# and is retried at the next tick instead of holding the extensions behind it.
FENCE_LOCK_TIMEOUT_MS = 400
FENCE_STATEMENT_TIMEOUT_MS = 1500


def _guard_body(campus: str) -> str:
    message = "'" + fence_message(campus).replace("'", "''") + "'"
    # Nested IFs: the origin test is only reached while fenced.
    return f"""
BEGIN
    IF (SELECT writable_until FROM ringsync.fence LIMIT 1)
            <= date_part('epoch', clock_timestamp()) THEN
        IF NOT {ORIGIN_TEST} THEN
            RAISE EXCEPTION USING ERRCODE = 'read_only_sql_transaction', MESSAGE = {message};
        END IF;
    END IF;
    RETURN NULL;
END
"""


def _set_guard_body(campus: str) -> str:
    head, tail = (part.replace("'", "''")
                  for part in set_fence_message(campus, "\x00").split("\x00"))
    return f"""
BEGIN
    IF NOT EXISTS (SELECT 1 FROM ringsync.set_fence WHERE name = TG_ARGV[0]
            AND writable_until > date_part('epoch', clock_timestamp())) THEN
        IF NOT {ORIGIN_TEST} THEN
            RAISE EXCEPTION USING ERRCODE = 'read_only_sql_transaction',
                MESSAGE = '{head}' || TG_ARGV[0] || '{tail}';
        END IF;
    END IF;
    RETURN NULL;
END
"""


def _ensure_function(conn: psycopg.Connection[Any], name: str, body: str) -> None:
    have = conn.execute("SELECT prosrc, prosecdef FROM pg_proc "
                        "WHERE oid = to_regprocedure(%s)", (f"ringsync.{name}()",)).fetchone()
    if have is None or tuple(have) != (body, True):
        conn.execute(sql.SQL(
            "CREATE OR REPLACE FUNCTION {}() RETURNS trigger "
            "LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp "
            "AS {}").format(sql.Identifier("ringsync", name), sql.Literal(body)))


def _guarded(conn: psycopg.Connection[Any], trigger: str,
             function: str) -> dict[int, tuple[str, bytes]]:
    """Tables carrying ``trigger`` on ``function``: oid -> (name, trigger arguments)."""
    return {int(r[0]): (r[1], bytes(r[2])) for r in conn.execute(
        "SELECT tgrelid::oid, tgrelid::regclass::text, tgargs FROM pg_trigger "
        "WHERE tgname = %s AND tgfoid = %s::regprocedure", (trigger, function))}


def _drop_trigger(conn: psycopg.Connection[Any], trigger: str, table: str) -> None:
    conn.execute(sql.SQL("DROP TRIGGER {} ON {}").format(sql.Identifier(trigger),
                                                         sql.SQL(table)))


def _keep_set_guards(conn: psycopg.Connection[Any], trigger: str, wanted: Mapping[int, str],
                     sets: Mapping[str, str]) -> set[int]:
    """Drop the set guard ``trigger`` wherever it is not wanted (a table no
    longer replicated, in no set, or guarded for another set); return the
    tables (oids) keeping it."""
    kept = set()
    for oid, (name, args) in _guarded(conn, trigger, "ringsync.set_fence_guard()").items():
        member = wanted.get(oid)
        if member is None or member not in sets or args != sets[member].encode() + b"\0":
            _drop_trigger(conn, trigger, name)
        else:
            kept.add(oid)
    return kept


def install_fence(conn: psycopg.Connection[Any], tables: tuple[str, ...], campus: str,
                  sets: Mapping[str, str] | None = None) -> bool:
    """Create the fence row ('Infinity') if missing, a closed row for every set
    in ``sets`` (table -> set name) that has none, the guard functions, and a
    statement trigger on every replicated table: the set guard on a set's
    tables, the campus guard on the others (only where missing or of the
    wrong kind or set, so no table lock is taken at a normal start); drop
    guards left on tables no longer replicated. Return whether the node's
    role may run the origin test (so may fence). Raise if it may not while
    the campus is fenced or a set is configured (a set is closed but at its
    writer, so apply would be refused)."""
    sets = sets or {}
    with conn.transaction():
        conn.execute("CREATE TABLE IF NOT EXISTS ringsync.fence("
                     "writable_until double precision NOT NULL)")
        conn.execute("INSERT INTO ringsync.fence(writable_until) SELECT 'Infinity' "
                     "WHERE NOT EXISTS (SELECT 1 FROM ringsync.fence)")
        conn.execute("CREATE TABLE IF NOT EXISTS ringsync.set_fence(name text PRIMARY KEY, "
                     "writable_until double precision NOT NULL DEFAULT 0, "
                     "epoch bigint NOT NULL DEFAULT 0, reconciled bigint NOT NULL DEFAULT 0)")
        for set_name in sorted(set(sets.values())):
            conn.execute("INSERT INTO ringsync.set_fence(name) VALUES (%s) "
                         "ON CONFLICT (name) DO NOTHING", (set_name,))
        _ensure_function(conn, "fence_guard", _guard_body(campus))
        _ensure_function(conn, "set_fence_guard", _set_guard_body(campus))
        wanted: dict[int, str] = {}
        for table in tables:
            found = conn.execute("SELECT to_regclass(%s)::oid", (table,)).fetchone()
            if found is not None and found[0] is not None:
                wanted[int(found[0])] = table
        campus_guarded = _guarded(conn, TRIGGER, "ringsync.fence_guard()")
        for oid, (name, _) in campus_guarded.items():
            if oid not in wanted or wanted[oid] in sets:
                _drop_trigger(conn, TRIGGER, name)
        set_guarded = _keep_set_guards(conn, SET_TRIGGER, wanted, sets)
        commit_guarded = _keep_set_guards(conn, SET_COMMIT_TRIGGER, wanted, sets)
        for oid, table in wanted.items():
            if table in sets and oid not in commit_guarded:
                # The same check again at commit, for every row the transaction
                # changed: a writer that passed the statement guard before the
                # set closed cannot commit after it.
                conn.execute(sql.SQL(
                    "CREATE CONSTRAINT TRIGGER {} AFTER INSERT OR UPDATE OR DELETE ON {} "
                    "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
                    "EXECUTE FUNCTION ringsync.set_fence_guard({})"
                ).format(sql.Identifier(SET_COMMIT_TRIGGER), sql.Identifier(table),
                         sql.Literal(sets[table])))
            if table in sets:
                if oid not in set_guarded:
                    conn.execute(sql.SQL(
                        "CREATE TRIGGER {} BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON {} "
                        "FOR EACH STATEMENT EXECUTE FUNCTION ringsync.set_fence_guard({})"
                    ).format(sql.Identifier(SET_TRIGGER), sql.Identifier(table),
                             sql.Literal(sets[table])))
            elif oid not in campus_guarded:
                conn.execute(sql.SQL(
                    "CREATE TRIGGER {} BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON {} "
                    "FOR EACH STATEMENT EXECUTE FUNCTION ringsync.fence_guard()").format(
                    sql.Identifier(TRIGGER), sql.Identifier(table)))
        may_fence, until = conn.execute(
            "SELECT has_function_privilege(%s, 'EXECUTE'), "
            "(SELECT writable_until FROM ringsync.fence LIMIT 1)",
            (ORIGIN_TEST.removeprefix("pg_catalog."),)).fetchone()  # type: ignore[misc]
    if not may_fence and until is not None and until != math.inf:
        raise EngineError(
            f"campus {campus} is fenced (until {until}) but the node's role cannot tell its "
            f"own apply session from applications, so apply would be refused; {GRANT_HINT}, "
            f"or unfence: UPDATE ringsync.fence SET writable_until = 'Infinity'")
    if not may_fence and sets:
        raise EngineError(
            f"single-writer sets are configured ({', '.join(sorted(set(sets.values())))}) but "
            f"the node's role cannot tell its own apply session from applications, so apply "
            f"to a set's tables would be refused wherever the set is closed; {GRANT_HINT}")
    return bool(may_fence)


class PgFence:
    """The Fence role of PostgresEngine: the campus fence and the set fences,
    written on a connection of its own (the context supplies the DSN, the
    campus, ``sets``: table -> single-writer set name, and the engine's
    connections, for reads and for telling the node's own sessions)."""

    # Fence writes (campus and set fences, ending sessions) run on a connection
    # of their own, so the DR agent can call them from its own thread (node.
    # runtime.in_fence) while the engine's thread is busy or blocked.
    own_fence_connection = True
    _fence_conn_lock = threading.Lock()

    def __init__(self, ctx: PgContext) -> None:
        self.ctx = ctx
        self._fence_conn: psycopg.Connection[Any] | None = None

    def _fence_connection(self) -> psycopg.Connection[Any]:
        conn = self._fence_conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        if conn is not None:
            conn.close()
        try:
            conn = psycopg.connect(
                self.ctx.dsn, autocommit=True, connect_timeout=5,
                fallback_application_name=NODE_APPLICATION_NAME,
                options=("-c timezone=UTC -c synchronous_commit=local "
                         f"-c lock_timeout={FENCE_LOCK_TIMEOUT_MS} "
                         f"-c statement_timeout={FENCE_STATEMENT_TIMEOUT_MS}"))
        except psycopg.OperationalError as e:
            raise EngineError(f"cannot connect to PostgreSQL ({redact_dsn(self.ctx.dsn)}) for "
                              f"the fence: {e}".strip()) from e
        self._fence_conn = conn
        weakref.finalize(self, conn.close)
        return conn

    def _fence_query(self, query: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """One autocommitted statement on the fence connection (reconnecting once
        after a server restart)."""
        with self._fence_conn_lock:
            try:
                return self._fence_connection().execute(query, params).fetchall()
            except psycopg.OperationalError:
                if self._fence_conn is not None and not self._fence_conn.broken:
                    raise
                return self._fence_connection().execute(query, params).fetchall()

    def close_fence(self) -> None:
        with self._fence_conn_lock:
            if self._fence_conn is not None:
                self._fence_conn.close()
                self._fence_conn = None

    def set_fence(self, writable_until: float) -> None:
        value = check_fence_time(writable_until)
        if value != math.inf and not self.ctx.may_fence:
            raise EngineError(
                f"cannot fence campus {self.ctx.campus}: the node's role may not run "
                f"{ORIGIN_TEST}, so the fence would refuse its own apply too; {GRANT_HINT}")
        try:
            if not self._fence_query("UPDATE ringsync.fence SET writable_until = %s "
                                     "RETURNING 1", (value,)):
                self._fence_query("INSERT INTO ringsync.fence(writable_until) VALUES (%s) "
                                  "RETURNING 1", (value,))
        except psycopg.Error as e:
            raise EngineError(f"cannot set the fence on PostgreSQL: {e}") from e

    def fence_state(self) -> float:
        try:
            rows = self.ctx.query("SELECT writable_until FROM ringsync.fence LIMIT 1")
        except psycopg.Error as e:
            raise EngineError(f"cannot read the fence on PostgreSQL: {e}") from e
        return float(rows[0][0]) if rows else math.inf

    def set_set_fence(self, name: str, writable_until: float, epoch: int) -> None:
        """Open a set here until ``writable_until``, or close it (a past time).
        Opening needs the origin test, as fencing does (an open row closes by
        itself when its time comes, and apply must still pass then); closing
        is never refused."""
        value = check_fence_time(writable_until)
        if value > time.time() and not self.ctx.may_fence:
            raise EngineError(
                f"cannot open set {name} at campus {self.ctx.campus}: the node's role may not "
                f"run {ORIGIN_TEST}, so the set's guard would refuse its own apply once closed; "
                f"{GRANT_HINT}")
        try:
            self._fence_query(PG.set_set_fence_sql() + " RETURNING 1", (name, value, int(epoch)))
        except psycopg.Error as e:
            raise EngineError(f"cannot set the fence of set {name} on PostgreSQL: {e}") from e

    def wait_set_writers(self, name: str, timeout: float = 5.0) -> None:
        """A SHARE lock on the set's tables waits out every transaction that
        wrote to them (ROW EXCLUSIVE until it ends), and is released at once."""
        ctx = self.ctx
        tables = sorted(t for t, s in ctx.sets.items() if s == name)
        if not tables:
            return
        try:
            ctx.ensure_connected()
            with ctx.conn.transaction():
                ctx.conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(
                    sql.Literal(f"{int(timeout * 1000)}ms")))
                ctx.conn.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(
                    sql.SQL(", ").join(sql.Identifier(t) for t in tables)))
        except errors.LockNotAvailable as e:
            raise EngineError(
                f"set {name}: an application transaction that wrote to {', '.join(tables)} is "
                f"still open after {timeout:.0f}s; the move waits for it (end it, or let it "
                f"commit)") from e
        except psycopg.Error as e:
            raise EngineError(f"cannot wait for the writers of set {name}: {e}") from e

    def set_fence_states(self) -> dict[str, SetFence]:
        try:
            rows = self.ctx.query(PG.set_fences_sql())
        except psycopg.Error as e:
            raise EngineError(f"cannot read the set fences on PostgreSQL: {e}") from e
        return set_fences_of(rows)

    def _own_pids(self) -> list[int]:
        pids = []
        for conn in (self.ctx.conn, self.ctx.apply, self._fence_conn):
            if conn is not None and not conn.closed and not conn.broken:
                pids.append(int(conn.info.backend_pid))
        return pids

    def end_app_sessions(self) -> int:
        """Terminate the campus database's client sessions except the node's
        (its own connections, and any whose application_name starts with
        ringsync-node or is the one the DSN gives); wait until they are gone,
        so no transaction of theirs can still commit. Replication connections
        are walsenders, not client backends. Unless a superuser, the node's
        role needs pg_read_all_stats (to see other roles' sessions: their
        backend_type is hidden) and pg_signal_backend (to end them); sessions
        it could not see or end are reported as an EngineError after the
        others were ended."""
        own_name = psycopg.conninfo.conninfo_to_dict(self.ctx.dsn).get("application_name") or None
        try:
            q = self._fence_query  # its own connection: never behind the engine's work
            found = q(
                "SELECT pid, backend_type IS NOT NULL FROM pg_stat_activity "
                "WHERE (backend_type = 'client backend' OR (backend_type IS NULL "
                "AND usesysid IS NOT NULL)) "
                "AND datname = current_database() AND pid <> pg_backend_pid() "
                "AND pid <> ALL(%s) AND NOT starts_with(coalesce(application_name, ''), %s) "
                "AND coalesce(application_name, '') IS DISTINCT FROM %s",
                (self._own_pids(), NODE_APPLICATION_NAME, own_name))
            hidden = [int(pid) for pid, visible in found if not visible]
            ended: list[int] = []
            refused: list[int] = []
            for pid in (int(pid) for pid, visible in found if visible):
                try:
                    rows = q("SELECT pg_terminate_backend(%s)", (pid,))
                except errors.InsufficientPrivilege:
                    refused.append(pid)
                    continue
                if rows and rows[0][0]:
                    ended.append(pid)
            deadline = time.monotonic() + END_SESSIONS_WAIT_SECONDS
            left = ended
            while left and time.monotonic() < deadline:
                time.sleep(0.02)
                left = [int(r[0]) for r in q(
                    "SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s)", (left,))]
        except psycopg.Error as e:
            raise EngineError(f"cannot end application sessions on PostgreSQL: {e}") from e
        if left:
            log.warning("%d terminated sessions of campus %s had not exited after %.0f s: %s",
                        len(left), self.ctx.campus, END_SESSIONS_WAIT_SECONDS, left)
        if refused or hidden:
            raise EngineError(
                f"ended {len(ended)} application sessions of campus {self.ctx.campus}, but "
                f"{len(refused)} could not be signalled and {len(hidden)} of other roles are "
                f"hidden from the node's role (pids {(refused + hidden)[:10]}); "
                f"GRANT pg_signal_backend, pg_read_all_stats TO <the node's role>")
        return len(ended)
