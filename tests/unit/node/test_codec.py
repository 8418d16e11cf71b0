"""Canonical values round-trip through the wire model; bad frames are refused."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest

from node.codec import RowSetDigest, build_frame, check_frame, decode_changes
from node.model import Change, Json, Op, TableShape
from ringsync.errors import ProtocolError
from ringsync.v1 import values_pb2 as pb

VALUES = [
    None, True, False, 0, -(2**63), 2**63 - 1, 1.5, float("inf"), -0.0,
    Decimal("12345678901234567890.000000001"), "", "检验科 ✓ \x00 end", "x" * 100_000,
    b"", b"\x00\xff" * 1000,
    dt.datetime(2026, 11, 22, 5, 6, 7, 123456, tzinfo=dt.UTC),
    dt.datetime(1900, 1, 1, tzinfo=dt.UTC), dt.date(1999, 12, 31),
    uuid.UUID("12345678-1234-5678-1234-567812345678"), Json('{"a":[1,2]}'),
]


def test_every_canonical_value_round_trips() -> None:
    shape = TableShape("t", tuple(f"c{i}" for i in range(len(VALUES))), (0,))
    row = (1, *VALUES[1:])
    f = build_frame("a", 1, 0, True, 1.0, [Change("t", Op.INSERT, new=row)], {"t": shape})
    parsed = pb.TxnFrame.FromString(f.SerializeToString())
    check_frame(parsed, ["t"])
    shapes, changes = decode_changes(parsed)
    assert shapes == [shape]
    assert changes[0].new == row


def test_row_set_digest_ignores_order_but_not_content() -> None:
    a, b = RowSetDigest(), RowSetDigest()
    for r in [(1, "x"), (2, "y")]:
        a.add(r)
    for r in [(2, "y"), (1, "x")]:
        b.add(r)
    assert a.hexdigest() == b.hexdigest()
    c = RowSetDigest()
    for r in [(1, "x"), (2, "z")]:
        c.add(r)
    assert c.hexdigest() != a.hexdigest()


@pytest.mark.parametrize("mutate", [
    lambda f: f.changes[0].ClearField("new_values"),
    lambda f: setattr(f.changes[0], "table_index", 5),
    lambda f: f.tables[0].ClearField("key_indexes"),
    lambda f: setattr(f, "seq", 0),
    lambda f: setattr(f.tables[0], "name", "unknown"),
])
def test_malformed_frames_are_refused(mutate) -> None:
    shape = TableShape("t", ("id", "v"), (0,))
    f = build_frame("a", 1, 0, True, 1.0, [Change("t", Op.INSERT, new=(1, 2))], {"t": shape})
    mutate(f)
    with pytest.raises(ProtocolError):
        check_frame(f, ["t"])
