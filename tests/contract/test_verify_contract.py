"""The Verifier contract, on every engine: bucket digests and row hashes equal
to node.verify.rowhash's reference over the same canonical rows, whether the
engine hashes in SQL (PostgreSQL without JSON columns), or in Python (SQLite,
and PostgreSQL tables with a JSON column), at every bucket depth."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import pytest

from node.model import Change, Op
from node.verify.rowhash import Digest, hash_row, table_digest
from tests.contract.campuses import (
    TYPED_MARIADB_DDL,
    TYPED_POSTGRES_DDL,
    TYPED_SQLITE_DDL,
    Campus,
    MariaDBCampus,
    PostgresCampus,
    SQLiteCampus,
)
from tests.contract.typed import TYPED_ROWS, apply

PLAIN_SQLITE = """;CREATE TABLE plain(id INTEGER, tag TEXT, b BOOLEAN, i INTEGER,
  d DECIMAL_TEXT, f REAL, t TEXT, "by" BLOB, ts TIMESTAMPTZ, dt DATE, u UUID,
  PRIMARY KEY (id, tag))"""
PLAIN_POSTGRES = """;CREATE TABLE plain(id bigint, tag text, b boolean, i bigint, d numeric,
  f double precision, t text, "by" bytea, ts timestamptz, dt date, u uuid,
  PRIMARY KEY (id, tag))"""
# Keys that need quoting in the record text: empty, commas, quotes, backslashes,
# parentheses, white space; and rows of every typed edge without the JSON column.
TAGS = ["", "a,b", 'say "hi"', "back\\slash", "(x)", " lead", "tab\there", "new\nline",
        "plain", "ünï"]
PLAIN_MARIADB = """;CREATE TABLE plain(id BIGINT, tag VARCHAR(64), b BOOLEAN, i BIGINT,
  d DECIMAL(65, 30), f DOUBLE, t LONGTEXT, `by` LONGBLOB, ts DATETIME(6), dt DATE, u UUID,
  PRIMARY KEY (id, tag)) ENGINE=InnoDB"""
# Decimals under a declared scale, the key one too: each engine reads 1.5 back
# its own way (PostgreSQL 1.50), and every one must hash it as the number 1.5.
SCALED_SQLITE = ";CREATE TABLE scaled(k DECIMAL_TEXT PRIMARY KEY, amount DECIMAL_TEXT)"
SCALED_POSTGRES = ";CREATE TABLE scaled(k numeric(8,3) PRIMARY KEY, amount numeric(10,2))"
SCALED_MARIADB = (";CREATE TABLE scaled(k DECIMAL(8,3) PRIMARY KEY, amount DECIMAL(10,2)) "
                  "ENGINE=InnoDB")
SCALED_ROWS = [(Decimal("1.5"), Decimal("1.5")), (Decimal("2"), Decimal("2")),
               (Decimal("-0.25"), Decimal("-0.1")), (Decimal("0"), Decimal("0")),
               (Decimal("12345.001"), Decimal("99999999.99")), (Decimal("7"), None)]


def plain_rows(typed: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Every typed row under every tag, without the JSON column."""
    return [(r[0] * 100 + j, tag, *r[1:-1]) for r in typed for j, tag in enumerate(TAGS)]


PLAIN_ROWS = plain_rows(TYPED_ROWS)


def reference(kinds: tuple[str, ...], keys: tuple[int, ...], rows: list[tuple[Any, ...]],
              bits: int) -> dict[int, Digest]:
    out: dict[int, Digest] = {}
    for row in rows:
        rh = hash_row(kinds, keys, row, bits)
        out.setdefault(rh.bucket, Digest()).add(rh.digest)
    return out


def as_hex(buckets: dict[int, Digest]) -> dict[int, tuple[int, str]]:
    return {b: (d.rows, d.hex()) for b, d in buckets.items()}


class VerifyContract(Campus):
    SQLITE_DDL = TYPED_SQLITE_DDL + PLAIN_SQLITE + SCALED_SQLITE
    POSTGRES_DDL = TYPED_POSTGRES_DDL + PLAIN_POSTGRES + SCALED_POSTGRES
    MARIADB_DDL = TYPED_MARIADB_DDL + PLAIN_MARIADB + SCALED_MARIADB
    TABLES = ("typed", "kv", "plain", "scaled")

    @pytest.mark.parametrize("table", ["typed", "plain"])
    def test_digests_match_the_reference_at_every_depth(self, engine: Any, table: str) -> None:
        rows = self.typed_rows() if table == "typed" else plain_rows(self.typed_rows())
        apply(engine, [Change(table, Op.INSERT, new=r) for r in rows])
        shape = engine.shapes()[table]
        for bits in (0, 1, 3, 8, 14):
            got = engine.verifier.bucket_digests(table, bits)
            assert got.applied == {"x": 1}
            assert as_hex(got.buckets) == as_hex(
                reference(shape.kinds, shape.key_indexes, rows, bits)), bits
        assert table_digest(got.buckets.values()).rows == len(rows)

    def test_a_declared_scale_does_not_change_a_decimal_hash(self, engine: Any) -> None:
        """The same numbers hash the same on every engine, whatever scale its
        column declares (a PostgreSQL numeric(10,2) reads 1.5 as 1.50)."""
        apply(engine, [Change("scaled", Op.INSERT, new=r) for r in SCALED_ROWS])
        shape = engine.shapes()["scaled"]
        for bits in (0, 3):
            assert as_hex(engine.verifier.bucket_digests("scaled", bits).buckets) == as_hex(
                reference(shape.kinds, shape.key_indexes, SCALED_ROWS, bits)), bits
        rows = engine.verifier.row_hashes("scaled", 3, list(range(8))).rows
        assert sorted(r.digest for r in rows) == sorted(
            hash_row(shape.kinds, shape.key_indexes, r, 3).digest for r in SCALED_ROWS)

    def test_row_hashes_name_exactly_the_rows_of_the_buckets_asked(self, engine: Any) -> None:
        rows = plain_rows(self.typed_rows())
        apply(engine, [Change("plain", Op.INSERT, new=r) for r in rows])
        shape = engine.shapes()["plain"]
        bits = 3
        ref = [hash_row(shape.kinds, shape.key_indexes, r, bits) for r in rows]
        wanted = sorted({rh.bucket for rh in ref})[:3]
        got = engine.verifier.row_hashes("plain", bits, wanted).rows
        assert sorted(got, key=lambda r: r.key_text) == sorted(
            (rh for rh in ref if rh.bucket in wanted), key=lambda r: r.key_text)

    def test_one_changed_value_changes_one_bucket_only(self, engine: Any) -> None:
        rows = plain_rows(self.typed_rows())
        apply(engine, [Change("plain", Op.INSERT, new=r) for r in rows])
        bits = 4
        before = as_hex(engine.verifier.bucket_digests("plain", bits).buckets)
        victim = random.Random(7).choice(rows)
        changed = (*victim[:6], (victim[6] or "") + "!", *victim[7:])  # column t
        apply(engine, [Change("plain", Op.UPDATE, old=victim, new=changed)], "x", 2)
        after = as_hex(engine.verifier.bucket_digests("plain", bits).buckets)
        assert [b for b in before if before[b] != after.get(b)] == [
            hash_row(engine.shapes()["plain"].kinds, (0, 1), victim, bits).bucket]


class TestSQLiteVerify(SQLiteCampus, VerifyContract):
    pass


class TestPostgresVerify(PostgresCampus, VerifyContract):
    pass


class TestMariaDBVerify(MariaDBCampus, VerifyContract):
    pass
