"""A real MariaDB server for the MariaDB engine's tests (tests/conftest.py
offers its fixtures everywhere): made by
mariadb-install-db in a temporary directory, run by mariadbd on a free port
and its own socket, stopped by pid (ringsync.commands.demo.mariadb). Never
the machine's own server. Without MariaDB installed the tests skip, except
under CI (CI=true), where a missing server is a failed install step."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pymysql
import pytest

from ringsync.commands.demo import mariadb
from ringsync.commands.demo.cluster import free_port


def need_mariadb() -> None:
    if mariadb.installed():
        return
    if os.environ.get("CI"):
        pytest.fail("MariaDB is not installed: scripts/setup should have installed "
                    "mariadb-server")
    pytest.skip("MariaDB is not installed (apt-get install mariadb-server)")


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[mariadb.LocalMariaDB]:
    need_mariadb()
    server = mariadb.LocalMariaDB.create(free_port())
    server.start()
    yield server
    server.remove()


@pytest.fixture
def mariadb_db(mariadb_server: mariadb.LocalMariaDB) -> Iterator[str]:
    """A new, empty database on the session's server (its name); dropped after."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    mariadb_server.admin(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    yield name
    mariadb_server.admin(f"DROP DATABASE IF EXISTS {name}")


def connect(server: mariadb.LocalMariaDB, database: str, **kwargs: object) -> pymysql.Connection:
    """An application's connection (the campus account, UTC session time zone)."""
    settings: dict[str, object] = {"autocommit": True, **kwargs}
    conn = pymysql.connect(host="127.0.0.1", port=server.port, user=mariadb.USER,
                           password=mariadb.PASSWORD, database=database,
                           init_command="SET time_zone = '+00:00'", **settings)
    return conn
