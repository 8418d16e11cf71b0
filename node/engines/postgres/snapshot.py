"""Initial-load snapshots of a PostgreSQL campus database (the donor side).

A temporary logical slot is created on a replication connection with
``SNAPSHOT 'export'``: PostgreSQL returns its consistent point (an LSN) and
exports the snapshot that sees exactly the transactions committed before it.
A normal connection imports that snapshot in a REPEATABLE READ transaction
and reads every table from it, streamed through a server-side cursor. The
temporary slot is dropped as soon as the snapshot is imported. The node's
own capture reports commit end LSNs, so "in the snapshot" is simply
"capture position at or before the consistent point".
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import pq, sql
from psycopg.pq.abc import PGconn

from node.engines.postgres import pgoutput as po
from node.engines.snapshot import ReadSnapshot
from node.model import TableShape
from ringsync.errors import EngineError
from ringsync.names import NODE_APPLICATION_NAME

_names = itertools.count(1)

CanonicalRow = Callable[[tuple[str, ...], tuple[Any, ...]], tuple[Any, ...]]


def _export_snapshot(dsn: str, slot_prefix: str) -> tuple[PGconn, int, str]:
    conninfo = psycopg.conninfo.make_conninfo(dsn, replication="database",
                                              fallback_application_name=NODE_APPLICATION_NAME)
    repl = pq.PGconn.connect(conninfo.encode())
    if repl.status != pq.ConnStatus.OK:
        raise EngineError(f"cannot open a replication connection for a snapshot: "
                          f"{repl.get_error_message()}")
    name = f"{slot_prefix}_snap_{os.getpid()}_{next(_names)}"
    res = repl.exec_(f"CREATE_REPLICATION_SLOT {name} TEMPORARY LOGICAL pgoutput "
                     f"(SNAPSHOT 'export')".encode())
    if res.status != pq.ExecStatus.TUPLES_OK:
        error = res.get_error_message()
        repl.finish()
        raise EngineError(
            f"cannot export a snapshot for initial load: {error}; check that "
            f"max_replication_slots leaves a slot free"
        )
    consistent_point = res.get_value(0, 1)
    snapshot_name = res.get_value(0, 2)
    assert consistent_point is not None and snapshot_name is not None
    return repl, po.str_to_lsn(consistent_point.decode()), snapshot_name.decode()


@contextmanager
def pg_snapshot(
    dsn: str,
    slot_prefix: str,
    connect: Callable[[], psycopg.Connection[Any]],
    shapes: dict[str, TableShape],
    canonical: CanonicalRow,
) -> Iterator[ReadSnapshot]:
    repl, position, snapshot_name = _export_snapshot(dsn, slot_prefix)
    conn = None
    try:
        conn = connect()
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot_name)))
        repl.finish()  # imported: the temporary slot can go
        applied = {o: int(s) for o, s in conn.execute(
            "SELECT origin, seq FROM ringsync.applied").fetchall()}

        def count(shape: TableShape) -> int:
            row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
                sql.Identifier(shape.name))).fetchone()
            return int(row[0]) if row else 0

        def read(shape: TableShape, size: int) -> Iterator[list[tuple[Any, ...]]]:
            cols = sql.SQL(", ").join(sql.Identifier(c) for c in shape.columns)
            with conn.cursor(name=f"ringsync_snapshot_{next(_names)}") as cur:
                cur.itersize = size
                cur.execute(sql.SQL("SELECT {} FROM {}").format(cols, sql.Identifier(shape.name)))
                while batch := cur.fetchmany(size):
                    yield [canonical(shape.kinds, r) for r in batch]

        yield ReadSnapshot(position, applied, shapes, count, read)
    except psycopg.Error as e:
        raise EngineError(f"initial-load snapshot failed on PostgreSQL: {e}") from e
    finally:
        repl.finish()
        if conn is not None:
            conn.close()
