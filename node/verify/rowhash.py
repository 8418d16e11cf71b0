"""A row's verification hash, the same on every engine.

A row is hashed over the *canonical* values replication carries (so a
PostgreSQL campus and a SQLite campus holding the same rows agree), each
written as one text field:

    int, text, uuid, date              their usual text
    decimal                            plain text without trailing fractional
                                       zeros (1.50 and 1.5 are one number:
                                       engines declare different scales)
    bool                               t / f
    float                              the IEEE 754 double, big-endian, in hex
    timestamp                          microseconds since the Unix epoch (UTC)
    bytes                              hex
    json                               the canonical JSON spelling
    NULL                               no field at all (see below)

and the fields are joined as PostgreSQL's record output writes ``ROW(...)``:
``(f1,f2,...)``, a field quoted when it is empty or holds ``"\\(),`` or ASCII
white space, with ``"`` and ``\\`` doubled inside the quotes, and NULL as
nothing between the commas. That makes the text unambiguous, and lets
PostgreSQL build it in SQL with one ``ROW(...)::text``
(node.engines.postgres.verifying) while other engines build it here.

    key hash  = sha256(record text of the key columns)
    bucket    = the first ``bits`` bits of the key hash (bits <= MAX_BITS)
    row hash  = sha256(record text of every column)

A set of rows digests to four sums, modulo 2^64, of the row hashes' four
big-endian 64-bit words, and its row count. Sums do not depend on scan order
(engines' collations differ), and a row counted twice changes them (XOR
would cancel it). Buckets' digests add up to the table's.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import struct
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from node.conflicts.driver import display
from node.model import Json

# Which definition this is: kept digests record the one they were built by and
# are rebuilt when it changes (node.engines.*.digests). 2: decimals lost their
# trailing fractional zeros (a declared scale no longer changes a hash).
HASH_DEFINITION = 2
# 16,384 buckets: a table's bucket digests stay well under a megabyte (the depth a
# table gets is ringsync.verification.bits_for's choice, about 64 rows a bucket)
MAX_BITS = 14
_WORD = 1 << 64
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICRO = dt.timedelta(microseconds=1)
_QUOTE_IF = frozenset('"\\(), \t\n\r\v\f')


def _decimal_text(value: Decimal) -> str:
    """A decimal's field: its plain text without the trailing fractional zeros
    a declared scale adds (PostgreSQL's ``trim_scale``), so a numeric(10,2)
    1.50 hashes as a MariaDB DECIMAL read as 1.5 or a SQLite text '1.5'."""
    text = format(value, "f")
    if not value.is_finite() or "." not in text:
        return text
    text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-", "-0") else text


def field_text(kind: str, value: Any) -> str | None:
    """One canonical value as its verification field (None: NULL)."""
    if value is None:
        return None
    if kind == "json":
        return value.text  # node.model.Json: already canonical
    if kind == "bool" or isinstance(value, bool):
        return "t" if value else "f"
    if kind == "float" or isinstance(value, float):
        return struct.pack(">d", value).hex()
    if isinstance(value, Decimal):
        return _decimal_text(value)
    if isinstance(value, dt.datetime):
        return str((value - _EPOCH) // _MICRO)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)  # int, text, uuid


def _quoted(text: str | None) -> str:
    if text is None:
        return ""
    if text == "" or not _QUOTE_IF.isdisjoint(text):
        return '"' + text.replace("\\", "\\\\").replace('"', '""') + '"'
    return text


def record_text(fields: Iterable[str | None]) -> str:
    """Fields as PostgreSQL's record output writes them."""
    return "(" + ",".join(map(_quoted, fields)) + ")"


def parse_record(text: str) -> list[str | None]:
    """The fields of a record text record_text wrote (None: NULL)."""
    if not (text.startswith("(") and text.endswith(")")):
        raise ValueError(f"not a record text: {text[:40]!r}")
    body, i = text[1:-1], 0
    fields: list[str | None] = []
    while True:
        if i < len(body) and body[i] == '"':
            out, i = [], i + 1
            while True:
                ch = body[i]
                if ch == "\\" or (ch == '"' and body[i + 1:i + 2] == '"'):
                    out.append(body[i + 1])
                    i += 2
                elif ch == '"':
                    i += 1
                    break
                else:
                    out.append(ch)
                    i += 1
            fields.append("".join(out))
        else:
            end = body.find(",", i)
            end = len(body) if end < 0 else end
            fields.append(body[i:end] or None)
            i = end
        if i >= len(body):
            return fields
        i += 1  # the comma


def value_of_field(kind: str, text: str | None) -> Any:
    """The canonical value a verification field was written from (field_text's
    inverse): how a node finds the row a report's key names."""
    if text is None:
        return None
    if kind == "int":
        return int(text)
    if kind == "bool":
        return text == "t"
    if kind == "float":
        return struct.unpack(">d", bytes.fromhex(text))[0]
    if kind == "decimal":
        return Decimal(text)
    if kind == "timestamp":
        return _EPOCH + int(text) * _MICRO
    if kind == "bytes":
        return bytes.fromhex(text)
    if kind == "date":
        return dt.date.fromisoformat(text)
    if kind == "uuid":
        return uuid.UUID(text)
    if kind == "json":
        return Json(text)
    return text


def display_field(kind: str, text: str | None) -> Any:
    """A verification field as an operator reads it in a report (JSON-able):
    its canonical value, shown as the conflict log shows values."""
    return display(value_of_field(kind, text))


def bucket_of(key_hash: bytes, bits: int) -> int:
    return int.from_bytes(key_hash[:2], "big") >> (16 - bits)


@dataclass(frozen=True)
class RowHash:
    """One row as verification sees it: where it is and what it holds."""

    key_text: str   # the key's record text: the row's identity across engines
    bucket: int
    digest: bytes   # sha256 of the row's record text


def hash_row(kinds: Sequence[str], key_indexes: Sequence[int], row: Sequence[Any],
             bits: int) -> RowHash:
    """A row of canonical values, hashed (the engines without SQL hashing)."""
    texts = [field_text(k, v) for k, v in zip(kinds, row, strict=True)]
    key_text = record_text(texts[i] for i in key_indexes)
    return RowHash(key_text, bucket_of(hashlib.sha256(key_text.encode()).digest(), bits),
                   hashlib.sha256(record_text(texts).encode()).digest())


@dataclass
class Digest:
    """A set of rows' digest: row count and four word sums modulo 2^64."""

    rows: int = 0
    words: list[int] = field(default_factory=lambda: [0, 0, 0, 0])

    def add(self, row_digest: bytes) -> None:
        w = self.words
        for i, word in enumerate(struct.unpack(">4Q", row_digest)):
            w[i] = (w[i] + word) % _WORD
        self.rows += 1

    def add_sums(self, rows: int, sums: Sequence[int]) -> None:
        """Fold in a part already summed elsewhere (SQL's signed sums are fine)."""
        self.rows += rows
        self.words = [(a + int(b)) % _WORD for a, b in zip(self.words, sums, strict=True)]

    def merge(self, other: Digest) -> None:
        self.add_sums(other.rows, other.words)

    def hex(self) -> str:
        return struct.pack(">4Q", *self.words).hex()

    @classmethod
    def from_hex(cls, rows: int, text: str) -> Digest:
        return cls(rows, list(struct.unpack(">4Q", bytes.fromhex(text))))


def buckets_differ(a: Mapping[int, Digest], b: Mapping[int, Digest]) -> bool:
    """Whether two sets of bucket digests disagree (an empty bucket counts as absent)."""
    def shown(buckets: Mapping[int, Digest]) -> dict[int, tuple[int, str]]:
        return {k: (d.rows, d.hex()) for k, d in buckets.items() if d.rows}
    return shown(a) != shown(b)


def table_digest(buckets: Iterable[Digest]) -> Digest:
    total = Digest()
    for b in buckets:
        total.merge(b)
    return total
