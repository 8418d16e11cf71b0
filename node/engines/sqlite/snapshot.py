"""Initial-load snapshots of a SQLite campus database (the donor side).

Under ``BEGIN IMMEDIATE`` no application transaction is half way through,
so the highest change-log id ever handed out (``sqlite_sequence``) marks an
exact instant: every local change up to it is committed, none after. A
second connection starts its read transaction while the lock is held, so it
sees exactly that instant (WAL keeps it stable while writers go on), and
``claimed`` is set so the next application write opens a new captured
transaction: no captured transaction straddles the snapshot.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from node.engines.snapshot import ReadSnapshot
from node.engines.sqlite.values import from_sqlite
from node.model import TableShape


def q(name: str) -> str:
    """Quote an SQLite identifier."""
    return '"' + name.replace('"', '""') + '"'


@contextmanager
def sqlite_snapshot(
    connect: Callable[[], sqlite3.Connection], shapes: dict[str, TableShape]
) -> Iterator[ReadSnapshot]:
    writer, reader = connect(), connect()
    try:
        writer.execute("BEGIN IMMEDIATE")
        try:
            row = writer.execute(
                "SELECT seq FROM sqlite_sequence WHERE name = '_rs_log'").fetchone()
            position = int(row[0]) if row else 0
            writer.execute("UPDATE _rs_state SET claimed = 1 WHERE id = 1")
            reader.execute("BEGIN")
            # The first read fixes the read transaction's view, still under the lock.
            applied = dict(reader.execute("SELECT origin, seq FROM _rs_applied").fetchall())
        finally:
            writer.execute("COMMIT")

        def count(shape: TableShape) -> int:
            return int(reader.execute(f"SELECT count(*) FROM {q(shape.name)}").fetchone()[0])

        def read(shape: TableShape, size: int) -> Iterator[list[tuple[Any, ...]]]:
            cols = ", ".join(q(c) for c in shape.columns)
            cursor = reader.execute(f"SELECT {cols} FROM {q(shape.name)}")
            while batch := cursor.fetchmany(size):
                yield [from_sqlite(shape.kinds, r) for r in batch]

        yield ReadSnapshot(position, applied, shapes, count, read)
    finally:
        if reader.in_transaction:
            reader.execute("COMMIT")
        reader.close()
        writer.close()
