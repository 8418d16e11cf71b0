"""The demo's laboratory information system: schema and synthetic workload.

Keys are globally unique without any global sequence: each is a random
UUID, so campuses never need to ask each other for an id. Each campus
edits rows it created, in realistic transactions: a new patient with a STAT
or routine order and its specimen; results for an order; verification of
results; rejection of a specimen (a delete). With a conflict rate it also
edits the most recent rows of any campus, concurrently with the others.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TABLES = ("patients", "lab_orders", "specimens", "lab_results")

SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS patients(
    patient_id TEXT PRIMARY KEY,
    mrn TEXT NOT NULL,
    name TEXT NOT NULL,
    birth_date TEXT,
    sex TEXT,
    home_campus TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS lab_orders(
    order_id TEXT PRIMARY KEY,
    patient_id TEXT NOT NULL,
    test_code TEXT NOT NULL,
    priority TEXT NOT NULL CHECK (priority IN ('STAT', 'routine')),
    status TEXT NOT NULL,
    ordering_campus TEXT NOT NULL,
    ordered_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS specimens(
    specimen_id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    collected_at TEXT,
    received_campus TEXT
);
CREATE TABLE IF NOT EXISTS lab_results(
    result_id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL,
    analyte TEXT NOT NULL,
    value_num REAL,
    value_text TEXT,
    unit TEXT,
    flag TEXT,
    status TEXT NOT NULL,
    resulted_at TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 1
);
"""

TESTS: dict[str, list[tuple[str, str, float, float]]] = {
    "CBC": [("WBC", "10^9/L", 4.0, 10.0), ("HGB", "g/L", 120, 160), ("PLT", "10^9/L", 100, 300)],
    "BMP": [("NA", "mmol/L", 135, 145), ("K", "mmol/L", 3.5, 5.1), ("GLU", "mmol/L", 3.9, 6.1)],
    "TROP": [("TNI", "ng/L", 0, 26)],
    "CRP": [("CRP", "mg/L", 0, 10)],
}
SURNAMES = ["Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Zhao", "Huang", "Zhou", "Wu"]
GIVEN = ["Wei", "Fang", "Min", "Jing", "Lei", "Yan", "Jun", "Hui", "Tao", "Xiu"]


# The same tables on PostgreSQL, with types whose canonical values equal
# SQLite's (text, double precision, bigint), so mixed rings compare equal.
POSTGRES_SCHEMA = SQLITE_SCHEMA.replace("INTEGER", "bigint").replace("REAL", "double precision")


# On MariaDB: keys as VARCHAR (a TEXT column cannot be a primary key there),
# InnoDB, utf8mb4 with a binary collation (text compares as on the others).
MARIADB_TABLE_OPTIONS = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
MARIADB_SCHEMA = (SQLITE_SCHEMA.replace("TEXT PRIMARY KEY", "VARCHAR(64) PRIMARY KEY")
                  .replace("INTEGER", "BIGINT").replace("REAL", "DOUBLE")
                  .replace("\n);", f"\n) {MARIADB_TABLE_OPTIONS};"))


def mysql_connect(url: str, autocommit: bool = True, connect_timeout: int = 10,
                  io_timeout: float | None = None) -> Any:
    """A pymysql connection to a ``mysql://user:password@host:port/db`` URL
    (the session in UTC, as the node's own); ``io_timeout``: a read or write
    that hangs longer fails."""
    from urllib.parse import unquote, urlsplit

    import pymysql

    parts = urlsplit(url)
    return pymysql.connect(host=parts.hostname or "127.0.0.1", port=parts.port or 3306,
                           user=unquote(parts.username or ""),
                           password=unquote(parts.password or ""),
                           database=unquote(parts.path.strip("/")), autocommit=autocommit,
                           charset="utf8mb4", init_command="SET time_zone = '+00:00'",
                           connect_timeout=connect_timeout, read_timeout=io_timeout,
                           write_timeout=io_timeout)


def create_mariadb_schema(url: str, schema: str = MARIADB_SCHEMA) -> None:
    conn = mysql_connect(url)
    try:
        with conn.cursor() as cur:
            for statement in schema.split(";"):
                if statement.strip():
                    cur.execute(statement)
    finally:
        conn.close()


def create_postgres_schema(dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in POSTGRES_SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)


def create_sqlite_database(path: Path, schema: str = SQLITE_SCHEMA) -> None:
    """A new campus database file in WAL mode with ``schema`` (the LIS tables)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(schema)
        conn.commit()
    finally:
        conn.close()


def _now() -> str:
    now = time.time()
    micros = int(now * 1e6) % 1_000_000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{micros:06d}Z"


class _MySQLConn:
    """pymysql in the shape the workload uses (``execute`` returning rows)."""

    def __init__(self, url: str) -> None:
        self.conn = mysql_connect(url)
        self.closed = False

    def execute(self, query: str, params: tuple[Any, ...] = ()) -> Any:
        cur = self.conn.cursor()
        cur.execute(query, params or None)
        return cur

    @property
    def broken(self) -> bool:
        return not self.conn.open

    def close(self) -> None:
        self.conn.close()


ER_LOCK_DEADLOCK = 1213  # MariaDB: "Deadlock found when trying to get lock"


class CampusDb:
    """The little a workload needs from a campus database: SQLite, PostgreSQL
    or MariaDB (a ``mysql://`` URL)."""

    def __init__(self, target: Path | str) -> None:
        self.server = isinstance(target, str)  # PostgreSQL or MariaDB: %s marks
        if isinstance(target, str) and target.startswith("mysql://"):
            import pymysql

            self.conn: Any = _MySQLConn(target)
            self.errors: tuple[type[Exception], ...] = (pymysql.err.MySQLError,)
        elif isinstance(target, str):
            import psycopg

            self.conn = psycopg.connect(target, autocommit=True)
            self.errors = (psycopg.Error,)
        else:
            self.conn = sqlite3.connect(target, timeout=30.0, isolation_level=None)
            self.conn.execute("PRAGMA busy_timeout=30000")
            self.errors = (sqlite3.Error,)

    def execute(self, query: str, params: tuple[Any, ...] = ()) -> None:
        if self.server:
            query = query.replace("?", "%s")
        self.conn.execute(query, params)

    def fetch(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if self.server:
            query = query.replace("?", "%s")
        return list(self.conn.execute(query, params).fetchall())

    @property
    def broken(self) -> bool:
        return bool(self.server and (self.conn.broken or self.conn.closed))

    def begin(self) -> None:
        self.conn.execute("BEGIN" if self.server else "BEGIN IMMEDIATE")

    def victim(self, error: Exception) -> bool:
        """Whether the server rolled this transaction back to break a deadlock
        (or a serialization conflict): an application retries such a
        transaction, it has not failed. On a MariaDB campus apply's locking
        reads can meet an application's transaction this way."""
        if not self.server:
            return False
        import pymysql

        if isinstance(error, pymysql.err.MySQLError):
            return bool(error.args) and error.args[0] == ER_LOCK_DEADLOCK
        return getattr(error, "sqlstate", None) in ("40P01", "40001")  # psycopg

    def rollback(self) -> None:
        try:
            self.conn.execute("ROLLBACK")
        except self.errors:
            pass


@dataclass
class LisWorkload:
    """Writes LIS transactions at one campus at a steady rate, in a thread.

    ``db_path`` is a SQLite file or, for a PostgreSQL campus, a DSN string.
    """

    campus: str
    db_path: Path | str
    rate: float
    seed: int = 0
    # Share of transactions that edit a recent row of *any* campus (the ones
    # other campuses are editing too): concurrent edits, i.e. conflicts.
    conflict_rate: float = 0.0
    # Follows the routing map like an application behind a load balancer:
    # returns the database that serves this campus now (None: nobody does).
    resolve: Callable[[], Path | str | None] | None = None
    # canonical test code -> the code this campus orders it by (its dictionary:
    # ringsync.commands.demo.codes); empty: the canonical codes
    codes: dict[str, str] = field(default_factory=dict)
    # After the route moves, the users order by the codes of the campus whose
    # system they use now: given a database, its campus's codes.
    codes_at: Callable[[Path | str], dict[str, str]] | None = None
    contended: int = 0
    transactions: int = 0
    errors: int = 0
    # transactions the server rolled back to break a deadlock, then retried
    deadlock_retries: int = 0
    last_error: str = ""
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _open_orders: list[tuple[str, str]] = field(default_factory=list)  # (order_id, test)
    _results: list[str] = field(default_factory=list)
    _specimens: list[str] = field(default_factory=list)
    _codes_now: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._codes_now = self.codes

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"lis-{self.campus}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        rng = random.Random(self.seed or hash(self.campus))
        conn = CampusDb(self.db_path)
        target, resolved_at = self.db_path, time.monotonic()
        interval = 1.0 / self.rate if self.rate > 0 else 1.0
        next_at = time.monotonic()
        try:
            while not self._stop.is_set():
                if self.resolve is not None and time.monotonic() - resolved_at > 1.0:
                    resolved_at, now_target = time.monotonic(), self.resolve()
                    if now_target is None:
                        self.errors += 1
                        self.last_error = f"no node serves {self.campus} now"
                        self._stop.wait(0.2)
                        continue
                    if now_target != target:  # the route moved: follow it
                        try:
                            moved = CampusDb(now_target)
                        except Exception as e:  # noqa: BLE001 - any driver's connect error
                            self.errors += 1
                            self.last_error = str(e)
                            continue
                        conn.conn.close()
                        conn, target = moved, now_target
                        self._codes_now = (self.codes_at(target) if self.codes_at is not None
                                           else self.codes)
                try:
                    self._transaction(conn, rng)
                except conn.errors as e:
                    self.errors += 1
                    self.last_error = str(e)
                    conn.rollback()
                    resolved_at = 0.0  # ask the routing map again before the next one
                    if conn.broken:  # the server restarted: reconnect, as an application would
                        conn.conn.close()
                        self._stop.wait(0.5)
                        try:
                            conn = CampusDb(target)
                        except conn.errors:
                            continue
                next_at += interval
                delay = next_at - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)
                else:
                    next_at = time.monotonic()
        finally:
            conn.conn.close()

    def _transaction(self, conn: CampusDb, rng: random.Random, attempts: int = 3) -> None:
        """One transaction, retried (up to ``attempts`` times in all) when the
        server chose it as a deadlock's victim, as an application would: the
        same transaction again (the random draws and the workload's memory of
        open orders, results and specimens as they were before it)."""
        state = rng.getstate()
        memory = (list(self._open_orders), list(self._results), list(self._specimens))
        for attempt in range(attempts):
            try:
                conn.begin()
                self._one(conn, rng)
                conn.execute("COMMIT")
                self.transactions += 1
                return
            except conn.errors as e:
                if attempt + 1 == attempts or not conn.victim(e):
                    raise
                conn.rollback()
                self.deadlock_retries += 1
                rng.setstate(state)
                self._open_orders[:], self._results[:], self._specimens[:] = memory

    def _one(self, conn: CampusDb, rng: random.Random) -> None:
        if self.conflict_rate and rng.random() < self.conflict_rate and self._contend(conn, rng):
            return
        roll = rng.random()
        if roll < 0.35 or not self._open_orders:
            self._admit(conn, rng)
        elif roll < 0.7:
            self._result(conn, rng)
        elif roll < 0.93 and self._results:
            self._verify(conn, rng)
        elif self._specimens:
            self._reject_specimen(conn, rng)
        else:
            self._admit(conn, rng)

    def _contend(self, conn: CampusDb, rng: random.Random) -> bool:
        """Edit one of the most recent results or orders, wherever it was made:
        a result verified here while another campus amends it, an order made
        STAT here while another campus edits it as routine."""
        if rng.random() < 0.6:
            rows = conn.fetch("SELECT result_id, status FROM lab_results "
                              "ORDER BY resulted_at DESC LIMIT 8")
            if not rows:
                return False
            result, status = rows[rng.randrange(len(rows))]
            order = ["preliminary", "resulted", "verified", "amended"]
            here = order.index(status) if status in order else 1
            forward = order[min(len(order) - 1, here + rng.choice((0, 1, 1, 2)))]
            conn.execute("UPDATE lab_results SET status = ?, version = version + 1, flag = ? "
                         "WHERE result_id = ?", (forward, rng.choice(("H", "L", None)), result))
        else:
            rows = conn.fetch("SELECT order_id FROM lab_orders ORDER BY ordered_at DESC LIMIT 8")
            if not rows:
                return False
            conn.execute("UPDATE lab_orders SET priority = ? WHERE order_id = ?",
                         (rng.choice(("STAT", "routine")), rows[rng.randrange(len(rows))][0]))
        self.contended += 1
        return True

    def _admit(self, conn: CampusDb, rng: random.Random) -> None:
        patient, order, specimen = (str(uuid.uuid4()) for _ in range(3))
        test = rng.choice(list(TESTS))
        priority = "STAT" if rng.random() < 0.2 else "routine"
        conn.execute(
            "INSERT INTO patients VALUES (?, ?, ?, ?, ?, ?, ?)",
            (patient, f"{self.campus[:2].upper()}{rng.randrange(10**8):08d}",
             f"{rng.choice(SURNAMES)} {rng.choice(GIVEN)}",
             f"{rng.randrange(1930, 2024)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}",
             rng.choice("FM"), self.campus, _now()),
        )
        conn.execute(
            "INSERT INTO lab_orders VALUES (?, ?, ?, ?, 'ordered', ?, ?)",
            (order, patient, self._codes_now.get(test, test), priority, self.campus, _now()),
        )
        conn.execute(
            "INSERT INTO specimens VALUES (?, ?, ?, ?, ?)",
            (specimen, order, "serum" if test != "CBC" else "whole blood", _now(), self.campus),
        )
        self._open_orders.append((order, test))
        self._specimens.append(specimen)
        del self._specimens[:-200]

    def _result(self, conn: CampusDb, rng: random.Random) -> None:
        order, test = self._open_orders.pop(rng.randrange(len(self._open_orders)))
        for analyte, unit, low, high in TESTS[test]:
            value = round(rng.uniform(low * 0.7, high * 1.3), 2)
            flag = "L" if value < low else "H" if value > high else None
            result = str(uuid.uuid4())
            conn.execute(
                "INSERT INTO lab_results VALUES (?, ?, ?, ?, NULL, ?, ?, 'resulted', ?, 1)",
                (result, order, analyte, value, unit, flag, _now()),
            )
            self._results.append(result)
        del self._results[:-500]
        conn.execute("UPDATE lab_orders SET status = 'resulted' WHERE order_id = ?", (order,))

    def _verify(self, conn: CampusDb, rng: random.Random) -> None:
        result = self._results.pop(rng.randrange(len(self._results)))
        conn.execute(
            "UPDATE lab_results SET status = 'verified', version = version + 1 "
            "WHERE result_id = ?",
            (result,),
        )

    def _reject_specimen(self, conn: CampusDb, rng: random.Random) -> None:
        specimen = self._specimens.pop(rng.randrange(len(self._specimens)))
        conn.execute("DELETE FROM specimens WHERE specimen_id = ?", (specimen,))
