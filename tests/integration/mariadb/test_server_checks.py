"""A MariaDB server that cannot serve a campus is refused at start with an
error that names every setting and privilege to change (real servers,
started with the wrong settings)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pymysql
import pytest

from node.engines.mariadb.server import binlog_files, check_server
from ringsync.commands.demo.cluster import free_port
from ringsync.commands.demo.mariadb import DATABASE, LocalMariaDB
from ringsync.errors import EngineError
from tests.mariadb_fixtures import connect, need_mariadb


@pytest.fixture
def make_server() -> Iterator:
    need_mariadb()
    servers: list[LocalMariaDB] = []

    def make(**settings: str | None) -> LocalMariaDB:
        server = LocalMariaDB.create(free_port(), settings=settings)
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.remove()


def test_a_well_set_server_passes(mariadb_server: LocalMariaDB) -> None:
    conn = connect(mariadb_server, DATABASE)
    try:
        check_server(conn, DATABASE, "campus a")
        assert binlog_files(conn)[-1].startswith("binlog.")
    finally:
        conn.close()


def test_wrong_binlog_settings_are_all_named(make_server) -> None:
    server = make_server(**{"binlog-format": "MIXED", "binlog-row-image": "MINIMAL",
                            "binlog-row-metadata": "MINIMAL", "log-bin-compress": "ON"})
    conn = connect(server, DATABASE)
    try:
        with pytest.raises(EngineError) as caught:
            check_server(conn, DATABASE, "campus a")
    finally:
        conn.close()
    message = str(caught.value)
    for expected in ("binlog_format is MIXED, set binlog_format = ROW",
                     "binlog_row_image is MINIMAL, set binlog_row_image = FULL",
                     "binlog_row_metadata is MINIMAL", "log_bin_compress is ON",
                     "campus a", "restart"):
        assert expected in message


def test_a_server_without_binary_log_is_refused(make_server) -> None:
    server = make_server(**{"log-bin": None})
    conn = connect(server, DATABASE)
    try:
        with pytest.raises(EngineError, match="log_bin is OFF, set log_bin"):
            check_server(conn, DATABASE, "campus a")
    finally:
        conn.close()


def test_missing_privileges_are_named_with_the_grant_to_run(mariadb_server: LocalMariaDB) -> None:
    mariadb_server.admin(
        "CREATE USER IF NOT EXISTS 'limited'@'127.0.0.1' IDENTIFIED BY 'pw'",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON {DATABASE}.* TO 'limited'@'127.0.0.1'",
        "GRANT REPLICATION SLAVE ON *.* TO 'limited'@'127.0.0.1'")
    conn = pymysql.connect(host="127.0.0.1", port=mariadb_server.port, user="limited",
                           password="pw", database=DATABASE)
    try:
        with pytest.raises(EngineError) as caught:
            check_server(conn, DATABASE, "campus a")
    finally:
        conn.close()
        mariadb_server.admin("DROP USER 'limited'@'127.0.0.1'")
    message = str(caught.value)
    assert "BINLOG MONITOR" in message and "BINLOG REPLAY" in message
    assert "CONNECTION ADMIN" in message and "TRIGGER" in message and "CREATE" in message
    assert "REPLICATION SLAVE (" not in message  # granted, so not asked for
    assert "GRANT BINLOG MONITOR, BINLOG REPLAY, CONNECTION ADMIN, PROCESS ON *.*" in message
    assert "SUPER (to create the fence and stamp triggers" in message  # binary log on


def test_a_node_starting_waits_for_a_server_not_yet_up_but_not_for_wrong_settings(
        mariadb_server: LocalMariaDB) -> None:
    """At start the engine's first connection waits out a server that is not
    taking connections (nothing listens yet: 2003), within its patience, and
    fails at once on a refused password: no waiting for what will not heal."""
    from node.engines.mariadb.connections import MariaContext

    slept: list[float] = []
    nobody = MariaContext(f"mysql://ringsync:x@127.0.0.1:{free_port()}/{DATABASE}", (), "a")

    def pause(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    with pytest.raises(EngineError, match="cannot connect to MariaDB"):
        nobody.connect_at_start(patience=1.0, sleep=pause)
    assert slept, "a server not listening yet is waited for"
    wrong = MariaContext(mariadb_server.url(password="not-the-password"), (), "a")

    def never(seconds: float) -> None:
        raise AssertionError("a refused password must not be waited for")

    with pytest.raises(EngineError, match="Access denied"):
        wrong.connect_at_start(sleep=never)
    right = MariaContext(mariadb_server.url(), (), "a").connect_at_start(sleep=never)
    right.close()


def test_a_connection_lost_while_the_node_starts_makes_it_start_again(
        mariadb_server: LocalMariaDB, mariadb_db: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The server drops the engine's connection in the middle of its start
    (as when mariadbd is killed while the node starts beside it: a real
    KILL CONNECTION here): the engine starts again instead of exiting."""
    from node.engines.mariadb import engine as engine_module

    real = engine_module.check_server
    threads: list[int] = []

    def dropped_once(conn: pymysql.Connection, database: str, description: str) -> None:
        threads.append(conn.thread_id())
        if len(threads) == 1:
            mariadb_server.admin(f"KILL CONNECTION {conn.thread_id()}")
        real(conn, database, description)

    monkeypatch.setattr(engine_module, "check_server", dropped_once)
    app = connect(mariadb_server, mariadb_db)
    with app.cursor() as cur:
        cur.execute("CREATE TABLE kv(k VARCHAR(20) PRIMARY KEY, v BIGINT) ENGINE=InnoDB")
    app.close()
    engine = engine_module.MariaEngine(mariadb_server.url(database=mariadb_db), ("kv",), "a")
    try:
        engine.open()
        assert len(threads) == 2 and threads[0] != threads[1]  # a new connection, started again
        assert engine.shapes()["kv"].columns == ("k", "v")
        engine.inspect.check_health()
    finally:
        engine.close()
