"""What the MariaDB engine's role objects share (node.engines.mariadb.engine).

One MariaContext per engine holds the settings parsed from the campus's
``mysql://`` URL, the engine's two connections (``main``, autocommitted,
for reads and DDL; ``apply``, for apply sessions: its writes carry
ringsync's GTID domain, so capture never takes them for the campus's own,
and ``@rs_apply`` set, so the fence guards let them pass), the replicated
tables (shape, column types, row reader), their cached statements and the
binlog reader.

Every connection runs with time_zone '+00:00' (TIMESTAMP columns read and
written in UTC), utf8mb4, and ANSI_QUOTES in its sql_mode, so the
statements shared with the other engines (node.spelling) read ``"key"`` as
a column name.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import pymysql

from node.engines.mariadb.binlog import BinlogReader
from node.engines.mariadb.shapes import MariaTable
from node.engines.mariadb.values import quote
from node.model import TableShape
from ringsync.dsn import redact_dsn
from ringsync.errors import ConfigError, EngineError

log = logging.getLogger(__name__)

# The GTID domain apply sessions write under, unless the campus says otherwise.
DEFAULT_APPLY_DOMAIN = 7519
# An apply session waits this long (seconds) for a row lock, then yields.
APPLY_LOCK_WAIT_SECONDS = 1
SESSION_SETUP = ("SET time_zone = '+00:00', NAMES utf8mb4, "
                 "sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES')")
APPLIED_TABLE = "_rs_applied"
# Errors that say the server is not taking connections yet (starting, restarting,
# full), not that the settings are wrong: a node starting waits these out.
# 2003 cannot connect, 2006 gone away, 2013 lost during the handshake,
# 1040 too many connections, 1053 shutting down.
TRANSIENT_CONNECT_ERRORS = frozenset({2003, 2006, 2013, 1040, 1053})
START_PATIENCE_SECONDS = 30.0
START_RETRY_SECONDS = 0.5


@dataclass(frozen=True)
class MariaURL:
    """``mysql://user:password@host:port/database`` (``mariadb://`` too)."""

    host: str
    port: int
    user: str
    password: str
    database: str

    @classmethod
    def parse(cls, url: str) -> MariaURL:
        parts = urlsplit(url)
        if parts.scheme not in ("mysql", "mariadb") or not parts.path.strip("/"):
            raise ConfigError(f"database.url {redact_dsn(url)!r} is not a MariaDB URL; write "
                              f"mysql://user:password@host:port/database")
        try:
            port = parts.port or 3306
        except ValueError:
            raise ConfigError(f"database.url {redact_dsn(url)!r} has a bad port") from None
        return cls(parts.hostname or "127.0.0.1", port, unquote(parts.username or ""),
                   unquote(parts.password or ""), unquote(parts.path.strip("/")))

    @property
    def shown(self) -> str:
        return f"mysql://{self.user}:***@{self.host}:{self.port}/{self.database}"

    def settings(self) -> dict[str, Any]:
        """pymysql's connection arguments (the binlog reader's too)."""
        return {"host": self.host, "port": self.port, "user": self.user,
                "password": self.password}


class Cursor:
    """A pymysql cursor that answers ``execute`` with itself, as the shared
    statements (node.engines.dialect, node.conflicts) expect of a DB-API
    connection: ``db.execute(sql, params).fetchall()``."""

    def __init__(self, cur: pymysql.cursors.Cursor) -> None:
        self.cur = cur

    def execute(self, query: str, params: Any = None) -> Cursor:
        self.cur.execute(query, params)
        return self

    def executemany(self, query: str, rows: Any) -> Cursor:
        self.cur.executemany(query, list(rows))
        return self

    def fetchall(self) -> list[Any]:
        return list(self.cur.fetchall())

    def fetchone(self) -> Any:
        return self.cur.fetchone()


class MariaContext:
    """The settings, connections, tables and capture reader of one MariaDB engine."""

    def __init__(self, url: str, tables: tuple[str, ...], campus: str,
                 frame_max_changes: int = 2000, sets: Mapping[str, str] | None = None,
                 apply_domain: int = DEFAULT_APPLY_DOMAIN) -> None:
        self.url = MariaURL.parse(url)
        self.tables = tables
        self.campus = campus
        self.sets: Mapping[str, str] = dict(sets or {})
        self.frame_max_changes = frame_max_changes
        self.apply_domain = apply_domain
        self.main: pymysql.Connection | None = None
        self.apply: pymysql.Connection | None = None
        self.tables_read: dict[str, MariaTable] = {}
        self.shapes: dict[str, TableShape] = {}
        self.reader: BinlogReader | None = None
        self.binlog_basename = "binlog"
        # Every connection this node has open (short-lived ones too: checksums,
        # snapshots, verification): end_app_sessions spares them (MariaDB has no
        # application_name to tell them by); a closed one drops out by itself.
        self._opened: weakref.WeakSet[pymysql.Connection] = weakref.WeakSet()
        # Where capture starts for a campus that has journaled nothing (set at install).
        self.capture_start = 0
        self._sql: dict[tuple[str, str], str] = {}

    @property
    def description(self) -> str:
        return self.url.shown

    @property
    def conn(self) -> Cursor:
        if self.main is None:
            raise EngineError("the MariaDB engine is not open")
        return Cursor(self.main.cursor())

    def connect(self, autocommit: bool = True) -> pymysql.Connection:
        try:
            conn = pymysql.connect(**self.url.settings(), database=self.url.database,
                                   autocommit=autocommit, charset="utf8mb4",
                                   connect_timeout=10, init_command=SESSION_SETUP)
        except pymysql.err.MySQLError as e:
            raise EngineError(f"cannot connect to MariaDB ({self.description}): {e}") from e
        self._opened.add(conn)
        return conn

    def connect_at_start(self, patience: float = START_PATIENCE_SECONDS,
                         sleep: Callable[[float], None] = time.sleep) -> pymysql.Connection:
        """The engine's first connection. A server that is not taking
        connections yet (restarting after a crash, starting beside the node)
        is waited for, ``patience`` seconds at most, and said so in the log;
        wrong settings (a password refused, no such database) fail at once."""
        deadline = time.monotonic() + patience
        while True:
            try:
                return self.connect()
            except EngineError as e:
                cause = e.__cause__
                code = cause.args[0] if isinstance(cause, pymysql.err.MySQLError) and \
                    cause.args else None
                if code not in TRANSIENT_CONNECT_ERRORS or time.monotonic() > deadline:
                    raise
                log.warning("%s; retrying for up to %.0fs more", e,
                            max(0.0, deadline - time.monotonic()))
                sleep(START_RETRY_SECONDS)

    def node_threads(self) -> set[int]:
        """The server thread ids of this node's open connections."""
        return {c.thread_id() for c in list(self._opened) if c.open}

    def connect_apply(self) -> pymysql.Connection:
        conn = self.connect(autocommit=False)
        with conn.cursor() as cur:
            # REPEATABLE READ: a locking read holds the place of a key without a
            # row (gap lock), so no local insert slips in before apply writes it
            cur.execute(f"SET SESSION gtid_domain_id = {int(self.apply_domain)}, "
                        f"innodb_lock_wait_timeout = {APPLY_LOCK_WAIT_SECONDS}, "
                        f"tx_isolation = 'REPEATABLE-READ', @rs_apply = 1")
        conn.commit()
        return conn

    def query(self, query: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """One statement on the main connection (reconnecting once after a server
        restart: the connection lost, or found already closed by an earlier loss)."""
        try:
            return self.conn.execute(query, params or None).fetchall()
        except (pymysql.err.OperationalError, pymysql.err.InterfaceError):
            self.main = self.connect()
            return self.conn.execute(query, params or None).fetchall()

    def decode(self, table: str, values: dict[str, Any],
               none_sources: dict[str, str]) -> tuple[Any, ...]:
        """A binlog row of a replicated table as canonical values."""
        return self.tables_read[table].reader.from_binlog(values, none_sources)

    def decode_lenient(self, table: str, values: dict[str, Any], none_sources: dict[str, str],
                       ) -> tuple[tuple[Any, ...], list[Any]]:
        """``decode``, with values that cannot travel as None and the reasons
        (node.engines.mariadb.values.RowReader.from_binlog_lenient)."""
        return self.tables_read[table].reader.from_binlog_lenient(values, none_sources)

    def applied_vector(self) -> dict[str, int]:
        return {str(o): int(s) for o, s in self.query(f"SELECT origin, seq FROM {APPLIED_TABLE}")}

    # -- tables and their statements -----------------------------------------

    def shape_of(self, table: str) -> TableShape:
        try:
            return self.shapes[table]
        except KeyError:
            raise EngineError(f"table {table!r} is not replicated at {self.campus!r}") from None

    def table(self, name: str) -> MariaTable:
        self.shape_of(name)
        return self.tables_read[name]

    def delete_sql(self, shape: TableShape) -> str:
        key = (shape.name, "delete")
        if key not in self._sql:
            where = " AND ".join(f"{quote(c)} = %s" for c in shape.key_columns)
            self._sql[key] = f"DELETE FROM {quote(shape.name)} WHERE {where}"
        return self._sql[key]

    def upsert_sql(self, shape: TableShape) -> str:
        """INSERT ... ON DUPLICATE KEY UPDATE every other column (a key-only
        table updates its key to itself)."""
        key = (shape.name, "upsert")
        if key not in self._sql:
            others = [c for c in shape.columns if c not in shape.key_columns] or list(
                shape.key_columns)
            self._sql[key] = (
                f"INSERT INTO {quote(shape.name)} ({', '.join(quote(c) for c in shape.columns)})"
                f" VALUES ({', '.join('%s' for _ in shape.columns)}) ON DUPLICATE KEY UPDATE "
                + ", ".join(f"{quote(c)} = VALUES({quote(c)})" for c in others))
        return self._sql[key]
