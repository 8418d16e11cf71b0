"""The drill's set writers: one per campus, writing to the single-writer set
``drill_single`` (table ``drill_set_writes``) in its campus's own database,
whatever the routing map says: only the set's current writer accepts, the
others' set guard refuses. Each row carries the set fence epoch and the clock
of the database that took it, read in the same transaction;
ringsync.commands.drill.sets checks them (one writer per epoch, epochs in time order,
as etcd says). Also the read-backs those checks need: the set's rows and the
changes each campus parked as stale.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from ringsync.commands.demo.cluster import CampusLayout
from ringsync.commands.drill.checker import (
    CONNECT_TIMEOUT_SECONDS,
    SET_NAME,
    SET_TABLE,
    _Writer,
    mariadb_connect,
    mariadb_rows,
)
from ringsync.commands.drill.sets import SetWrite

# What the set guard says when a database that is not the set's writer
# refuses (SQLite; PostgreSQL raises SQLSTATE 25006, as the campus fence does).
SET_REFUSAL = "not the writer of single-writer set"
CAMPUS_FENCED = "is fenced"
READ_ONLY_SQLSTATE = "25006"
# MariaDB's error for a SIGNAL from a trigger: its campus fence and set guards.
MARIADB_SIGNAL = 1644
_SQLITE_NOW = "(julianday('now') - 2440587.5) * 86400.0"


def read_set_rows(node: CampusLayout) -> list[SetWrite]:
    """Every row of the set's table in ``node``'s database."""
    query = f"SELECT id, campus, epoch, written_at, payload FROM {SET_TABLE}"
    if node.mariadb is not None:
        rows = mariadb_rows(node, query)
    elif node.postgres is not None:
        import psycopg

        with psycopg.connect(node.postgres.dsn) as conn:
            rows = conn.execute(query).fetchall()
    else:
        lite = sqlite3.connect(f"file:{node.database}?mode=ro", uri=True)
        try:
            rows = lite.execute(query).fetchall()
        finally:
            lite.close()
    return [SetWrite(i, c, None if e is None else int(e), float(t), p)
            for i, c, e, t, p in rows]


def read_stale_ids(node: CampusLayout) -> set[str]:
    """Ids of set-table changes ``node`` parked in its dead-letter table as
    stale (a deposed writer's changes after its tenure ended)."""
    if node.mariadb is not None:
        if not mariadb_rows(node, "SELECT 1 FROM information_schema.TABLES WHERE "
                                  "TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '_rs_dlq'"):
            return set()
        keys = [str(r[0]) for r in mariadb_rows(
            node, f"SELECT `key` FROM _rs_dlq WHERE tbl = '{SET_TABLE}' AND state = 'stale'")]
    elif node.postgres is not None:
        import psycopg

        with psycopg.connect(node.postgres.dsn) as conn:
            found = conn.execute("SELECT to_regclass('ringsync.dlq')").fetchone()
            if found is None or found[0] is None:
                return set()
            keys = [r[0] for r in conn.execute(
                "SELECT key FROM ringsync.dlq WHERE tbl = %s AND state = 'stale'",
                (SET_TABLE,))]
    else:
        lite = sqlite3.connect(f"file:{node.database}?mode=ro", uri=True)
        try:
            if lite.execute("SELECT 1 FROM sqlite_master WHERE name = '_rs_dlq'"
                            ).fetchone() is None:
                return set()
            keys = [r[0] for r in lite.execute(
                "SELECT key FROM _rs_dlq WHERE tbl = ? AND state = 'stale'", (SET_TABLE,))]
        finally:
            lite.close()
    return {_key_id(k) for k in keys}


def _key_id(key: str) -> str:
    """A dead letter's key is the JSON list of the row's key values: ["<id>"]."""
    try:
        values = json.loads(key)
    except ValueError:
        return key
    return str(values[0]) if isinstance(values, list) and values else key


class SetRefused(Exception):
    """The database refused a set write: it is not the set's writer (or is fenced)."""


def _refused(e: BaseException) -> bool:
    if type(e).__module__.startswith("pymysql"):
        return bool(e.args) and e.args[0] == MARIADB_SIGNAL
    if isinstance(e, sqlite3.IntegrityError):
        return SET_REFUSAL in str(e) or CAMPUS_FENCED in str(e)
    return getattr(e, "sqlstate", None) == READ_ONLY_SQLSTATE


@dataclass
class SetWriter(_Writer):
    """Keeps inserting into the set's table in one campus's own database.

    It does not follow any route: each attempt asks the database itself, in
    one transaction that reads the set fence epoch and the database clock and
    inserts them with the row. A refusal (not the writer, or fenced) is
    expected and counted; anything else is an error. A write is acknowledged
    only after the commit returned. The fence row is read under a lock
    (SQLite: BEGIN IMMEDIATE; PostgreSQL: FOR SHARE), so the epoch recorded is
    the one the database held when it took the row.
    """

    node: CampusLayout
    rate: float = 20.0
    acked: list[SetWrite] = field(default_factory=list)
    refused: int = 0
    errors: int = 0
    last_error: str = ""
    _pg: Any = field(default=None, kw_only=True)
    _rng: random.Random = field(default_factory=random.Random, kw_only=True)

    def _thread_name(self) -> str:
        return f"set-{self.node.name}"

    def _run(self) -> None:
        n = 0
        try:
            while not self._stop.is_set():
                n += 1
                row_id = f"set-{self.node.name}-{uuid.uuid4().hex[:12]}"
                payload = f"{self.node.name} #{n}"
                try:
                    epoch, at = self._write(row_id, payload)
                except SetRefused:
                    self.refused += 1
                    self._stop.wait(self._rng.uniform(0.02, 0.05))
                    continue
                except Exception as e:  # any other driver error: not acknowledged
                    self.errors += 1
                    self.last_error = f"{type(e).__name__}: {str(e).strip()[:200]}"
                    self._close()
                    self._stop.wait(0.05)
                    continue
                self.acked.append(SetWrite(row_id, self.node.name, epoch, at, payload,
                                           time.time()))
                self._stop.wait(1.0 / self.rate)
        finally:
            self._close()

    def _write(self, row_id: str, payload: str) -> tuple[int | None, float]:
        try:
            if self.node.mariadb is not None:
                return self._write_mariadb(row_id, payload)
            if self.node.postgres is not None:
                return self._write_postgres(row_id, payload)
            return self._write_sqlite(row_id, payload)
        except Exception as e:
            if _refused(e):
                raise SetRefused(str(e)) from e
            raise

    def _write_sqlite(self, row_id: str, payload: str) -> tuple[int | None, float]:
        lite = sqlite3.connect(self.node.database, timeout=CONNECT_TIMEOUT_SECONDS,
                               isolation_level=None)
        try:
            lite.execute("BEGIN IMMEDIATE")
            try:
                (at,) = lite.execute(f"SELECT {_SQLITE_NOW}").fetchone()
                row = lite.execute("SELECT epoch FROM _rs_set_fence WHERE name = ?",
                                   (SET_NAME,)).fetchone()
                epoch = None if row is None or row[0] is None else int(row[0])
                lite.execute(f"INSERT INTO {SET_TABLE} VALUES (?, ?, ?, ?, ?)",
                             (row_id, self.node.name, epoch, float(at), payload))
                lite.execute("COMMIT")
            except BaseException:
                if lite.in_transaction:
                    lite.execute("ROLLBACK")
                raise
            return epoch, float(at)
        finally:
            lite.close()

    def _write_postgres(self, row_id: str, payload: str) -> tuple[int | None, float]:
        import psycopg

        assert self.node.postgres is not None
        if self._pg is None or self._pg.closed or self._pg.broken:
            self._pg = psycopg.connect(self.node.postgres.dsn, autocommit=True,
                                       connect_timeout=int(CONNECT_TIMEOUT_SECONDS),
                                       application_name="drill-set-writer")
        conn = self._pg
        with conn.transaction():
            row = conn.execute("SELECT epoch FROM ringsync.set_fence WHERE name = %s "
                               "FOR SHARE", (SET_NAME,)).fetchone()
            epoch = None if row is None or row[0] is None else int(row[0])
            (at,) = conn.execute("SELECT date_part('epoch', clock_timestamp())").fetchone()
            conn.execute(f"INSERT INTO {SET_TABLE} VALUES (%s, %s, %s, %s, %s)",
                         (row_id, self.node.name, epoch, float(at), payload))
        return epoch, float(at)

    def _write_mariadb(self, row_id: str, payload: str) -> tuple[int | None, float]:
        """The fence row is read with a share lock: the node's set_set_fence
        writes it before the guard's copy, so it waits for this commit."""
        conn = mariadb_connect(self.node, autocommit=False)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT epoch FROM _rs_set_fence WHERE name = %s LOCK IN SHARE MODE",
                            (SET_NAME,))
                row = cur.fetchone()
                epoch = None if row is None or row[0] is None else int(row[0])
                cur.execute("SELECT UNIX_TIMESTAMP(SYSDATE(6))")
                (at,) = cur.fetchone()
                cur.execute(f"INSERT INTO {SET_TABLE} VALUES (%s, %s, %s, %s, %s)",
                            (row_id, self.node.name, epoch, float(at), payload))
            conn.commit()
            return epoch, float(at)
        finally:
            conn.close()

    def _close(self) -> None:
        if self._pg is not None:
            try:
                self._pg.close()
            except Exception:
                pass
            self._pg = None
