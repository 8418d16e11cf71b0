"""What the PostgreSQL engine's role objects share (node.engines.postgres.engine).

One PgContext per engine holds the settings, the engine's two connections
(``main``, autocommitted, for the engine thread's reads and DDL; ``apply``,
under the replication origin, for apply sessions), the replicated tables'
shapes and their cached statements, the capture reader, the staging tables
of the apply connection and whether the node's role may fence. Every role
object (capture source, apply target, fence, conflict store, inspection)
gets the same context; none inherits from another.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.string import TextLoader

from node.engines.postgres.capture import APPLY_ORIGIN, PgoutputReader
from node.engines.postgres.server import slot_name
from node.engines.postgres.stage import Stager, upsert_action
from node.model import TableShape
from ringsync.dsn import redact_dsn
from ringsync.errors import EngineError
from ringsync.names import NODE_APPLICATION_NAME

# The apply session waits this long for a row lock, then gives up (a
# transient error: retried with jitter). Shorter than PostgreSQL's default
# deadlock_timeout (1 s), so where apply and an application wait for each
# other, apply is the one that yields.
APPLY_LOCK_TIMEOUT_MS = 500


def json_as_text(conn: psycopg.Connection[Any]) -> None:
    """json and jsonb come back as their text (made canonical by
    values.canonical_row): psycopg's own loader would read the document
    ``null`` as Python None, the same as SQL NULL."""
    for name in ("json", "jsonb"):
        conn.adapters.register_loader(name, TextLoader)


class PgContext:
    """The settings, connections, shapes and capture reader of one PostgreSQL engine."""

    def __init__(self, dsn: str, tables: tuple[str, ...], campus: str,
                 frame_max_changes: int = 2000, sync: bool = False,
                 sets: Mapping[str, str] | None = None) -> None:
        self.dsn = dsn
        self.sync = sync
        self.tables = tables
        self.campus = campus
        self.sets: Mapping[str, str] = dict(sets or {})  # table -> single-writer set
        self.slot = slot_name(campus)
        self.publication = self.slot
        self.frame_max_changes = frame_max_changes
        self.main: psycopg.Connection[Any] | None = None
        self.apply: psycopg.Connection[Any] | None = None
        self.shapes: dict[str, TableShape] = {}
        self.reader: PgoutputReader | None = None
        self.stager: Stager = Stager()
        # Whether the node's role may run the origin test (set at open, by
        # node.engines.postgres.fence.install_fence).
        self.may_fence = True
        # Incremental verification digests ([verify] incremental; node.engines.postgres
        # .digests): wanted, and the tables they cover once installed.
        self.digests_wanted = False
        self.digest_tables: set[str] = set()
        self._sql: dict[tuple[str, str], sql.Composed] = {}

    @property
    def description(self) -> str:
        return redact_dsn(self.dsn)  # the DSN may carry the password_file's password

    @property
    def conn(self) -> psycopg.Connection[Any]:
        if self.main is None:
            raise EngineError("the PostgreSQL engine is not open")
        return self.main

    # -- connections -----------------------------------------------------

    def connect(self, autocommit: bool, extra: str = "") -> psycopg.Connection[Any]:
        try:
            local = " -c synchronous_commit=local" if self.sync else ""
            local += extra
            conn = psycopg.connect(self.dsn, autocommit=autocommit, connect_timeout=10,
                                   fallback_application_name=NODE_APPLICATION_NAME,
                                   options="-c timezone=UTC -c datestyle=ISO" + local)
        except psycopg.OperationalError as e:
            raise EngineError(
                f"cannot connect to PostgreSQL ({self.description}): {e}".strip()) from e
        json_as_text(conn)
        return conn

    def connect_apply(self) -> psycopg.Connection[Any]:
        conn = self.connect(autocommit=False, extra=f" -c lock_timeout={APPLY_LOCK_TIMEOUT_MS}")
        conn.execute("SELECT pg_replication_origin_session_setup(%s)", (APPLY_ORIGIN,))
        conn.commit()
        return conn

    def query(self, query: str | sql.Composed, params: tuple[Any, ...] = ()) -> list[Any]:
        """One statement on the main connection (reconnecting once after a server restart)."""
        try:
            return self.conn.execute(query, params).fetchall()
        except psycopg.OperationalError:
            self.main = self.connect(autocommit=True)  # server restarted: reconnect once
            return self.conn.execute(query, params).fetchall()

    def ensure_connected(self) -> None:
        """A cheap round trip through ``query``, so that after a server restart
        the statements that follow on ``conn`` directly find a new connection."""
        self.query("SELECT 1")

    def applied_vector(self) -> dict[str, int]:
        return {o: int(s) for o, s in self.query("SELECT origin, seq FROM ringsync.applied")}

    # -- shapes and their statements ---------------------------------------

    def shape_of(self, table: str) -> TableShape:
        try:
            return self.shapes[table]
        except KeyError:
            raise EngineError(f"table {table!r} is not replicated at {self.campus!r}") from None

    def delete_sql(self, shape: TableShape) -> sql.Composed:
        key = (shape.name, "delete")
        if key not in self._sql:
            where = sql.SQL(" AND ").join(
                sql.SQL("{} = %s").format(sql.Identifier(c)) for c in shape.key_columns)
            self._sql[key] = sql.SQL("DELETE FROM {} WHERE {}").format(
                sql.Identifier(shape.name), where)
        return self._sql[key]

    def upsert_sql(self, shape: TableShape) -> sql.Composed:
        key = (shape.name, "upsert")
        if key not in self._sql:
            action = upsert_action(shape)
            self._sql[key] = sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) {}").format(
                sql.Identifier(shape.name),
                sql.SQL(", ").join(sql.Identifier(c) for c in shape.columns),
                sql.SQL(", ").join(sql.Placeholder() for _ in shape.columns),
                sql.SQL(", ").join(sql.Identifier(c) for c in shape.key_columns),
                action,
            )
        return self._sql[key]
