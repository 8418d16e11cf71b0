"""Database-enforced fencing of a MariaDB campus database (disaster recovery).

The DR agent (node.dr) decides until when this campus, and each single-writer
set here, may take application writes; MariaFence, the engine's Fence role,
stores those times on a connection of its own (the agent's fence thread,
never behind an apply batch) and the database enforces them by its clock, so
a dead node leaves the campus to fence itself. ``install_fence`` runs at open.

``_rs_fence`` holds the campus's writable_until (Unix seconds; the largest
DOUBLE means never fenced: DOUBLE holds no infinity). BEFORE INSERT, UPDATE
and DELETE triggers ``_rs_fence_<table>_<i|u|d>`` raise SQLSTATE 45000
(error 1644) with the fence message once it is past, by the later of the
statement's time and the real clock (SET TIMESTAMP, as in a replayed binlog,
does not let a write through). Apply sessions pass: ``@rs_apply = 1`` under
ringsync's GTID domain (connections.connect_apply); an application may set
the variable, but the domain takes SUPER or BINLOG REPLAY. The fence's
connection and an operator's local write are ordinary sessions, refused.
Triggers run as their definer (the node's account): an application account
needs no privilege on ringsync's tables to be told it is fenced.

The guard tables are MyISAM: InnoDB would share-lock the row a guard reads
until the application's transaction ends (holding up the next extension),
and Aria's crash-safe tables join the transaction and then refuse SAVEPOINT.
MyISAM is locked for a statement (or an application's LOCK TABLES) alone;
the fence waits FENCE_LOCK_WAIT_SECONDS at most. After a crash the server
repairs it (myisam_recover_options), maybe with the value before the last
write: set guards are copied again from their rows at open, and the campus
fence is at most one extension behind.

Single-writer sets: ``_rs_set_fence`` (InnoDB: apply writes ``reconciled``
in its transaction) holds each set's writable_until (0 = closed), epoch and
reconciled epoch, a configured set's row created closed; ``_rs_set_guard``
is the copy its guard reads (set_set_fence writes the row, then the copy). A
set's tables carry that guard instead of the campus's, under the same names.

What MariaDB cannot do: TRUNCATE fires no trigger, so it is not refused (it
takes DROP, which no application account should have; capture stops at it,
naming it). No trigger runs at COMMIT: a write made while a set was open may
commit after the close; wait_set_writers waits for it, but with the node
dead nothing refuses it (PostgreSQL does).

Grants: TRIGGER and, with the binary log on, SUPER (or the server setting
log_bin_trust_function_creators) to create or drop a trigger; LOCK TABLES
(wait_set_writers); PROCESS and CONNECTION ADMIN (end_app_sessions).
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
import weakref
import zlib
from typing import Any

import pymysql

from node.engines.base import SetFence, fence_message, set_fence_message
from node.engines.fencing import check_fence_time, set_fences_of
from node.engines.mariadb.connections import MariaContext
from node.engines.mariadb.tables import MARIA
from node.engines.mariadb.values import quote
from ringsync.errors import EngineError

log = logging.getLogger(__name__)

FOREVER = sys.float_info.max  # +inf as stored
TRIGGER_PREFIX = "_rs_fence_"
OPS = {"i": "INSERT", "u": "UPDATE", "d": "DELETE"}
NOW = "GREATEST(@@timestamp, UNIX_TIMESTAMP(SYSDATE(6)))"
MYISAM = " ENGINE=MyISAM DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
FENCE_DDL = ("CREATE TABLE IF NOT EXISTS _rs_fence(id TINYINT NOT NULL PRIMARY KEY "
             "CHECK (id = 1), writable_until DOUBLE NOT NULL)" + MYISAM)
SET_GUARD_DDL = ("CREATE TABLE IF NOT EXISTS _rs_set_guard(name VARCHAR(250) NOT NULL "
                 "PRIMARY KEY, writable_until DOUBLE NOT NULL DEFAULT 0)" + MYISAM)
SET_GUARD_SYNC = ("INSERT INTO _rs_set_guard(name, writable_until) SELECT name, writable_until "
                  "FROM _rs_set_fence ON DUPLICATE KEY UPDATE writable_until = "
                  "VALUES(writable_until)")
# The fence connection gives up on a lock (whole seconds: MariaDB counts no
# less) and on any statement after these, so a stuck write is retried at
# the next tick instead of holding the ones behind it.
FENCE_LOCK_WAIT_SECONDS = 1
FENCE_STATEMENT_SECONDS = 1.5
END_SESSIONS_WAIT_SECONDS = 5.0
ER_LOCK_WAIT_TIMEOUT, ER_NO_SUCH_THREAD, ER_KILL_DENIED, ER_NEEDS_SUPER = 1205, 1094, 1095, 1419
ER_ACCESS_DENIED = (1044, 1142)  # on the database, on a table
_LOST = {2006, 2013, 1927, 4031}  # gone away, lost, killed, idle timeout


def to_stored(value: float) -> float:
    return math.copysign(FOREVER, value) if math.isinf(value) else value


def from_stored(value: Any) -> float:
    value = float(value)
    return math.copysign(math.inf, value) if abs(value) >= FOREVER else value


def trigger_name(table: str, op: str) -> str:
    name = f"{TRIGGER_PREFIX}{table}_{op}"
    return name if len(name) <= 64 else f"{TRIGGER_PREFIX}{zlib.crc32(table.encode()):08x}_{op}"


def _literal(text: str, backslash_escapes: bool) -> str:
    if backslash_escapes:
        text = text.replace("\\", "\\\\")
    return "'" + text.replace("'", "''") + "'"


def guard_body(refuse_when: str, message: str, apply_domain: int) -> str:
    """A guard trigger's body: the apply test first (no table read for the
    node's own rows), then ``refuse_when``."""
    return (f"BEGIN IF NOT (@rs_apply <=> 1 AND @@session.gtid_domain_id = {int(apply_domain)}) "
            f"THEN IF {refuse_when} THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = {message}; "
            f"END IF; END IF; END")


def _wanted_guards(ctx: MariaContext, backslash_escapes: bool) -> dict[str, tuple[str, str, str]]:
    """trigger name -> (table, event, body) for every replicated table."""
    out = {}
    for table in ctx.shapes:
        set_name = ctx.sets.get(table)
        if set_name is None:
            refuse = f"(SELECT writable_until FROM _rs_fence WHERE id = 1) <= {NOW}"
            message = fence_message(ctx.campus)
        else:
            refuse = (f"NOT EXISTS (SELECT 1 FROM _rs_set_guard WHERE name = "
                      f"{_literal(set_name, backslash_escapes)} AND writable_until > {NOW})")
            message = set_fence_message(ctx.campus, set_name)
        body = guard_body(refuse, _literal(message, backslash_escapes), ctx.apply_domain)
        for op, event in OPS.items():
            out[trigger_name(table, op)] = (table, event, body)
    return out


def install_fence(ctx: MariaContext) -> None:
    """Create the fence row (+inf) if missing, the set guard table, a closed
    row for every configured set that has none, copy the set rows into the
    guard, and put the guards in place: only where missing or different
    (body, definer, sql_mode), so a normal start takes no table's metadata
    lock; drop guards left on tables no longer replicated."""
    q = ctx.query
    q(FENCE_DDL)
    q("INSERT IGNORE INTO _rs_fence(id, writable_until) VALUES (1, %s)", (FOREVER,))
    q(SET_GUARD_DDL)
    for set_name in sorted(set(ctx.sets.values())):
        q("INSERT IGNORE INTO _rs_set_fence(name) VALUES (%s)", (set_name,))
    q(SET_GUARD_SYNC)
    mode, user = q("SELECT @@sql_mode, CURRENT_USER()")[0]
    wanted = _wanted_guards(ctx, "NO_BACKSLASH_ESCAPES" not in str(mode).upper())
    have = {str(r[0]): tuple(str(v) for v in r[1:]) for r in q(
        "SELECT TRIGGER_NAME, EVENT_OBJECT_TABLE, EVENT_MANIPULATION, ACTION_STATEMENT, "
        "ACTION_TIMING, DEFINER, SQL_MODE FROM information_schema.TRIGGERS WHERE "
        "TRIGGER_SCHEMA = DATABASE() AND LEFT(TRIGGER_NAME, %s) = %s",
        (len(TRIGGER_PREFIX), TRIGGER_PREFIX))}
    try:
        for name, found in have.items():
            if name not in wanted or found[0] != wanted[name][0]:
                q(f"DROP TRIGGER IF EXISTS {quote(name)}")
        for name, (table, event, body) in wanted.items():
            if have.get(name) != (table, event, body, "BEFORE", str(user), str(mode)):
                q(f"CREATE OR REPLACE TRIGGER {quote(name)} BEFORE {event} ON {quote(table)} "
                  f"FOR EACH ROW {body}")
    except pymysql.err.MySQLError as e:
        hint = ("; with the binary log on, creating a trigger needs SUPER, or "
                "log_bin_trust_function_creators = ON in the server's settings"
                if e.args and e.args[0] == ER_NEEDS_SUPER else "")
        raise EngineError(f"cannot install the fence guards on MariaDB "
                          f"({ctx.description}): {e}{hint}") from e


def _close_quietly(conn: pymysql.Connection) -> None:
    if conn.open:
        conn.close()


class MariaFence:
    """The Fence role of MariaEngine: the campus fence and the set fences,
    written on a connection of its own; read (and the writers waited for)
    on the engine's main connection."""

    own_fence_connection = True

    def __init__(self, ctx: MariaContext) -> None:
        self.ctx = ctx
        self._conn: pymysql.Connection | None = None
        self._lock = threading.Lock()

    def _connection(self) -> pymysql.Connection:
        if self._conn is not None and self._conn.open:
            return self._conn
        conn = self.ctx.connect()
        with conn.cursor() as cur:
            cur.execute(f"SET SESSION lock_wait_timeout = {FENCE_LOCK_WAIT_SECONDS}, "
                        f"innodb_lock_wait_timeout = {FENCE_LOCK_WAIT_SECONDS}, "
                        f"max_statement_time = {FENCE_STATEMENT_SECONDS}")
        self._conn = conn
        weakref.finalize(self, _close_quietly, conn)
        return conn

    def _fence_query(self, query: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """One autocommitted statement on the fence connection (reconnecting
        once after a lost connection: a server restart)."""
        with self._lock:
            for retry in (False, True):
                conn = self._connection()
                try:
                    with conn.cursor() as cur:
                        cur.execute(query, params or None)
                        return list(cur.fetchall())
                except (pymysql.err.OperationalError, pymysql.err.InterfaceError) as e:
                    if retry or (conn.open and (not e.args or e.args[0] not in _LOST)):
                        raise
                    _close_quietly(conn)
        raise AssertionError("unreachable")

    def close_fence(self) -> None:
        with self._lock:
            if self._conn is not None:
                _close_quietly(self._conn)
                self._conn = None

    def set_fence(self, writable_until: float) -> None:
        value = to_stored(check_fence_time(writable_until))
        try:
            self._fence_query("INSERT INTO _rs_fence(id, writable_until) VALUES (1, %s) "
                              "ON DUPLICATE KEY UPDATE writable_until = VALUES(writable_until)",
                              (value,))
        except pymysql.err.MySQLError as e:
            raise EngineError(f"cannot set the fence on MariaDB: {e}") from e

    def fence_state(self) -> float:
        rows = self.ctx.query("SELECT writable_until FROM _rs_fence WHERE id = 1")
        return from_stored(rows[0][0]) if rows else math.inf

    def set_set_fence(self, name: str, writable_until: float, epoch: int) -> None:
        """The set's row, then its guard (which install copies from the rows)."""
        value = to_stored(check_fence_time(writable_until))
        try:
            self._fence_query(MARIA.set_set_fence_sql(), (name, value, int(epoch)))
            self._fence_query("INSERT INTO _rs_set_guard(name, writable_until) VALUES (%s, %s) "
                              "ON DUPLICATE KEY UPDATE writable_until = VALUES(writable_until)",
                              (name, value))
        except pymysql.err.MySQLError as e:
            raise EngineError(f"cannot set the fence of set {name} on MariaDB: {e}") from e

    def wait_set_writers(self, name: str, timeout: float = 5.0) -> None:
        """LOCK TABLES ... READ waits for the metadata lock every transaction
        that wrote to the set's tables holds until it ends (one that only
        tried, and was refused, holds it too), and is released at once.
        MariaDB waits whole seconds: ``timeout`` is rounded up."""
        tables = sorted(t for t, s in self.ctx.sets.items() if s == name)
        if not tables:
            return
        seconds = max(1, math.ceil(timeout))
        cur = self.ctx.conn
        try:
            cur.execute(f"LOCK TABLES {', '.join(quote(t) + ' READ' for t in tables)} "
                        f"WAIT {seconds}")
            cur.execute("UNLOCK TABLES")
        except pymysql.err.MySQLError as e:
            if e.args and e.args[0] == ER_LOCK_WAIT_TIMEOUT:
                raise EngineError(
                    f"set {name}: an application transaction that wrote to {', '.join(tables)} "
                    f"is still open after {seconds}s; the move waits for it (end it, or let it "
                    f"commit)") from e
            hint = (f" (the node's account needs LOCK TABLES on {self.ctx.url.database})"
                    if e.args and e.args[0] in ER_ACCESS_DENIED else "")
            raise EngineError(f"cannot wait for the writers of set {name}{hint}: {e}") from e

    def set_fence_states(self) -> dict[str, SetFence]:
        rows = self.ctx.query(MARIA.set_fences_sql())
        return set_fences_of((n, from_stored(u), e, r) for n, u, e, r in rows)

    def end_app_sessions(self) -> int:
        """KILL CONNECTION every client session whose database is the campus's,
        except the node's own and binary log dumps (capture, replicas); wait
        until they are gone. A session using another default database is not
        found (its writes are still refused). Without PROCESS the node's
        account sees only its own sessions, without CONNECTION ADMIN it ends
        only those: EngineError after the others were ended."""
        ctx, q = self.ctx, self._fence_query
        try:
            found = [int(r[0]) for r in q(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s AND HOST <> '' "
                "AND ID <> CONNECTION_ID() AND COMMAND NOT LIKE 'Binlog Dump%%' "
                "AND COMMAND <> 'Killed'", (ctx.url.database,))]
            user, _, host = str(q("SELECT CURRENT_USER()")[0][0]).rpartition("@")
            sees_all = bool(q("SELECT 1 FROM information_schema.USER_PRIVILEGES WHERE "
                              "GRANTEE = %s AND PRIVILEGE_TYPE = 'PROCESS'",
                              (f"'{user}'@'{host}'",)))
            ended: list[int] = []
            refused: list[int] = []  # not ours to end
            own = ctx.node_threads()
            for thread in sorted(set(found) - own):
                try:
                    q(f"KILL CONNECTION {thread}")
                    ended.append(thread)
                except pymysql.err.MySQLError as e:
                    if e.args and e.args[0] == ER_KILL_DENIED:
                        refused.append(thread)
                    elif not e.args or e.args[0] != ER_NO_SUCH_THREAD:
                        raise
            deadline = time.monotonic() + END_SESSIONS_WAIT_SECONDS
            left = ended
            while left and time.monotonic() < deadline:
                time.sleep(0.02)
                left = [int(r[0]) for r in q(
                    "SELECT ID FROM information_schema.PROCESSLIST WHERE ID IN ("
                    + ", ".join(str(t) for t in left) + ")")]
        except pymysql.err.MySQLError as e:
            raise EngineError(f"cannot end application sessions on MariaDB: {e}") from e
        if left:
            log.warning("%d ended sessions of campus %s had not exited after %.0f s: %s",
                        len(left), ctx.campus, END_SESSIONS_WAIT_SECONDS, left)
        if refused or not sees_all:
            raise EngineError(
                f"ended {len(ended)} application sessions of campus {ctx.campus}, but "
                f"{len(refused)} could not be ended (ids {refused[:10]})"
                + ("" if sees_all else " and other accounts' sessions are hidden from the "
                                       "node's account")
                + "; GRANT PROCESS, CONNECTION ADMIN ON *.* TO <the node's account>")
        return len(ended)
