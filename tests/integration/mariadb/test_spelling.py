"""The shared statements' upsert and quoted names, as MariaDB spells them,
do on a real MariaDB server what they do on SQLite (node.spelling)."""

from __future__ import annotations

import sqlite3
from typing import Any

from node.spelling import ON_DUPLICATE_KEY, Spelling, columns_sql
from ringsync.commands.demo.mariadb import LocalMariaDB
from tests.mariadb_fixtures import connect

MARIADB = Spelling("%s", ON_DUPLICATE_KEY)
SQLITE = Spelling("?")
WRITES = [("a", 5, 2), ("b", 1, 1), ("a", 7, 3), ("a", 9, 0)]


def _applied(spelling: Spelling, execute: Any) -> None:
    statement = spelling.upsert("applied", ("origin", "seq", "changes"), ("origin",),
                                replace=("seq",), add=("changes",))
    for row in WRITES:
        execute(statement, row)


def test_upserts_replace_and_add_alike_on_mariadb_and_sqlite(mariadb_server: LocalMariaDB,
                                                              mariadb_db: str) -> None:
    lite = sqlite3.connect(":memory:")
    lite.execute('CREATE TABLE applied(origin TEXT PRIMARY KEY, seq INTEGER, changes INTEGER)')
    _applied(SQLITE, lite.execute)
    expected = sorted(lite.execute("SELECT origin, seq, changes FROM applied").fetchall())
    assert expected == [("a", 9, 5), ("b", 1, 1)]

    conn = connect(mariadb_server, mariadb_db)
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES')")
            cur.execute('CREATE TABLE applied(origin VARCHAR(64) PRIMARY KEY, seq BIGINT, '
                        'changes BIGINT)')
            _applied(MARIADB, cur.execute)
            cur.execute("SELECT origin, seq, changes FROM applied ORDER BY origin")
            assert [tuple(r) for r in cur.fetchall()] == expected
            # "key" (a keyword in MariaDB) is a column name in quoted lists
            cur.execute('CREATE TABLE log(id BIGINT PRIMARY KEY, "key" TEXT)')
            cur.execute(f"INSERT INTO log({columns_sql(('id', 'key'))}) VALUES (%s, %s)",
                        (1, '["k"]'))
            cur.execute('SELECT "key" FROM log WHERE "key" = %s', ('["k"]',))
            assert cur.fetchall() == (('["k"]',),)
    finally:
        conn.close()
