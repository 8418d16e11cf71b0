"""Raw insert runs (node.rawcopy, node.codec): COPY text in, canonical values out,
equal to what the Value path gives; every malformed run refused with ProtocolError."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from typing import Any

import pytest

from node.codec import (
    build_frame,
    build_raw_frame,
    check_frame,
    decode_changes,
    frame_rows,
)
from node.engines.postgres.values import parse
from node.model import Change, Op, TableShape
from node.rawcopy import KINDS, check_raw, decode_rows, encode_field, encode_rows, unescape
from node.schema import PG_KINDS
from ringsync.errors import ProtocolError
from ringsync.v1 import values_pb2 as pb

NASTY_TEXT = "a\tb\nc\\d\re\\N\\.\\\\x" * 20_000 + " 检验科 ✓ — Ω \U0001F9EA"

# PostgreSQL's text output of values at their edges, by kind (as pgoutput sends them)
SPELLINGS: dict[str, list[str]] = {
    "bool": ["t", "f"],
    "bytes": ["\\x", "\\x00ff10", "\\x" + bytes(range(256)).hex() * 64],
    "int": ["-9223372036854775808", "9223372036854775807", "0", "-1"],
    "float": ["1.7976931348623157e+308", "-Infinity", "Infinity", "NaN", "5e-324", "-0",
              "0.1", "1.5"],
    "decimal": ["12345678901234567890.123456789", "-0.000000001", "0", "NaN", "1e+20"],
    "text": ["", " ", "\\N", "\\", "\\\\", "x" * 200_000, NASTY_TEXT, "检验科 ✓ — Ω \U0001F9EA",
             "\x01\x1b[31m\x7f", "\\.", "."],
    "timestamp": ["1900-01-01 00:00:00+00", "9999-12-31 23:59:59.999999+00",
                  "2026-11-22 05:06:07.123456", "0001-01-01 00:00:00", "2026-03-29 01:30:00+02",
                  "1970-01-01 00:00:00+00"],
    "date": ["0001-01-01", "9999-12-31", "2026-11-22"],
    "uuid": ["00000000-0000-0000-0000-000000000000", "12345678-1234-5678-1234-567812345678",
             "ffffffff-ffff-ffff-ffff-ffffffffffff"],
    "json": ['{"a": [1, 2, {"b": null}], "z": "ü"}', "[]", '"text"', "null", "1.5",
             '{"deep": ' * 100 + "0" + "}" * 100, '{"tab\\t": "line\\nbreak \\\\"}'],
}


def same(a: Any, b: Any) -> bool:
    """Equal and of one type, NaN equal to NaN (the Value path keeps NaN as it is)."""
    return type(a) is type(b) and bool(a == b or (a != a and b != b))


def same_rows(a: list[tuple[Any, ...]], b: list[tuple[Any, ...]]) -> bool:
    return len(a) == len(b) and all(
        len(x) == len(y) and all(same(u, v) for u, v in zip(x, y, strict=True))
        for x, y in zip(a, b, strict=True))


# -- encoding ------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "field"), [
    (None, "\\N"), ("", ""), ("\\N", "\\\\N"), ("a\tb", "a\\tb"), ("a\nb", "a\\nb"),
    ("a\rb", "a\\rb"), ("\\", "\\\\"), ("\\x00ff", "\\\\x00ff"), ("ü\U0001F9EA", "ü\U0001F9EA"),
    ("\b\f\v", "\b\f\v"),
])
def test_a_field_is_escaped_as_copy_text_needs(text: str | None, field: str) -> None:
    assert encode_field(text) == field
    assert encode_rows([[text]]) == (field + "\n").encode()


def test_rows_are_tab_joined_lines() -> None:
    rows = [("1", None, "a\tb"), ("2", "", "\\"), (None, None, None)]
    assert encode_rows(rows) == b"1\t\\N\ta\\tb\n2\t\t\\\\\n\\N\t\\N\t\\N\n"
    assert encode_rows(iter(rows)) == encode_rows(rows)
    assert encode_rows([]) == b""


def test_encode_rows_equals_encode_field_per_value() -> None:
    rows: list[tuple[str | None, ...]] = [
        tuple(SPELLINGS["text"][i:i + 3]) for i in range(len(SPELLINGS["text"]) - 3)]
    rows.append((None, "\n", None))
    expected = "".join("\t".join(encode_field(v) for v in row) + "\n" for row in rows).encode()
    assert encode_rows(rows) == expected


@pytest.mark.parametrize("rows", [[("a\ud800",)], [("\ud801",)], [("x", "\ud802")], [()]])
def test_rows_that_are_not_copy_text_are_refused(rows: list[tuple[str, ...]]) -> None:
    with pytest.raises(ValueError):
        encode_rows(rows)


# -- decoding equals the Value path -----------------------------------------------------


@pytest.mark.parametrize("kind", sorted(SPELLINGS))
def test_every_kind_decodes_as_parse_does_for_each_of_its_types(kind: str) -> None:
    texts: list[str | None] = [*SPELLINGS[kind], None]
    blob = encode_rows([(t,) for t in texts])
    check_raw(blob, len(texts), 1)
    got = decode_rows(blob, [kind], len(texts))
    oids = [oid for oid, k in PG_KINDS.items() if k == kind]
    assert oids
    for oid in oids:
        assert same_rows(got, [(parse(oid, t),) for t in texts]), (kind, oid)


def test_wide_rows_decode_column_by_column() -> None:
    kinds = sorted(SPELLINGS)
    rows = []
    for i in range(7):
        rows.append(tuple(None if (i + j) % 5 == 0 else SPELLINGS[k][i % len(SPELLINGS[k])]
                          for j, k in enumerate(kinds)))
    oid_of = {k: min(o for o, kk in PG_KINDS.items() if kk == k) for k in kinds}
    got = decode_rows(encode_rows(rows), kinds, len(rows))
    want = [tuple(parse(oid_of[k], v) for k, v in zip(kinds, row, strict=True)) for row in rows]
    assert same_rows(got, want)


@pytest.mark.parametrize(("field", "text"), [
    ("\\b\\f\\n\\r\\t\\v\\\\", "\b\f\n\r\t\v\\"),
    ("\\101\\60\\0601", "A001"), ("\\1010", "A0"), ("\\303\\251\\777", None),
    ("\\x41\\x4a\\x4Ab", "AJJb"), ("\\x4", "\x04"), ("\\xZ", "xZ"), ("\\x", "x"),
    ("\\303\\251", "é"), ("\\xc3\\xa9", "é"), ("\\q\\N\\é", "qNé"), ("a\\\\nb", "a\\nb"),
    ("\\\\\\n", "\\\n"),
])
def test_copy_escapes_follow_postgresql(field: str, text: str | None) -> None:
    if text is None:  # \777 is the byte 0xff (as 0777 & 0377), alone: not UTF-8
        with pytest.raises(ValueError):
            unescape(field)
        with pytest.raises(ProtocolError, match="line 1, column 0"):
            decode_rows((field + "\n").encode(), ["text"], 1)
        return
    assert unescape(field) == text
    assert decode_rows((field + "\n").encode(), ["text"], 1) == [(text,)]


# -- frames ------------------------------------------------------------------------------

SHAPE = TableShape("t", ("id", "note", "at"), (0,), ("int", "text", "timestamp"))
OTHER = TableShape("u", ("k",), (0,), ("uuid",))


def raw_frame() -> pb.TxnFrame:
    runs = [
        (SHAPE, 2, encode_rows([("1", "a\tb", "2026-01-01 00:00:00+00"), ("2", None, None)])),
        (OTHER, 1, encode_rows([("00000000-0000-0000-0000-000000000001",)])),
        (SHAPE, 1, encode_rows([("3", "", "1900-01-01 00:00:00")])),
    ]
    return build_raw_frame("a", 7, 0, True, 1.5, runs, hlc=9, deps={"b": 3})


def test_a_raw_frame_decodes_to_the_inserts_the_value_path_carries() -> None:
    frame = pb.TxnFrame.FromString(raw_frame().SerializeToString())
    assert [t.name for t in frame.tables] == ["t", "u"]
    assert [r.table_index for r in frame.raw_inserts] == [0, 1, 0]
    assert (frame.hlc, dict(frame.deps), frame_rows(frame)) == (9, {"b": 3}, 4)
    check_frame(frame, ["t", "u"])
    shapes, changes = decode_changes(frame)
    assert shapes == [SHAPE, OTHER]
    value_frame = build_frame("a", 7, 0, True, 1.5, changes, {"t": SHAPE, "u": OTHER})
    assert frame_rows(value_frame) == 4
    _, via_values = decode_changes(pb.TxnFrame.FromString(value_frame.SerializeToString()))
    assert changes == via_values
    assert [c.table for c in changes] == ["t", "t", "u", "t"]
    assert all(c.op is Op.INSERT and c.old is None for c in changes)
    assert changes[1].new == (2, None, None)


def test_a_raw_frame_needs_every_kind() -> None:
    with pytest.raises(ValueError):
        build_raw_frame("a", 1, 0, True, 0.0, [(TableShape("t", ("a",), (0,)), 0, b"")])


def test_value_frames_are_unchanged() -> None:
    frame = build_frame("a", 1, 0, True, 0.0, [Change("t", Op.DELETE, old=(1, "x", None))],
                        {"t": SHAPE})
    check_frame(frame)
    assert frame_rows(frame) == 1
    shapes, changes = decode_changes(frame)
    assert shapes == [TableShape("t", SHAPE.columns, SHAPE.key_indexes)]
    assert changes == [Change("t", Op.DELETE, old=(1, "x", None))]


def _set_run(frame: pb.TxnFrame, blob: bytes, rows: int) -> None:
    frame.raw_inserts[0].copy_text = blob
    frame.raw_inserts[0].rows = rows


MALFORMED: dict[str, Callable[[pb.TxnFrame], object]] = {
    "changes and raw": lambda f: f.changes.add(table_index=0, op=pb.RowChange.INSERT),
    "bad table index": lambda f: setattr(f.raw_inserts[0], "table_index", 2),
    "no kinds": lambda f: f.tables[0].ClearField("column_kinds"),
    "short kinds": lambda f: f.tables[0].column_kinds.pop(),
    "long kinds": lambda f: f.tables[0].column_kinds.append("int"),
    "unknown kind": lambda f: f.tables[0].column_kinds.__setitem__(1, "blob\n\x1b"),
    "too many rows": lambda f: setattr(f.raw_inserts[0], "rows", 3),
    "too few rows": lambda f: setattr(f.raw_inserts[0], "rows", 1),
    "no rows, a blob": lambda f: setattr(f.raw_inserts[0], "rows", 0),
    "rows, no blob": lambda f: setattr(f.raw_inserts[0], "copy_text", b""),
    "no final newline": lambda f: _set_run(f, b"1\ta\t\\N\n2\tb\t\\N", 2),
    "extra field": lambda f: _set_run(f, b"1\ta\t\\N\t\n2\tb\n", 2),
    "missing field": lambda f: _set_run(f, b"1\ta\n2\tb\t\\N\n", 1),
    "empty line": lambda f: _set_run(f, b"\n1\ta\t\\N\t2\tb\t\\N\n", 2),
    "NUL": lambda f: _set_run(f, b"1\ta\0\t\\N\n", 1),
    "invalid UTF-8": lambda f: _set_run(f, b"1\t\xc3\x28\t\\N\n", 1),
    "overlong UTF-8": lambda f: _set_run(f, b"1\t\xc0\xaf\t\\N\n", 1),
    "surrogate UTF-8": lambda f: _set_run(f, b"1\t\xed\xa0\x80\t\\N\n", 1),
    "raw CR": lambda f: _set_run(f, b"1\ta\rb\t\\N\n", 1),
    "CRLF": lambda f: _set_run(f, b"1\ta\t\\N\r\n", 1),
    "escaped tab": lambda f: _set_run(f, b"1\ta\\\tb\t\\N\t\n", 1),
    "escaped newline": lambda f: _set_run(f, b"1\ta\\\nb\t\\N\n2\tb\t\\N\n", 2),
    "end-of-data marker": lambda f: _set_run(f, b"1\ta\t\\N\n\\.\n", 2),
    "end-of-data marker mid-line": lambda f: _set_run(f, b"1\ta\\.\t\\N\n", 1),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_check_frame_refuses_a_malformed_raw_frame(case: str) -> None:
    frame = build_raw_frame("a", 1, 0, True, 0.0, [
        (SHAPE, 2, encode_rows([("1", "a", None), ("2", "b", None)]))])
    check_frame(frame, ["t"])
    MALFORMED[case](frame)
    with pytest.raises(ProtocolError):
        check_frame(frame, ["t"])
    with pytest.raises(ProtocolError):
        decode_changes(frame)


def test_escaped_backslashes_before_a_separator_are_fine() -> None:
    blob = encode_rows([("1", "ends with \\", "2026-01-01 00:00:00"), ("2", "\\.\\", None)])
    assert b"\\\t" in blob and b"\\." in blob
    check_raw(blob, 2, 3)
    assert [r[1] for r in decode_rows(blob, SHAPE.kinds, 2)] == ["ends with \\", "\\.\\"]


@pytest.mark.parametrize(("kind", "field"), [
    ("bool", "true"), ("bool", ""), ("bytes", "00ff"), ("bytes", "\\\\xzz"), ("int", "1.5"),
    ("int", "9" * 5000), ("float", "one"), ("decimal", "1,5"), ("timestamp", "infinity"),
    ("timestamp", "9999-12-31 23:00:00-05"), ("timestamp", "2026-02-30 00:00:00"),
    ("date", "0000-01-01"), ("date", "2026-01-01 BC"), ("uuid", "123"), ("json", "{"),
    ("json", "[" * 100_000), ("text", "\\303"), ("text", "\\0"), ("text", "\\x00"),
])
def test_a_value_its_kind_cannot_read_is_a_protocol_error(kind: str, field: str) -> None:
    blob = f"1\t{field}\n".encode()
    with pytest.raises(ProtocolError, match="line 1, column 1"):
        decode_rows(blob, ["int", kind], 1)


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ProtocolError, match="column 1 has an unknown kind"):
        decode_rows(b"1\tx\n", ["int", "blob"], 1)
    assert "text" in KINDS and "blob" not in KINDS


def test_the_error_names_the_line() -> None:
    blob = encode_rows([("1",), ("2",), ("x",), ("4",)])
    with pytest.raises(ProtocolError, match="line 3, column 0"):
        decode_rows(blob, ["int"], 4)
    with pytest.raises(ProtocolError, match="line 2 does not have 2 fields"):
        check_raw(b"1\t2\n3\n4\t\t5\n", 3, 2)


# -- fuzz: whatever a peer sends, ProtocolError or rows ---------------------------------

FUZZ_EXAMPLES = int(os.environ.get("RINGSYNC_FUZZ_EXAMPLES", "3000"))
FUZZ_SHAPE = TableShape("f", tuple(f"c{i}" for i in range(len(SPELLINGS))), (0,),
                        tuple(sorted(SPELLINGS)))
FUZZ_BYTES = b"\\\t\n\r\0.Nx01789afgtv\xc3\xa9\xff\xed\xa0\x80{}[]\"-:+ e"


def _fuzz_frame() -> pb.TxnFrame:
    rows = []
    for i in range(6):
        rows.append(tuple(None if (i * 3 + j) % 7 == 0 else
                          SPELLINGS[k][i % len(SPELLINGS[k])][:60]
                          for j, k in enumerate(FUZZ_SHAPE.kinds)))
    return build_raw_frame("a", 1, 0, True, 0.0, [(FUZZ_SHAPE, len(rows), encode_rows(rows))])


def _mutate(rng: random.Random, blob: bytes, rows: int) -> tuple[bytes, int]:
    b = bytearray(blob)
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        at = rng.randrange(len(b) + 1)
        what = rng.randrange(7)
        if what == 0 and b:
            del b[min(at, len(b) - 1)]
        elif what == 1:
            b[at:at] = bytes([rng.choice(FUZZ_BYTES)])
        elif what == 2 and at < len(b):
            b[at] = rng.choice(FUZZ_BYTES)
        elif what == 3 and at < len(b):
            b[at] = rng.randrange(256)
        elif what == 4:
            size = rng.randrange(1, 40)
            b[at:at] = b[max(0, at - size):at]
        elif what == 5:
            del b[at:]
        else:
            rows = max(0, rows + rng.choice((-1, 1)))
    return bytes(b), rows


def test_fuzzed_raw_runs_decode_or_raise_protocol_error() -> None:
    rng = random.Random(16)
    base = _fuzz_frame()
    check_frame(base, ["f"])
    assert len(decode_changes(base)[1]) == 6
    outcomes = {"refused": 0, "decoded": 0}
    for _ in range(FUZZ_EXAMPLES):
        frame = pb.TxnFrame()
        frame.CopyFrom(base)
        run = frame.raw_inserts[0]
        run.copy_text, run.rows = _mutate(rng, run.copy_text, run.rows)
        try:
            check_frame(frame, ["f"])
        except ProtocolError:
            outcomes["refused"] += 1
            with pytest.raises(ProtocolError):  # without check_frame first: refused too
                decode_changes(frame)
            continue
        try:
            _, changes = decode_changes(frame)
        except ProtocolError:  # well formed, but a value its kind cannot read
            outcomes["refused"] += 1
            continue
        assert len(changes) == run.rows == frame_rows(frame)
        assert all(len(c.new or ()) == len(FUZZ_SHAPE.columns) for c in changes)
        outcomes["decoded"] += 1
    assert outcomes["refused"] and outcomes["decoded"]  # the mutations hit both ways


# -- capture's byte path ---------------------------------------------------------------

def test_byte_rows_encode_exactly_as_text_rows() -> None:
    import random

    from node.rawcopy import encode_byte_rows
    rnd = random.Random(5)
    alphabet = ["a", "\t", "\n", "\r", "\\", "N", "ü", "检", " ", "\\N", "."]
    for _ in range(300):
        width = rnd.randint(1, 6)
        rows = [[None if rnd.random() < 0.2 else "".join(rnd.choices(alphabet, k=rnd.randint(0, 6)))
                 for _ in range(width)] for _ in range(rnd.randint(1, 5))]
        as_bytes = [[None if v is None else v.encode() for v in row] for row in rows]
        assert encode_byte_rows(as_bytes) == encode_rows(rows), rows


@pytest.mark.parametrize("value", [b"\x00", b"\xfe", b"\xff", b"\xc3", b"ok\xe2\x82"])
def test_byte_rows_with_a_marker_byte_or_broken_utf8_go_the_general_way(value: bytes) -> None:
    from node.rawcopy import encode_byte_rows
    assert encode_byte_rows([[b"1", value]]) is None


def test_an_insert_read_from_the_copydata_bytes_equals_the_general_parser() -> None:
    import struct

    from node.engines.postgres import pgoutput as po
    values = [b"42", None, "a\tb ü".encode(), b""]
    payload = b"I" + struct.pack("!I", 16384) + b"N" + struct.pack("!h", len(values))
    for v in values:
        payload += b"n" if v is None else b"t" + struct.pack("!i", len(v)) + v
    data = b"w" + struct.pack("!QQq", 1, 2, 3) + payload
    general = po.parse_pgoutput(memoryview(payload))
    assert isinstance(general, po.RowMessage)
    fields = po.insert_fields(data, 31)
    assert fields is not None
    assert [None if f is None else f.decode() for f in fields] == general.new
    unchanged = data[:33] + b"u" + data[34:]
    assert po.insert_fields(unchanged, 31) is None  # not text or NULL: the general parser
    assert po.insert_fields(data + b"x", 31) is None  # trailing bytes: the general parser
