"""Rows of every canonical type, at their edges, for the capture and apply contracts."""

from __future__ import annotations

import datetime as dt
import sqlite3
import tempfile
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

from node.codec import build_frame, decode_changes
from node.engines.sqlite.engine import SQLiteEngine
from node.model import Change, Json, Op
from ringsync.v1 import values_pb2 as pb
from tests.contract.campuses import TYPED_SQLITE_DDL, TYPED_TABLES

TYPED_ROWS: list[tuple[Any, ...]] = [
    (1, None, None, None, None, None, None, None, None, None, None),
    (2, True, -(2**63), Decimal("12345678901234567890.123456789"), 1.7976931348623157e308,
     "检验科 ✓ — Ω \U0001F9EA", b"\x00\xff\x10", dt.datetime(1900, 1, 1, tzinfo=dt.UTC),
     dt.date(1, 1, 1), uuid.UUID(int=0), Json('{"a":[1,2,{"b":null}],"z":"ü"}')),
    (3, False, 2**63 - 1, Decimal("-0.000000001"), float("-inf"), "x" * 200_000,
     bytes(range(256)) * 4096, dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC),
     dt.date(9999, 12, 31), uuid.UUID("12345678-1234-5678-1234-567812345678"), Json("[]")),
    (4, True, 0, Decimal("0"), 5e-324, "", b"", dt.datetime(2026, 11, 22, 5, 6, 7, 123456,
     tzinfo=dt.UTC), dt.date(2026, 11, 22), uuid.uuid4(), Json('"text"')),
]


def apply(engine: Any, changes: list[Change], origin: str = "x", seq: int = 1) -> None:
    with engine.target.apply_session() as s:
        s.apply(changes)
        s.advance(origin, seq)


def wire(engine: Any, changes: list[Change]) -> list[Change]:
    """Changes through the wire model: encode to a frame, parse, decode."""
    frame = build_frame("o", 1, 0, True, 0.0, changes, dict(engine.shapes()))
    return decode_changes(pb.TxnFrame.FromString(frame.SerializeToString()))[1]


def fresh_sqlite_sums(rows: list[tuple[Any, ...]], table: str = "typed") -> tuple[int, str]:
    """(rows, digest) of ``rows`` applied to a fresh SQLite campus: the reference."""
    path = Path(tempfile.mkdtemp()) / "ref.db"
    conn = sqlite3.connect(path)
    conn.executescript(TYPED_SQLITE_DDL)
    conn.close()
    ref = SQLiteEngine(path, TYPED_TABLES, "ref")
    ref.open()
    try:
        with ref.target.apply_session() as s:
            s.apply([Change(table, Op.INSERT, new=r) for r in rows])
            s.advance("x", 1)
        return ref.inspect.checksums([table])[0][table]
    finally:
        ref.close()
