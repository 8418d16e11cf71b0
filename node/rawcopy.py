"""Raw insert runs: a table's INSERTs as one blob of PostgreSQL COPY text.

The data flow, for a frame whose changes are all INSERTs:

    capture (PostgreSQL)  pgoutput text values --encode_rows--> RawRun.copy_text
    receiver, any engine  check_raw (node.codec.check_frame), then either
        PostgreSQL        COPY the blob into a staging table: no per-row Python
        other engines     decode_rows -> canonical values (node.codec.decode_changes)

So the blob must mean the same rows to PostgreSQL's COPY FROM and to
decode_rows. check_raw refuses, with no per-row Python, everything on which
the two could disagree: a wrong line or field count, a raw CR (COPY reads it
as a line end), an escaped tab, newline or CR (COPY reads them as data, not
as separators), ``\\.`` (COPY's end-of-data marker), NUL, invalid UTF-8.

decode_rows gives exactly the values node.engines.postgres.values.parse gives
for the same text (by column kind instead of type OID), so a campus cannot
tell a raw frame from the same rows sent as Values. It works column by
column: one split of the whole text, one slice per column, one builtin
mapped over each column; per-field Python runs only for fields with a
backslash (NULLs and escapes).
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from itertools import chain, repeat
from typing import Any

from node.engines.canonical import canonical_json
from ringsync.errors import ProtocolError

NULL = "\\N"


# -- canonical values from PostgreSQL's output spelling, by column kind ---------------


def parse_bool(text: str) -> bool:
    if text == "t":
        return True
    if text == "f":
        return False
    raise ValueError("a boolean is 't' or 'f'")


def parse_bytea(text: str) -> bytes:
    if text.startswith("\\x"):
        return bytes.fromhex(text[2:])
    raise ValueError("bytea must arrive in hex format (bytea_output = hex)")


def parse_timestamp(text: str) -> dt.datetime:
    """timestamp and timestamptz: naive means UTC; the result is aware, in UTC."""
    value = dt.datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


# str for text: the field is the value (decode_rows skips calling it)
KIND_PARSERS: dict[str, Callable[[str], Any]] = {
    "bool": parse_bool,
    "bytes": parse_bytea,
    "int": int,
    "float": float,
    "decimal": Decimal,
    "text": str,
    "timestamp": parse_timestamp,
    "date": dt.date.fromisoformat,
    "uuid": uuid.UUID,
    "json": canonical_json,
}
KINDS = frozenset(KIND_PARSERS)

# what a parser raises on text its kind cannot read (RecursionError: deeply nested JSON)
_PARSE_ERRORS = (ValueError, ArithmeticError, RecursionError)


# -- encoding (capture side) ------------------------------------------------------------


def encode_field(text: str | None) -> str:
    """One pgoutput text value as a COPY text field."""
    if text is None:
        return NULL
    # a replace chain: 4x faster than str.translate with a multi-character table
    return (text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
            .replace("\r", "\\r"))


# Markers for the one-pass encoder: lone surrogates, which no text decoded from
# UTF-8 contains (and which could not be encoded to UTF-8 anyway).
_FIELD_END, _ROW_END, _NULL_MARK = "\ud800", "\ud801", "\ud802"
_ROW_MARK = (_ROW_END,)
_flatten = chain.from_iterable


def encode_rows(rows: Iterable[Sequence[str | None]]) -> bytes:
    """Rows of pgoutput text values as COPY text: fields tab-joined, every line
    ending in a newline, UTF-8.

    All fields of all rows (and a marker after each row) are joined once, and
    the whole text is escaped with one pass per special character, so the cost
    per row is a few C-level steps, not a Python call per value.
    """
    rows = rows if isinstance(rows, list) else list(rows)
    if not rows:
        return b""
    fields = list(_flatten(_flatten(zip(rows, repeat(_ROW_MARK)))))
    nulls = fields.count(None)
    if nulls:
        fields = [_NULL_MARK if v is None else v for v in fields]
    text = _FIELD_END.join(fields) + _FIELD_END
    if (text.count(_FIELD_END) != len(fields) or text.count(_ROW_END) != len(rows)
            or text.count(_NULL_MARK) != nulls):
        raise ValueError("a value holds a lone surrogate, which is not text")
    if "\\" in text:
        text = text.replace("\\", "\\\\")
    if "\t" in text:
        text = text.replace("\t", "\\t")
    if "\n" in text:
        text = text.replace("\n", "\\n")
    if "\r" in text:
        text = text.replace("\r", "\\r")
    text = text.replace(_FIELD_END + _ROW_END + _FIELD_END, "\n")
    if _ROW_END in text:
        raise ValueError("a row without columns cannot be written as COPY text")
    text = text.replace(_FIELD_END, "\t")
    if nulls:
        text = text.replace(_NULL_MARK, NULL)
    return text.encode()


# Markers for encode_byte_rows: bytes that UTF-8 text never holds (0xFE, 0xFF)
# and NUL, which PostgreSQL text never holds.
_B_FIELD, _B_ROW, _B_NULL = b"\x00", b"\xff", b"\xfe"


def encode_byte_rows(rows: list[list[bytes | None]]) -> bytes | None:
    """encode_rows for values still as the bytes pgoutput sent (capture's fast
    path: no str is made of any value). None when a value holds a marker byte
    or the text is not UTF-8: the caller then takes its general path, which
    says what is wrong."""
    if not rows:
        return b""
    nulls = 0
    joined = []
    for row in rows:
        if None in row:
            nulls += row.count(None)
            row = [_B_NULL if v is None else v for v in row]
        joined.append(_B_FIELD.join(row))  # type: ignore[arg-type]
    text = _B_ROW.join(joined) + _B_ROW
    width = len(rows[0])
    if (text.count(_B_ROW) != len(rows) or text.count(_B_NULL) != nulls
            or text.count(_B_FIELD) != len(rows) * (width - 1)
            or any(len(r) != width for r in rows)):
        return None
    if b"\\" in text:
        text = text.replace(b"\\", b"\\\\")
    if b"\t" in text:
        text = text.replace(b"\t", b"\\t")
    if b"\n" in text:
        text = text.replace(b"\n", b"\\n")
    if b"\r" in text:
        text = text.replace(b"\r", b"\\r")
    text = text.replace(_B_FIELD, b"\t").replace(_B_ROW, b"\n")
    if nulls:
        text = text.replace(_B_NULL, b"\\N")
    try:
        text.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text


# -- structure (receiver side, before anything else) -----------------------------------

# every byte but tab and newline: deleting them leaves a blob's separators only
_NOT_SEPARATORS = bytes(b for b in range(256) if b not in b"\t\n")

# a backslash followed by what COPY FROM and decode_rows would read apart (if the
# backslash is itself escaped, it is harmless: see _ambiguous_escape)
_AMBIGUOUS_ESCAPE = re.compile(rb"\\[\t\n\r.]")
_AMBIGUOUS_NAMES = {b"\n": "an escaped newline", b"\r": "an escaped carriage return",
                    b"\t": "an escaped tab", b".": "the end-of-data marker \\."}


def _line_of(blob: bytes, offset: int) -> int:
    return blob.count(b"\n", 0, offset) + 1


def _shape_problem(blob: bytes, rows: int, width: int) -> str:
    """What is wrong with the lines and fields of ``blob``, which has some problem."""
    lines = blob.count(b"\n")
    if lines != rows:
        return f"says {rows} rows but has {lines} lines"
    tabs = blob.count(b"\t")
    if tabs != rows * (width - 1):
        return f"of {rows} rows of {width} columns has {tabs} tabs, not {rows * (width - 1)}"
    for number, line in enumerate(blob.split(b"\n"), 1):
        if line.count(b"\t") != width - 1:
            return f"line {number} does not have {width} fields"
    return "is malformed"  # not reached


def _ambiguous_escape(blob: bytes) -> str | None:
    """The first escape COPY FROM reads differently from decode_rows, if any."""
    if not _AMBIGUOUS_ESCAPE.search(blob):
        return None  # the common case: one C-level scan
    # pairs of backslashes are literal backslashes; one left over escapes what follows
    unpaired = blob.replace(b"\\\\", b"")
    found = _AMBIGUOUS_ESCAPE.search(unpaired)
    if not found:
        return None
    line = _line_of(unpaired, found.start())  # removing pairs keeps every newline
    return f"line {line} holds {_AMBIGUOUS_NAMES[found.group()[1:]]}"


def check_raw(blob: bytes, rows: int, width: int) -> None:
    """Refuse a run's COPY text that is not ``rows`` lines of ``width`` fields
    of UTF-8 text that COPY FROM and decode_rows read alike (ProtocolError).
    C-level passes over the blob only, unless it is malformed: no per-row Python."""
    if rows == 0:
        if blob:
            raise ProtocolError(f"raw insert run of 0 rows carries {len(blob)} bytes")
        return
    if width < 1:
        raise ProtocolError(f"raw insert run for a table of {width} columns")
    if not blob.endswith(b"\n"):
        raise ProtocolError("raw insert run does not end with a newline")
    # the separators alone must be width-1 tabs and a newline, rows times
    if blob.translate(None, _NOT_SEPARATORS) != (b"\t" * (width - 1) + b"\n") * rows:
        raise ProtocolError(f"raw insert run {_shape_problem(blob, rows, width)}")
    for byte, what in ((b"\0", "a NUL byte"), (b"\r", "a raw carriage return")):
        at = blob.find(byte)
        if at >= 0:
            raise ProtocolError(f"raw insert run: line {_line_of(blob, at)} holds {what}")
    if b"\\" in blob:
        problem = _ambiguous_escape(blob)
        if problem:
            raise ProtocolError(f"raw insert run: {problem}")
    try:
        blob.decode()
    except UnicodeDecodeError as e:
        raise ProtocolError(f"raw insert run: line {_line_of(blob, e.start)} is not UTF-8 "
                            f"(byte {e.start})") from None


# -- decoding (a receiver that needs canonical values) ----------------------------------

_SIMPLE_ESCAPES = {b"b": b"\b", b"f": b"\f", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"v": b"\v"}
_ESCAPE = re.compile(rb"\\([0-7]{1,3}|x[0-9A-Fa-f]{1,2}|.|\Z)", re.S)


def _escape_value(m: re.Match[bytes]) -> bytes:
    g = m.group(1)
    if not g:
        raise ValueError("a backslash ends the field")
    first = g[0]
    if 0x30 <= first <= 0x37:  # \ooo: the byte, as COPY computes it (& 0377)
        return bytes((int(g, 8) & 0xFF,))
    if first == 0x78 and len(g) > 1:  # \xhh
        return bytes((int(g[1:], 16),))
    if g == b".":
        raise ValueError("\\. (COPY's end-of-data marker) inside a field")
    return _SIMPLE_ESCAPES.get(g, g)  # any other character stands for itself


def _unescape_bytes(field: str) -> str:
    """COPY FROM text de-escaping, on bytes as PostgreSQL does it: octal and hex
    escapes make bytes, and the result must be UTF-8 without NUL."""
    raw = _ESCAPE.sub(_escape_value, field.encode())
    if b"\0" in raw:
        raise ValueError("an escape makes a NUL byte")
    return raw.decode()


def unescape(field: str) -> str:
    """A COPY text field (not ``\\N``) as the text it stands for."""
    s = field.replace("\\\\", "\0")  # NUL is never in a checked field: a safe stand-in
    if "\\" in s:
        s = s.replace("\\n", "\n").replace("\\t", "\t").replace("\\r", "\r")
        if "\\" in s:
            return _unescape_bytes(field)
    return s.replace("\0", "\\")


def _field_value(field: str, parse: Callable[[str], Any] | None) -> Any:
    if field == NULL:
        return None
    if "\\" in field:
        field = unescape(field)
    return field if parse is None else parse(field)


def _refuse_field(column: list[str], index: int, kind: str,
                  parse: Callable[[str], Any] | None) -> ProtocolError:
    """The error for the first field of ``column`` that does not decode."""
    for row, field in enumerate(column, 1):
        try:
            _field_value(field, parse)
        except _PARSE_ERRORS as e:
            return ProtocolError(f"raw insert line {row}, column {index} ({kind}): "
                                 f"{repr(field[:40])}{'...' if len(field) > 40 else ''} "
                                 f"does not decode ({type(e).__name__})")
    return ProtocolError(f"raw insert column {index} ({kind}) does not decode")


def _decode_column(column: list[str], index: int, kind: str, escaped: bool) -> list[Any]:
    parse = KIND_PARSERS[kind]
    if escaped and "\\" in "\t".join(column):
        pick = None if parse is str else parse
        try:
            return [_field_value(f, pick) for f in column]
        except _PARSE_ERRORS:
            raise _refuse_field(column, index, kind, pick) from None
    if parse is str:
        return column
    try:
        return list(map(parse, column))
    except _PARSE_ERRORS:
        raise _refuse_field(column, index, kind, parse) from None


def decode_rows(blob: bytes, kinds: Sequence[str], rows: int) -> list[tuple[Any, ...]]:
    """The rows of a run's COPY text as canonical values, by column kind.
    Anything malformed raises ProtocolError naming the line (1-based, as
    COPY counts) and the column index."""
    width = len(kinds)
    for index, kind in enumerate(kinds):
        if kind not in KIND_PARSERS:
            raise ProtocolError(f"raw insert column {index} has an unknown kind "
                                f"(known: {', '.join(sorted(KINDS))})")
    check_raw(blob, rows, width)
    if rows == 0:
        return []
    text = blob.decode()
    fields = text.replace("\n", "\t").split("\t")
    fields.pop()  # after the last newline
    escaped = "\\" in text
    columns = [_decode_column(fields[i::width], i, kind, escaped)
               for i, kind in enumerate(kinds)]
    return list(zip(*columns, strict=True))
