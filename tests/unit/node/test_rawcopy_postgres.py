"""Raw insert runs against a real PostgreSQL: decode_rows reads PostgreSQL's own
COPY TO output as the values psycopg loads, encode_rows of its text values is
what COPY TO writes, and COPY FROM of encode_rows loads the same rows back."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.adapt import Loader

from node.engines.postgres.connections import json_as_text
from node.engines.postgres.values import canonical_row
from node.rawcopy import check_raw, decode_rows, encode_rows
from node.schema import PG_KINDS
from ringsync.commands.demo.cluster import free_port
from ringsync.commands.demo.postgres import LocalPostgres
from ringsync.errors import ProtocolError

# the session settings raw runs are spelled in (values.proto, RawRun)
OPTIONS = "-c TimeZone=UTC -c DateStyle=ISO -c extra_float_digits=3 -c bytea_output=hex"

# every type ringsync replicates, one column each: (name, SQL type, type oid)
COLUMNS = [
    ("id", "int4", 23), ("b", "bool", 16), ("by", "bytea", 17), ("i8", "int8", 20),
    ("i2", "int2", 21), ("o", "oid", 26), ("f4", "float4", 700), ("f8", "float8", 701),
    ("n", "numeric", 1700), ("tx", "text", 25), ("ch", "char(6)", 1042),
    ("vc", "varchar(300000)", 1043), ("nm", "name", 19), ("ts", "timestamp", 1114),
    ("tz", "timestamptz", 1184), ("d", "date", 1082), ("u", "uuid", 2950), ("j", "json", 114),
    ("jb", "jsonb", 3802),
]
KINDS = [PG_KINDS[oid] for _, _, oid in COLUMNS]
NASTY = "tab\there\nnewline\\back\rCR \\N \\. \x01\x1b[0m 检验科 ✓ — Ω \U0001F9EA"
ROWS: list[tuple[Any, ...]] = [
    (1, *[None] * (len(COLUMNS) - 1)),
    (2, True, "\\x00ff10", -(2**63), -32768, 0, "-Infinity", "1.7976931348623157e308",
     "12345678901234567890.123456789", NASTY, "检 a", NASTY, "name\tx", "0001-01-01 00:00:00",
     "1900-01-01 00:00:00+00", "0001-01-01", "00000000-0000-0000-0000-000000000000",
     '{"a": [1, 2, {"b": null}], "z": "ü", "t": "a\\tb\\\\"}', '{"z": 1, "a": [true, 1.5]}'),
    (3, False, "\\x" + bytes(range(256)).hex() * 256, 2**63 - 1, 32767, 4294967295, "NaN",
     "5e-324", "-0.000000001", "x\\y\t" * 50_000, "", "", "", "9999-12-31 23:59:59.999999",
     "9999-12-31 23:59:59.999999+00", "9999-12-31", "ffffffff-ffff-ffff-ffff-ffffffffffff",
     "[]", '"text"'),
    (4, True, "\\x", 0, 0, 1, "3.4028235e+38", "-0", "NaN", "", "      ", "\\", "\\\\",
     "2026-11-22 05:06:07.123456", "2026-03-29 01:30:00+02", "2026-11-22",
     # a top-level JSON null is a value, not SQL NULL (engine connections load json as text)
     "12345678-1234-5678-1234-567812345678", "null", "1e400"),
    (5, False, "\\x5c6e", 1, -1, 2, "1.17549435e-38", "0.1", "1e-30", "\b\f\v", "\\N", ".",
     "\\.", "1970-01-01 00:00:00", "1970-01-01 00:00:00+00", "1970-01-01",
     "7f1d5a3c-1234-5678-1234-567812345678", '"\\u00e9\\n"', "{}"),
]
TEXT_SELECT = "SELECT " + ", ".join(c for c, _, _ in COLUMNS) + " FROM {} ORDER BY id"


class _TextLoader(Loader):
    """The type's output text, as pgoutput sends it (no parsing)."""

    def load(self, data: Any) -> str:
        return bytes(data).decode()


@pytest.fixture(scope="module")
def pg() -> Iterator[psycopg.Connection[Any]]:
    server = LocalPostgres.create(None, free_port())
    try:
        server.start()
        with psycopg.connect(server.dsn, options=OPTIONS, autocommit=True) as conn:
            columns = ", ".join(f"{c} {t}" for c, t, _ in COLUMNS)
            conn.execute(f"CREATE TABLE typed ({columns}, PRIMARY KEY (id))")
            conn.execute("CREATE TABLE copied (LIKE typed)")
            with conn.cursor() as cur:
                casts = ", ".join(f"%s::{t}" for _, t, _ in COLUMNS)
                cur.executemany(f"INSERT INTO typed VALUES ({casts})",
                                [tuple(None if v is None else str(v) for v in row)
                                 for row in ROWS])
            yield conn
    finally:
        server.remove()


def copy_out(conn: psycopg.Connection[Any], table: str) -> bytes:
    out = bytearray()
    with conn.cursor() as cur, cur.copy(f"COPY {table} TO STDOUT") as copy:
        for data in copy:
            out += data
    return bytes(out)


def text_values(conn: psycopg.Connection[Any], table: str) -> list[tuple[str | None, ...]]:
    cur = conn.cursor()
    for _, _, oid in COLUMNS:
        cur.adapters.register_loader(oid, _TextLoader)
    return cur.execute(TEXT_SELECT.format(table)).fetchall()


def loaded(conn: psycopg.Connection[Any], table: str) -> list[tuple[Any, ...]]:
    """The rows as the engine reads them (json as text: engine connections)."""
    json_as_text(conn)
    rows = conn.execute(TEXT_SELECT.format(table)).fetchall()
    return [canonical_row(KINDS, row) for row in rows]


def same_rows(a: list[tuple[Any, ...]], b: list[tuple[Any, ...]]) -> bool:
    def same(x: Any, y: Any) -> bool:
        return type(x) is type(y) and bool(x == y or (x != x and y != y))  # NaN is NaN
    return len(a) == len(b) and all(
        all(same(x, y) for x, y in zip(r, s, strict=True)) for r, s in zip(a, b, strict=True))


def test_decode_rows_reads_postgresql_copy_output_as_psycopg_loads_it(pg: Any) -> None:
    blob = copy_out(pg, "typed")
    check_raw(blob, len(ROWS), len(COLUMNS))
    assert same_rows(decode_rows(blob, KINDS, len(ROWS)), loaded(pg, "typed"))


def test_encode_rows_writes_what_copy_to_writes(pg: Any) -> None:
    blob = copy_out(pg, "typed")
    texts = text_values(pg, "typed")
    lines = blob.split(b"\n")[:-1]
    for row, line in zip(texts, lines, strict=True):
        if any(v is not None and any(c in v for c in "\b\f\v") for v in row):
            continue  # COPY TO also spells these as \b \f \v; raw is as good (next test)
        assert encode_rows([row]) == line + b"\n"
    assert same_rows(decode_rows(encode_rows(texts), KINDS, len(ROWS)),
                     decode_rows(blob, KINDS, len(ROWS)))


def test_copy_from_loads_encode_rows_back_to_the_same_rows(pg: Any) -> None:
    texts = text_values(pg, "typed")
    blob = encode_rows(texts)
    check_raw(blob, len(ROWS), len(COLUMNS))
    pg.execute("TRUNCATE copied")
    with pg.cursor() as cur, cur.copy("COPY copied FROM STDIN") as copy:
        copy.write(blob)
    assert same_rows(loaded(pg, "copied"), loaded(pg, "typed"))
    assert text_values(pg, "copied") == texts


@pytest.mark.parametrize(("field", "value"), [
    (b"\\101\\x42\\103\\q\\N", "ABCqN"), (b"\\303\\251\\xc3\\xa9", "éé"), (b"\\x4\\xZ", "\x04xZ"),
    (b"\\b\\f\\v\\\\", "\b\f\v\\"), (b"\\1010", "A0"),
])
def test_escapes_mean_what_postgresql_makes_of_them(pg: Any, field: bytes,
                                                    value: str) -> None:
    pg.execute("CREATE TEMP TABLE IF NOT EXISTS one (v text)")
    pg.execute("TRUNCATE one")
    with pg.cursor() as cur, cur.copy("COPY one FROM STDIN") as copy:
        copy.write(field + b"\n")
    assert pg.execute("SELECT v FROM one").fetchall() == [(value,)]
    assert decode_rows(field + b"\n", ["text"], 1) == [(value,)]


@pytest.mark.parametrize("blob", [
    b"a\\\tb\tc\n",  # an escaped tab: one field to COPY, two to a naive split
    b"a\\\nb\tc\nd\te\n",  # an escaped newline: one line to COPY, two to a split
    b"a\\.\tb\nc\td\n",  # the end-of-data marker mid-line
    b"a\tb\n\\.\nc\td\n",  # the end-of-data marker alone
    b"a\tb\rc\td\n",  # a raw CR: a line end to COPY
])
def test_what_check_raw_refuses_copy_reads_otherwise(pg: Any, blob: bytes) -> None:
    """The refusals are needed: COPY FROM fails on these or loads other rows than
    the lines and fields a count of separators sees."""
    naive = [tuple(line.decode().split("\t")) for line in blob.split(b"\n")[:-1]]
    with pytest.raises(ProtocolError):
        check_raw(blob, len(naive), 2)
    pg.execute("CREATE TEMP TABLE IF NOT EXISTS two (a text, b text)")
    pg.execute("TRUNCATE two")
    try:
        with pg.cursor() as cur, cur.copy("COPY two FROM STDIN") as copy:
            copy.write(blob)
    except psycopg.errors.DataError:  # e.g. "end-of-copy marker corrupt"
        return
    assert pg.execute("SELECT a, b FROM two").fetchall() != naive
