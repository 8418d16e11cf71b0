"""The binlog reader against a real MariaDB server: what it captures, what it
never captures (ringsync's own applied transactions), where it resumes, and
that whatever it does not understand stops it with an error naming it."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from typing import Any

import pymysql
import pytest

from node.engines.mariadb.binlog import BinlogReader, file_name, position_of
from node.model import CapturedChunk, Op
from ringsync.commands.demo import mariadb
from ringsync.commands.demo.mariadb import LocalMariaDB
from tests.mariadb_fixtures import connect

APPLY_DOMAIN = 7519
COLUMNS = {"kv": ("k", "v"), "other": ("id", "n"), "big": ("k", "t")}
DDL = ("CREATE TABLE kv(k VARCHAR(20) PRIMARY KEY, v BIGINT) ENGINE=InnoDB",
       "CREATE TABLE big(k VARCHAR(20) PRIMARY KEY, t LONGTEXT) ENGINE=InnoDB",
       "CREATE TABLE other(id BIGINT PRIMARY KEY, n BIGINT) ENGINE=InnoDB",
       "CREATE TABLE _rs_applied(origin VARCHAR(64) PRIMARY KEY, seq BIGINT) ENGINE=InnoDB")


def decode(table: str, values: dict[str, Any], none_sources: dict[str, str]) -> tuple[Any, ...]:
    return tuple(values[c] for c in COLUMNS[table])


def master_position(conn: pymysql.Connection) -> int:
    with conn.cursor() as cur:
        cur.execute("SHOW MASTER STATUS")
        log_file, offset = cur.fetchone()[:2]
    return position_of(log_file, offset)


class Campus:
    def __init__(self, server: LocalMariaDB, database: str) -> None:
        self.server, self.database = server, database
        self.conn = connect(server, database)
        self.readers: list[BinlogReader] = []
        self.run(*DDL)

    def run(self, *statements: str, domain: int | None = None) -> None:
        with self.conn.cursor() as cur:
            if domain is not None:
                cur.execute(f"SET SESSION gtid_domain_id = {domain}")
            try:
                for statement in statements:
                    cur.execute(statement)
            finally:
                if domain is not None:
                    cur.execute("SET SESSION gtid_domain_id = 0")

    def txn(self, *statements: str, domain: int | None = None) -> None:
        self.run("BEGIN", *statements, "COMMIT", domain=domain)

    def reader(self, position: int, tables: tuple[str, ...] = ("kv",),
               frame_max_changes: int = 100) -> BinlogReader:
        settings = {"host": "127.0.0.1", "port": self.server.port, "user": mariadb.USER,
                    "password": mariadb.PASSWORD}
        reader = BinlogReader(settings, self.database, frozenset(tables), decode, "_rs_applied",
                              APPLY_DOMAIN, frame_max_changes,
                              server_id=random.randint(10_000, 2**31), basename="binlog")
        reader.start(position)
        self.readers.append(reader)
        return reader

    def close(self) -> None:
        for reader in self.readers:
            reader.stop()
        self.conn.close()


@pytest.fixture
def campus(mariadb_server: LocalMariaDB, mariadb_db: str) -> Iterator[Campus]:
    c = Campus(mariadb_server, mariadb_db)
    yield c
    c.close()


def take_until(reader: BinlogReader, count: int, timeout: float = 30.0) -> list[CapturedChunk]:
    """Chunks until ``count`` final ones arrived (no timing assertion: a way out)."""
    out: list[CapturedChunk] = []
    deadline = time.monotonic() + timeout
    while sum(c.final for c in out) < count:
        assert time.monotonic() < deadline, f"only {out} after {timeout} s"
        out.extend(reader.take())
    return out


def take_error(reader: BinlogReader, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            reader.take()
        except Exception as e:  # noqa: BLE001 - the error is what is tested
            return str(e)
        assert time.monotonic() < deadline, "the reader did not stop with an error"


def test_local_transactions_in_commit_order(campus: Campus) -> None:
    start = master_position(campus.conn)
    reader = campus.reader(start)
    campus.txn("INSERT INTO kv VALUES ('a', 1), ('b', 2)")
    campus.txn("UPDATE kv SET v = 10 WHERE k = 'a'", "DELETE FROM kv WHERE k = 'b'")
    campus.txn("INSERT INTO other VALUES (1, 1)")  # not replicated: nothing captured
    campus.txn("INSERT INTO kv VALUES ('c', 3)")
    chunks = take_until(reader, 3)
    assert [[(ch.op, ch.new, ch.old) for ch in c.changes] for c in chunks] == [
        [(Op.INSERT, ("a", 1), None), (Op.INSERT, ("b", 2), None)],
        [(Op.UPDATE, ("a", 10), ("a", 1)), (Op.DELETE, None, ("b", 2))],
        [(Op.INSERT, ("c", 3), None)],
    ]
    positions = [c.position for c in chunks]
    assert start < positions[0] < positions[1] < positions[2] <= master_position(campus.conn)
    assert all(c.final and c.index == 0 for c in chunks)


def test_resumes_after_a_position_and_splits_big_transactions(campus: Campus) -> None:
    reader = campus.reader(master_position(campus.conn), frame_max_changes=10)
    campus.txn("INSERT INTO kv VALUES ('first', 0)")
    (first,) = take_until(reader, 1)
    values = ", ".join(f"('r{i:02d}', {i})" for i in range(25))
    campus.txn(f"INSERT INTO kv VALUES {values}")
    campus.txn("INSERT INTO kv VALUES ('last', 0)")
    big = take_until(reader, 2)
    assert [(len(c.changes), c.final, c.index) for c in big] == [
        (10, False, 0), (10, False, 1), (5, True, 2), (1, True, 0)]
    assert [ch.new for c in big[:3] for ch in c.changes] == [(f"r{i:02d}", i) for i in range(25)]
    # A reader started where the first transaction ended sees the others, once.
    again = campus.reader(first.position, frame_max_changes=10)
    assert [(len(c.changes), c.index) for c in take_until(again, 2)] == [
        (10, 0), (10, 1), (5, 2), (1, 0)]


def test_applied_transactions_are_never_captured_but_move_the_deps(campus: Campus) -> None:
    reader = campus.reader(master_position(campus.conn))
    campus.txn("INSERT INTO kv VALUES ('remote', 1)",
               "INSERT INTO _rs_applied VALUES ('west', 41)", domain=APPLY_DOMAIN)
    campus.txn("INSERT INTO kv VALUES ('local', 1)")
    campus.txn("UPDATE kv SET v = 2 WHERE k = 'remote'",
               "UPDATE _rs_applied SET seq = 42 WHERE origin = 'west'", domain=APPLY_DOMAIN)
    campus.txn("UPDATE kv SET v = 3 WHERE k = 'local'")
    chunks = take_until(reader, 2)
    assert [[ch.new for ch in c.changes] for c in chunks] == [[("local", 1)], [("local", 3)]]
    assert [c.deps for c in chunks] == [{"west": 41}, {"west": 42}]
    # captured_through passes the applied transaction at the end of the log
    campus.txn("INSERT INTO kv VALUES ('remote2', 1)", domain=APPLY_DOMAIN)
    end = master_position(campus.conn)
    deadline = time.monotonic() + 30
    while reader.taken_through < end:
        assert time.monotonic() < deadline, "captured_through never reached the log's end"
        assert reader.take() == []


def test_truncate_of_a_replicated_table_stops_capture_naming_it(campus: Campus) -> None:
    reader = campus.reader(master_position(campus.conn), tables=("kv",))
    campus.run("TRUNCATE TABLE other")  # not replicated: no harm
    campus.txn("INSERT INTO kv VALUES ('a', 1)")
    assert len(take_until(reader, 1)) == 1
    campus.run("TRUNCATE TABLE kv")
    error = take_error(reader)
    assert "kv" in error and "TRUNCATE" in error and "binlog.0" in error


def kill_dump_threads(campus: Campus) -> None:
    with campus.conn.cursor() as cur:
        cur.execute("SELECT id FROM information_schema.PROCESSLIST "
                    "WHERE COMMAND LIKE 'Binlog Dump%%'")
        for (thread_id,) in cur.fetchall():
            cur.execute(f"KILL {thread_id}")


def test_a_lost_connection_is_made_again_and_nothing_is_lost_or_sent_twice(
        campus: Campus) -> None:
    reader = campus.reader(master_position(campus.conn))
    campus.txn("INSERT INTO kv VALUES ('a', 1)")
    assert [c.changes[0].new for c in take_until(reader, 1)] == [("a", 1)]
    kill_dump_threads(campus)
    campus.txn("INSERT INTO kv VALUES ('b', 2)")
    campus.txn("INSERT INTO kv VALUES ('c', 3)")
    assert [c.changes[0].new for c in take_until(reader, 2)] == [("b", 2), ("c", 3)]
    assert reader.reconnects >= 1 and not reader.error


def test_a_transaction_cut_off_by_a_lost_connection_is_read_again_from_its_start(
        campus: Campus) -> None:
    """The queue holds 40 changes: the reader waits, mid-way through a 20 MB
    transaction, while its connection is ended; it reads the transaction again from chunk 0, and
    the chunks' last copies hold every row once (the journal keeps one copy
    of each chunk index)."""
    reader = campus.reader(master_position(campus.conn), tables=("big",), frame_max_changes=10)
    pad = "x" * 20_000  # 20 MB in all: more than the socket buffers hold
    campus.txn(*("INSERT INTO big VALUES " + ", ".join(
        f"('r{i:03d}', '{pad}{i}')" for i in range(start, start + 50))
        for start in range(0, 1000, 50)))
    deadline = time.monotonic() + 30
    while reader._queue.empty():  # the reader has begun handing the transaction over
        assert time.monotonic() < deadline
        time.sleep(0.01)
    kill_dump_threads(campus)
    chunks = take_until(reader, 1)
    indexes = [c.index for c in chunks]
    # 100 full chunks, then the final one (empty: 1000 is a multiple of 10)
    assert indexes[-1] == 100 and 0 in indexes[1:], indexes[:30]  # chunk 0 came again
    last: dict[int, CapturedChunk] = {c.index: c for c in chunks if c.index is not None}
    rows = [ch.new for i in sorted(last) for ch in last[i].changes]
    assert rows == [(f"r{i:03d}", f"{pad}{i}") for i in range(1000)]
    assert reader.reconnects >= 1


def purge_through(campus: Campus, position: int, timeout: float = 120.0) -> None:
    """Purges every log file before the current one, until the file holding
    ``position`` is really gone. The server is shared by the session: MariaDB
    keeps a file that a dump thread still reads (another test's reader whose
    connection the server has not yet seen close), so those are ended first."""
    old_file = file_name("binlog", position)
    deadline = time.monotonic() + timeout
    while True:
        kill_dump_threads(campus)
        with campus.conn.cursor() as cur:
            cur.execute("SHOW MASTER STATUS")
            current = cur.fetchone()[0]
            cur.execute(f"PURGE BINARY LOGS TO '{current}'")
            cur.execute("SHOW BINARY LOGS")
            kept = [str(row[0]) for row in cur.fetchall()]
        if old_file not in kept:
            return
        assert time.monotonic() < deadline, f"{old_file} still kept after PURGE: {kept}"
        time.sleep(0.2)


def test_a_purged_log_is_a_clear_error(campus: Campus) -> None:
    old = master_position(campus.conn)
    campus.run("FLUSH BINARY LOGS", "FLUSH BINARY LOGS")
    purge_through(campus, old)
    error = take_error(campus.reader(old), timeout=120.0)
    assert "purged" in error and "re-join" in error


def test_an_event_it_does_not_understand_stops_capture(mariadb_server: LocalMariaDB,
                                                       campus: Campus) -> None:
    """Compressed binlog events are not decoded: capture stops naming the
    event, it never skips the transaction."""
    reader = campus.reader(master_position(campus.conn))
    mariadb_server.admin("SET GLOBAL log_bin_compress = ON",
                         "SET GLOBAL log_bin_compress_min_len = 10")
    try:
        big = "x" * 2000
        campus.txn(f"INSERT INTO kv VALUES ('{big[:20]}', {len(big)})",
                   f"INSERT INTO other VALUES (7, {len(big)})")
        error = take_error(reader)
    finally:
        mariadb_server.admin("SET GLOBAL log_bin_compress = OFF")
    assert "not one ringsync understands" in error and "binlog.0" in error
