"""What the SQLite engine's role objects share (node.engines.sqlite.engine).

One SQLiteContext per engine holds the settings, the engine's two
connections (``main`` for apply, fencing, the conflict store and
inspection, on the engine thread; ``capture``, on the capture thread), the
replicated tables' shapes and their cached statements, and
``recorded_position``: local changes up to this change-log id have their
versions recorded (capture may release them; an apply session starts from
it to tell pending local changes). Every role object gets the same
context; none inherits from another.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from node.engines.sqlite.snapshot import q
from node.model import TableShape
from ringsync.errors import EngineError


@contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE (the database's one write lock) ... COMMIT; ROLLBACK on
    any error, if a transaction is still open."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


class SQLiteContext:
    """The settings, connections and shapes of one SQLite engine."""

    def __init__(self, path: Path, tables: tuple[str, ...], campus: str,
                 sets: Mapping[str, str] | None = None) -> None:
        self.path = path
        self.tables = tables
        self.campus = campus
        self.sets: Mapping[str, str] = dict(sets or {})  # table -> single-writer set
        self.main: sqlite3.Connection | None = None
        self.capture: sqlite3.Connection | None = None  # capture runs on its own thread
        self.shapes: dict[str, TableShape] = {}
        # Local changes up to this change-log id have their versions recorded;
        # the log keeps the rest, which is how apply sees them as pending.
        self.recorded_position = 0
        self.digests_wanted = False  # [verify] incremental (node.engines.sqlite.digests)
        self.digest_tables: set[str] = set()  # the tables whose digests are kept
        self._sql_cache: dict[tuple[str, str], str] = {}

    @property
    def conn(self) -> sqlite3.Connection:
        if self.main is None:
            raise EngineError("the SQLite engine is not open")
        return self.main

    def capture_conn(self) -> sqlite3.Connection:
        if self.capture is None:
            raise EngineError("the SQLite engine is not open")
        return self.capture

    def connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30.0
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=30000")
        except sqlite3.Error as e:
            raise EngineError(f"cannot open SQLite database {self.path}: {e}") from e
        return conn

    def applied_vector(self) -> dict[str, int]:
        return dict(self.conn.execute("SELECT origin, seq FROM _rs_applied").fetchall())

    # -- shapes and their statements ---------------------------------------

    def shape_of(self, table: str) -> TableShape:
        try:
            return self.shapes[table]
        except KeyError:
            raise EngineError(
                f"a change names table {table!r}, which is not replicated at campus "
                f"{self.campus!r}; make cluster.tables the same everywhere"
            ) from None

    def _key_where(self, shape: TableShape) -> str:
        return " AND ".join(f"{q(c)} = ?" for c in shape.key_columns)

    def delete_sql(self, shape: TableShape) -> str:
        key = (shape.name, "delete")
        if key not in self._sql_cache:
            self._sql_cache[key] = f"DELETE FROM {q(shape.name)} WHERE {self._key_where(shape)}"
        return self._sql_cache[key]

    def upsert_sql(self, shape: TableShape) -> str:
        key = (shape.name, "upsert")
        if key not in self._sql_cache:
            cols = ", ".join(q(c) for c in shape.columns)
            marks = ", ".join("?" for _ in shape.columns)
            keys = ", ".join(q(c) for c in shape.key_columns)
            rest = [c for c in shape.columns if c not in shape.key_columns]
            action = (
                "DO UPDATE SET " + ", ".join(f"{q(c)} = excluded.{q(c)}" for c in rest)
                if rest else "DO NOTHING"
            )
            self._sql_cache[key] = (
                f"INSERT INTO {q(shape.name)}({cols}) VALUES ({marks}) ON CONFLICT({keys}) {action}"
            )
        return self._sql_cache[key]
