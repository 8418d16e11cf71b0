"""Verification's pure parts: the row hash's text, digests, and how differences
are named (ringsync.verification, node.verify.rowhash)."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from decimal import Decimal

import pytest

from node.model import Json
from node.verify.rowhash import (
    Digest,
    display_field,
    field_text,
    hash_row,
    parse_record,
    record_text,
    table_digest,
)
from ringsync.verification import (
    Difference,
    bits_for,
    chunks,
    differences_of,
    differing_buckets,
    vector_reached,
)

AWKWARD = ["", "a,b", 'q"q', "b\\s", "(p)", " ", "\t", "\n", "\r", "\v", "\f", "ü", "plain"]


@pytest.mark.parametrize("seed", range(20))
def test_record_text_round_trips_any_fields(seed: int) -> None:
    rng = random.Random(seed)
    fields = [rng.choice([None, *AWKWARD, "".join(rng.choices(AWKWARD, k=3))])
              for _ in range(rng.randint(1, 6))]
    assert parse_record(record_text(fields)) == fields


def test_field_texts_are_the_sql_spellings() -> None:
    assert field_text("timestamp", dt.datetime(1969, 12, 31, 23, 59, 59, 500000,
                                               tzinfo=dt.UTC)) == "-500000"
    assert field_text("float", 1.0) == "3ff0000000000000"
    assert field_text("decimal", Decimal("1E-8")) == "0.00000001"
    # one number, one field, whatever scale a column declares
    assert field_text("decimal", Decimal("2.50")) == field_text("decimal", Decimal("2.5")) == "2.5"
    assert field_text("decimal", Decimal("-0.00")) == "0"
    assert field_text("decimal", Decimal("100")) == "100"
    assert field_text("decimal", Decimal("1E+2")) == "100"
    assert field_text("decimal", Decimal("NaN")) == "NaN"
    assert field_text("bool", True) == "t" and field_text("int", 7) == "7"
    assert field_text("bytes", b"\x00\xff") == "00ff"
    assert field_text("json", Json('{"a":1}')) == '{"a":1}'
    assert field_text("uuid", uuid.UUID(int=1)) == "00000000-0000-0000-0000-000000000001"
    assert field_text("date", dt.date(1, 1, 1)) == "0001-01-01"
    assert display_field("timestamp", "-500000") == "1969-12-31T23:59:59.500000+00:00"
    assert display_field("float", "3ff0000000000000") == 1.0


def test_a_row_counted_twice_or_moved_never_cancels() -> None:
    rows = [hash_row(("int", "text"), (0,), (i, f"v{i}"), 4) for i in range(50)]
    once, twice = Digest(), Digest()
    for r in rows:
        once.add(r.digest)
        twice.add(r.digest)
    twice.add(rows[0].digest)
    assert twice.hex() != once.hex() and twice.rows == once.rows + 1
    pair = Digest()
    pair.add(rows[1].digest)
    pair.add(rows[1].digest)
    assert pair.hex() != Digest().hex()  # XOR would give zero here
    buckets: dict[int, Digest] = {}
    for r in rows:
        buckets.setdefault(r.bucket, Digest()).add(r.digest)
    assert table_digest(buckets.values()).hex() == once.hex()


def test_bucket_depth_aims_at_64_rows_and_stops_at_14_bits() -> None:
    assert bits_for(0) == 0 and bits_for(64) == 0 and bits_for(65) == 1
    assert bits_for(1_000_000) == 14 and bits_for(10**9) == 14
    assert 32 <= 1_000 >> bits_for(1_000) <= 64


def test_differing_buckets_count_a_missing_bucket_as_empty() -> None:
    same = (3, b"x")
    assert differing_buckets({"a": {1: same, 2: same}, "b": {1: same, 2: same}}) == []
    assert differing_buckets({"a": {1: same, 2: same}, "b": {1: same}}) == [2]
    assert differing_buckets({"a": {1: same}, "b": {1: (3, b"y")}, "c": {}}) == [1]


def test_chunks_hold_about_ten_thousand_rows() -> None:
    assert chunks(list(range(10)), 14, 1_000_000) == [list(range(10))]
    parts = chunks(list(range(1000)), 10, 640_000)  # 625 rows a bucket
    assert all(len(p) == 16 for p in parts[:-1]) and sum(map(len, parts)) == 1000


@pytest.mark.parametrize("digests, kind, marks", [
    ({"a": b"1", "b": None, "c": b"1"}, "missing",
     {"a": "present", "b": "absent", "c": "present"}),
    ({"a": None, "b": b"1", "c": None}, "extra", {"a": "absent", "b": "present", "c": "absent"}),
    ({"a": b"1", "b": b"2", "c": b"1"}, "changed",
     {"a": "present", "b": "differs", "c": "present"}),
    ({"a": b"1", "b": None}, "missing", {"a": "present", "b": "absent"}),
    ({"a": b"1", "b": b"2"}, "changed", {"a": "differs", "b": "differs"}),
    ({"a": b"1", "b": b"2", "c": None}, "missing",
     {"a": "differs", "b": "differs", "c": "absent"}),
])
def test_a_difference_is_named_by_who_holds_what(digests, kind, marks) -> None:
    assert Difference("t", "(k)", {"k": "k"}, digests).kind_and_campuses() == (kind, marks)


def test_only_keys_that_disagree_are_differences() -> None:
    rows = {"a": {"(1)": (b"h", '{"k": 1}'), "(2)": (b"h", '{"k": 2}')},
            "b": {"(1)": (b"h", '{"k": 1}'), "(2)": (b"x", '{"k": 2}'), "(3)": (b"h", '{"k": 3}')}}
    found = differences_of("t", rows)
    assert sorted(found) == ["(2)", "(3)"] and found["(3)"].key == {"k": 3}
    assert found["(3)"].digests == {"a": None, "b": b"h"}


def test_a_campus_has_reached_a_vector_by_what_it_applied_and_its_own_journal() -> None:
    target = {"a": 5, "b": 3}
    assert vector_reached({"b": 3}, {"a": 5}, "a", target)
    assert not vector_reached({"b": 2}, {"a": 5}, "a", target)
    assert not vector_reached({"a": 4, "b": 3}, {"b": 3}, "b", target)


def test_rows_too_many_for_one_answer_are_asked_again_in_halves() -> None:
    import asyncio

    import grpc
    from grpc.aio import AioRpcError, Metadata

    from ringsync.v1 import control_pb2 as cpb
    from ringsync.verification import Verification

    asked: list[list[int]] = []

    class Cluster:
        ring = ("a", "b")

    class Client:
        cluster = Cluster()

        async def verify(self, campus, table, bits, buckets=None, incremental=False):
            asked.append(list(buckets))
            if len(buckets) > 2:  # a node refusing an answer past its message size
                raise AioRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, Metadata(), Metadata(),
                                  "ask for fewer")
            return cpb.VerifyResponse(rows=[cpb.RowDigest(key=f"({b})", bucket=b,
                                                          digest=b"h", key_json="{}")
                                            for b in buckets])

    check = Verification(Client(), ["t"])  # type: ignore[arg-type]
    got = asyncio.run(check._rows("t", 3, [0, 1, 2, 3, 4], 5))
    assert set(got) == {"a", "b"} and not check.errors
    assert sorted(got["a"]) == [f"({b})" for b in range(5)]
    answered = [b for part in asked if len(part) <= 2 for b in part]
    assert sorted(answered) == sorted(list(range(5)) * 2)  # each bucket once per campus


def test_a_long_scan_says_how_long_so_far_and_how_long_is_left(monkeypatch) -> None:
    import asyncio

    import ringsync.verification as verification
    from ringsync.client import NodeReply
    from ringsync.v1 import control_pb2 as cpb

    monkeypatch.setattr(verification, "TICK_SECONDS", 0.01)

    class Cluster:
        ring = ("a",)

    class Client:
        cluster = Cluster()

        async def status_all(self):
            return [NodeReply("a", "addr", cpb.NodeStatus(campus="a", row_counts={"t": 500}),
                              None)]

        async def verify(self, campus, table, bits, buckets=None, incremental=False):
            await asyncio.sleep(0.1)
            return cpb.VerifyResponse(buckets=[cpb.BucketDigest(bucket=0, rows=500,
                                                                digest=bytes(32))])

    lines: list[str] = []
    check = verification.Verification(Client(), ["t"], progress=lines.append)  # type: ignore
    check.rate = 1000.0  # as if an earlier table had been hashed at that rate
    report = asyncio.run(check.run())
    assert report["consistent"] and report["tables"]["t"]["a"]["rows"] == 500
    ticks = [line for line in lines if "so far" in line]
    assert ticks and "hashing about 500 rows a campus" in ticks[0] and "left" in ticks[0]
