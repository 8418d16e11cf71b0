"""Frames from peers are checked whole: every bad kind refused clearly, every good value taken."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from decimal import Decimal

import pytest

from node.codec import build_frame, escape_peer_text
from node.model import Change, Json, Op, TableShape
from node.replication.framecheck import (
    FrameChecker,
    FrameRefused,
    Refusals,
    check_hello_tables,
)
from ringsync.errors import ProtocolError
from ringsync.v1 import values_pb2 as pb

KINDS = ("text", "int", "float", "decimal", "bool", "timestamp", "date", "uuid", "json", "bytes")
COLUMNS = ("id", "n", "f", "d", "b", "ts", "day", "u", "j", "raw")
SHAPE = TableShape("t", COLUMNS, (0,), KINDS)
LOCAL = {"t": SHAPE}
GOOD_ROW = ("k1", 2**63 - 1, float("inf"), Decimal("-12345678901234567890.000000001"), True,
            dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC), dt.date(1, 1, 1),
            uuid.UUID(int=7), Json('{"a":[1,2.5,"x"]}'), b"\x00\xff")
RING = ("a", "b", "c")


def checker() -> FrameChecker:
    return FrameChecker("a", LOCAL, lambda origin: origin in RING)


def frame_of(*rows: tuple, origin: str = "b", seq: int = 1, op: Op = Op.INSERT,
             shape: TableShape = SHAPE, **fields) -> pb.TxnFrame:
    changes = [Change("t", op, new=r) if op is not Op.DELETE else Change("t", op, old=r)
               for r in rows]
    f = build_frame(origin, seq, 0, True, 1_700_000_000.0, changes, {"t": shape})
    for name, value in fields.items():
        if isinstance(value, dict):
            getattr(f, name).update(value)
        else:
            setattr(f, name, value)
    return pb.TxnFrame.FromString(f.SerializeToString())


def refused(frame: pb.TxnFrame) -> FrameRefused:
    with pytest.raises(FrameRefused) as e:
        checker().check(frame, "b")
    assert isinstance(e.value, ProtocolError)  # INVALID_ARGUMENT on the wire
    return e.value


def with_value(column: str, fill) -> pb.TxnFrame:
    f = frame_of(GOOD_ROW)
    value = f.changes[0].new_values[COLUMNS.index(column)]
    value.Clear()
    fill(value)
    return f


def test_good_frames_of_every_value_type_are_accepted() -> None:
    c = checker()
    nulls = ("k2", *([None] * (len(COLUMNS) - 1)))
    low = ("k3", -(2**63), -0.0, Decimal("0"), False,
           dt.datetime(1, 1, 1, tzinfo=dt.UTC), dt.date(9999, 12, 31), uuid.UUID(int=0),
           Json("null"), b"")
    c.check(frame_of(GOOD_ROW, nulls, low), "b")
    c.check(frame_of(GOOD_ROW, op=Op.DELETE), "b")
    # SQLite keeps any of int/float/text/bytes in an INTEGER/TEXT/untyped column
    c.check(frame_of(("k4", "not a number", 1, Decimal(5), True, *GOOD_ROW[5:9], 3.5)), "b")
    # another column order (the sender's) is fine: it is reordered on apply
    order = (9, 8, 7, 6, 5, 4, 3, 2, 1, 0)
    other = TableShape("t", tuple(COLUMNS[i] for i in order), (9,))
    c.check(frame_of(tuple(GOOD_ROW[i] for i in order), shape=other), "b")
    # frame fields at the largest values the engines store
    c.check(frame_of(GOOD_ROW, seq=2**63 - 1, hlc=2**63 - 1, deps={"c": 2**63 - 1}), "b")


@pytest.mark.parametrize("column, fill, words", [
    ("ts", lambda v: setattr(v, "timestamp_micros", 2**63 - 1), "outside years 1-9999"),
    ("ts", lambda v: setattr(v, "timestamp_micros", -(2**62)), "outside years 1-9999"),
    ("day", lambda v: setattr(v, "date_days", 2**31 - 1), "outside years 1-9999"),
    ("d", lambda v: setattr(v, "decimal_value", "12,5"), "malformed decimal"),
    ("d", lambda v: setattr(v, "decimal_value", "NaN"), "non-finite decimal"),
    ("d", lambda v: setattr(v, "decimal_value", "1_000"), "not in canonical form"),
    ("d", lambda v: setattr(v, "decimal_value", "1E+999999"), "PostgreSQL numeric"),
    ("u", lambda v: setattr(v, "uuid_value", b"\x01" * 15), "uuid of 15 bytes"),
    ("f", lambda v: setattr(v, "float_value", float("nan")), "NaN"),
    ("j", lambda v: setattr(v, "json_value", "{oops"), "malformed JSON"),
    ("j", lambda v: setattr(v, "json_value", "[NaN]"), "malformed JSON"),
    ("j", lambda v: setattr(v, "json_value", "[" * 100_000), "malformed JSON"),
    ("ts", lambda v: setattr(v, "text_value", "yesterday"), "does not fit"),
    ("b", lambda v: setattr(v, "int_value", 1), "does not fit"),
    ("n", lambda v: setattr(v, "bool_value", True), "does not fit"),
    ("id", lambda v: setattr(v, "is_null", True), "NULL in a primary-key column"),
    ("n", lambda v: None, "without a kind"),
])
def test_bad_values_are_refused_naming_the_column(column, fill, words) -> None:
    e = refused(with_value(column, fill))
    assert e.kind == "bad_value"
    assert f"t.{column}" in str(e) and words in str(e) and "frame b/1 from b" in str(e)


def test_bad_old_values_are_refused_too() -> None:
    f = frame_of(GOOD_ROW, op=Op.DELETE)
    f.changes[0].old_values[COLUMNS.index("u")].uuid_value = b"short"
    assert refused(f).kind == "bad_value"


@pytest.mark.parametrize("fields, words", [
    ({"hlc": 2**64 - 1}, "hlc"), ({"seq": 2**63}, "seq"),
    ({"commit_time": float("nan")}, "commit_time"), ({"commit_time": float("inf")}, "commit_time"),
    ({"commit_time": -1.0}, "commit_time"), ({"deps": {"c": 2**64 - 1}}, "deps[c]"),
    ({"set_epochs": {"s": 2**63}}, "set_epochs[s]"), ({"deps": {"x\ny": 1}}, "deps names"),
])
def test_frame_fields_beyond_what_engines_store_are_refused(fields, words) -> None:
    e = refused(frame_of(GOOD_ROW, **fields))
    assert e.kind == "out_of_range" and words in str(e)
    assert "\n" not in str(e)


def test_origin_not_in_the_ring_is_refused_and_escaped() -> None:
    e = refused(frame_of(GOOD_ROW, origin="evil\n2026-01-01 INFO all is well"))
    assert e.kind == "unknown_origin" and "not a campus of this ring" in str(e)
    assert "\n" not in str(e) and "evil\\n2026" in str(e)


def test_missing_unknown_and_repeated_columns_are_refused() -> None:
    short = TableShape("t", COLUMNS[:-1], (0,))
    e = refused(frame_of(GOOD_ROW[:-1], shape=short))
    assert e.kind == "bad_shape" and "lacks columns ['raw']" in str(e)
    extra = TableShape("t", (*COLUMNS, "smuggled"), (0,))
    e = refused(frame_of((*GOOD_ROW, 1), shape=extra))
    assert e.kind == "bad_shape" and "smuggled" in str(e)
    twice = TableShape("t", (*COLUMNS[:-1], "id"), (0,))
    assert "twice" in str(refused(frame_of((*GOOD_ROW[:-1], "x"), shape=twice)))
    other_key = TableShape("t", COLUMNS, (1,))
    assert "has key ['n']" in str(refused(frame_of(GOOD_ROW, shape=other_key)))


def test_unknown_table_and_a_table_named_twice_are_refused() -> None:
    f = frame_of(GOOD_ROW)
    f.tables[0].name = "secrets"
    assert refused(f).kind == "bad_shape"
    f = frame_of(GOOD_ROW)
    f.tables.add().CopyFrom(f.tables[0])
    assert "twice" in str(refused(f))


def test_structurally_broken_frames_are_malformed() -> None:
    f = frame_of(GOOD_ROW)
    del f.changes[0].new_values[-1]
    assert refused(f).kind == "malformed"
    f = frame_of(GOOD_ROW)
    f.tables[0].key_indexes.append(99)
    assert refused(f).kind == "malformed"


def test_hello_with_a_key_index_beyond_its_columns_is_refused() -> None:
    t = pb.TableShape(name="t", columns=["id"], key_indexes=[3])
    with pytest.raises(FrameRefused) as e:
        check_hello_tables([t])
    assert e.value.kind == "bad_hello" and "beyond its 1 columns" in str(e.value)
    check_hello_tables([pb.TableShape(name="t", columns=["id"], key_indexes=[0],
                                      column_kinds=["text"])])


def test_refusals_are_counted_by_kind_and_logged_once_per_peer_and_kind(caplog) -> None:
    r = Refusals()
    with caplog.at_level(logging.WARNING):
        for _ in range(50):
            r.record("b", FrameRefused("bad_value", "frame b/1: t.ts: out of range"))
        r.record("c", FrameRefused("bad_value", "frame c/1: t.ts: out of range"))
        r.record("b\nforged", ProtocolError("gap"))
    lines = [m for m in caplog.messages if "refused" in m]
    assert len(lines) == 3
    assert all("\n" not in m for m in caplog.messages)
    assert r.by_kind == {"bad_value": 51, "malformed": 1} and r.total == 52
    assert "b\\nforged: gap" in r.last
    pb_refused = r.to_pb()
    assert pb_refused.total == 52 and dict(pb_refused.by_kind)["bad_value"] == 51


def test_alerts_are_deduplicated_and_bounded() -> None:
    r = Refusals()
    for i in range(30):
        for _ in range(3):
            r.record("b", FrameRefused("forged_duplicate", "x", alert=f"forged frame b/{i}"))
    lines = r.alert_lines()
    assert len(lines) == 21 and "10 older alert(s)" in lines[0]
    assert lines[-1] == "forged frame b/29 (sent by b)"


def test_escape_peer_text_is_one_line_bounded_and_idempotent() -> None:
    s = "a\nb\r\x1b[2J\u2028z" + "x" * 500
    once = escape_peer_text(s, 50)
    assert once.isprintable() and "\n" not in once and once.endswith("(+460 chars)")
    assert escape_peer_text(once, 500) == once
    assert escape_peer_text("plain campus") == "plain campus"


# -- rows as COPY text (TxnFrame.raw_inserts) ---------------------------------

RAW_GOOD = ["k1", "9223372036854775807", "Infinity", "-12.5", "t", "2026-11-22 05:06:07+00",
            "2026-11-22", "00000000-0000-0000-0000-000000000007", '{"a": 1}', "\\x00ff"]


def raw_frame(*rows: list, shape: TableShape = SHAPE) -> pb.TxnFrame:
    from node.codec import build_raw_frame
    from node.rawcopy import encode_rows
    f = build_raw_frame("b", 1, 0, True, 1_700_000_000.0,
                        [(shape, len(rows), encode_rows(rows))])
    return pb.TxnFrame.FromString(f.SerializeToString())


def with_raw(column: str, text: str | None) -> pb.TxnFrame:
    row = list(RAW_GOOD)
    row[COLUMNS.index(column)] = text
    return raw_frame(RAW_GOOD, row)


def test_good_copy_text_rows_pass_nulls_included() -> None:
    nulls = [RAW_GOOD[0]] + [None] * (len(COLUMNS) - 1)
    checker().check(raw_frame(RAW_GOOD, nulls), "b")


@pytest.mark.parametrize(("column", "text", "says"), [
    ("id", None, "NULL in a primary-key column"),
    ("f", "NaN", "float NaN"),
    ("d", "NaN", "non-finite decimal"),
    ("ts", "infinity", "column 5 (timestamp)"),
    ("day", "2026-11-22 BC", "column 6 (date)"),
    ("day", "12026-11-22", "column 6 (date)"),
])
def test_copy_text_values_the_wire_would_refuse_are_refused(column: str, text: str | None,
                                                            says: str) -> None:
    e = refused(with_raw(column, text))
    assert e.kind == "bad_value" and says in str(e), str(e)


def test_copy_text_read_by_other_kinds_than_this_campus_is_refused() -> None:
    other = TableShape("t", COLUMNS, (0,), ("text", "text", *KINDS[2:]))
    e = refused(raw_frame(RAW_GOOD, shape=other))
    assert e.kind == "bad_shape" and "column n is int here" in str(e)


def test_a_null_key_is_found_wherever_the_key_is() -> None:
    late_key = TableShape("t", COLUMNS, (1,), KINDS)
    row = list(RAW_GOOD)
    row[1] = None
    checker_late = FrameChecker("a", {"t": late_key}, lambda origin: origin in RING)
    with pytest.raises(FrameRefused) as e:
        checker_late.check(raw_frame(RAW_GOOD, row, shape=late_key), "b")
    assert e.value.kind == "bad_value" and "NULL in a primary-key column" in str(e.value)
