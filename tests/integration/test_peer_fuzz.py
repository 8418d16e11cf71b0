"""A hostile peer with a real ring member's certificate against a real three-campus ring.

The fuzzer sends random, truncated and bit-flipped messages, frames with
out-of-range and non-finite values, frames of origins outside the ring,
forged next sequences of a campus's own origin and duplicates with other
content, while the campuses keep writing. Afterwards every campus still
applies (new writes converge), no forged row is anywhere, the rows are
identical, the books balance and status counts the refusals.

A short seeded run is part of the suite; RINGSYNC_LONG_TESTS=1 runs a long one.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from node.codec import build_frame
from node.model import Change, Op, TableShape
from node.replication import PROTOCOL_VERSION
from ringsync.client import Credentials
from ringsync.commands.demo.cluster import LocalCluster, Schema
from ringsync.commands.demo.lis import (
    SQLITE_SCHEMA,
    TABLES,
    create_postgres_schema,
    create_sqlite_database,
)
from ringsync.config import TLSFiles
from ringsync.v1 import replication_pb2 as rpb
from ringsync.v1 import values_pb2 as pb
from tests.helpers import table_rows, wait_until
from tests.integration.conftest import ctl, wait_ready

LONG = os.environ.get("RINGSYNC_LONG_TESTS") == "1"
METHOD = "/ringsync.v1.Replication/Replicate"

# A table of every typed kind next to the laboratory's tables, so range
# checks meet the columns they protect.
SAMPLES_SQL = """
CREATE TABLE IF NOT EXISTS samples(
    sample_id TEXT PRIMARY KEY, taken_at TIMESTAMP, due DATE, amount DECIMAL_TEXT,
    token UUID, doc JSON, level REAL, count INTEGER, ok BOOLEAN, raw BLOB
);
"""
SAMPLES = TableShape("samples", ("sample_id", "taken_at", "due", "amount", "token", "doc",
                                 "level", "count", "ok", "raw"), (0,))
PATIENTS = TableShape("patients", ("patient_id", "mrn", "name", "birth_date", "sex",
                                   "home_campus", "created_at"), (0,))
SHAPES = {"samples": SAMPLES, "patients": PATIENTS}
FUZZ_SCHEMA = Schema((*TABLES, "samples"), create_postgres_schema,
                     lambda path: create_sqlite_database(path, SQLITE_SCHEMA + SAMPLES_SQL))
ALL_TABLES = (*TABLES, "samples")
FORGED = "FORGED"  # every row the fuzzer invents has a key starting so
LOG_MARKER = "2026-01-01 00:00:00,000 INFO node: FORGED-LOG-LINE"


@pytest.fixture
def fuzz_ring(tmp_path: Path) -> Iterator[LocalCluster]:
    cluster = LocalCluster.create(tmp_path / "ring", 3, schema=FUZZ_SCHEMA, replication={
        "heal_after_seconds": 2.0, "probe_interval_seconds": 0.5})
    try:
        cluster.start_all()
        wait_ready(cluster)
        yield cluster
    finally:
        cluster.stop_all()
        cluster.stop_databases()


def creds(cluster: LocalCluster, campus: str) -> Credentials:
    d = cluster.pki_dir
    return Credentials(TLSFiles(d / "ca.crt", d / f"{campus}.crt", d / f"{campus}.key"))


def write_rows(db: Path, tag: str, n: int = 1) -> None:
    """Ordinary application writes: a patient and a sample of every kind."""
    conn = sqlite3.connect(db, timeout=30)
    try:
        for i in range(n):
            key = f"{tag}-{i}-{uuid.uuid4().hex[:8]}"
            conn.execute("INSERT INTO patients VALUES (?, 'MRN1', 'Li Wei', NULL, 'F', ?, "
                         "'2026-01-01T00:00:00.000000Z')", (key, tag))
            conn.execute("INSERT INTO samples VALUES (?, '2026-03-04T05:06:07.123456+00:00', "
                         "'2026-03-04', '12.50', ?, '{\"a\":1}', 4.5, 7, 1, x'00ff')",
                         (key, str(uuid.uuid4())))
        conn.commit()
    finally:
        conn.close()


def forged_rows(db: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        found = []
        for table, key in (("patients", "patient_id"), ("samples", "sample_id")):
            found += [(table, k) for (k,) in conn.execute(
                f"SELECT {key} FROM {table} WHERE {key} LIKE '{FORGED}%'")]
        return found
    finally:
        conn.close()


def own_frames(cluster: LocalCluster, campus: str) -> list[bytes]:
    """Frames of ``campus``'s own origin still in its journal (to bit-flip)."""
    path = cluster.campus(campus).dir / "journal.db"
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return [b for (b,) in conn.execute(
            "SELECT body FROM frames WHERE origin = ? ORDER BY pos DESC LIMIT 50", (campus,))]
    finally:
        conn.close()


def sample_frame(origin: str, seq: int, key: str, **fields) -> pb.TxnFrame:
    """A well-formed frame inserting one sample and one patient."""
    import datetime as dt
    from decimal import Decimal

    from node.model import Json

    sample = (key, dt.datetime(2026, 1, 2, tzinfo=dt.UTC), dt.date(2026, 1, 2), Decimal("1.5"),
              uuid.uuid4(), Json('{"b":2}'), 1.25, 3, True, b"\x01")
    patient = (key, "MRN9", "Forged", None, "M", origin[:20], "2026-01-01T00:00:00.000000Z")
    f = build_frame(origin, seq, fields.pop("chunk", 0), fields.pop("final", True),
                    fields.pop("commit_time", 1_767_225_600.0),
                    [Change("samples", Op.INSERT, new=sample),
                     Change("patients", Op.INSERT, new=patient)], SHAPES,
                    hlc=fields.pop("hlc", 1 << 40), deps=fields.pop("deps", None))
    return f


def _set(column: str, fill: Callable[[pb.Value], None]) -> Callable[[pb.TxnFrame], None]:
    def mutate(f: pb.TxnFrame) -> None:
        value = f.changes[0].new_values[SAMPLES.columns.index(column)]
        value.Clear()
        fill(value)
    return mutate


def _extra_column(f: pb.TxnFrame) -> None:
    f.tables[1].columns.append("smuggled")
    f.changes[1].new_values.add(text_value="x")


def _missing_column(f: pb.TxnFrame) -> None:
    del f.tables[1].columns[-1]
    del f.changes[1].new_values[-1]


# Values and fields no campus can apply (each must be refused whole).
BAD_VALUES: list[tuple[str, Callable[[pb.TxnFrame], None]]] = [
    ("timestamp", _set("taken_at", lambda v: setattr(v, "timestamp_micros", 2**63 - 1))),
    ("timestamp-", _set("taken_at", lambda v: setattr(v, "timestamp_micros", -(2**63)))),
    ("date", _set("due", lambda v: setattr(v, "date_days", 2**31 - 1))),
    ("decimal", _set("amount", lambda v: setattr(v, "decimal_value", "12..5"))),
    ("decimal-nan", _set("amount", lambda v: setattr(v, "decimal_value", "sNaN"))),
    ("uuid", _set("token", lambda v: setattr(v, "uuid_value", b"\x07" * 15))),
    ("json", _set("doc", lambda v: setattr(v, "json_value", '{"a":'))),
    ("nan", _set("level", lambda v: setattr(v, "float_value", math.nan))),
    ("kind", _set("taken_at", lambda v: setattr(v, "text_value", "yesterday"))),
    ("null-key", _set("sample_id", lambda v: setattr(v, "is_null", True))),
    ("no-kind", _set("count", lambda v: None)),
    ("extra-column", _extra_column),
    ("missing-column", _missing_column),
    ("hlc", lambda f: setattr(f, "hlc", 2**64 - 1)),
    ("commit-nan", lambda f: setattr(f, "commit_time", math.nan)),
    ("commit-inf", lambda f: setattr(f, "commit_time", math.inf)),
    ("deps", lambda f: f.deps.update({"x": 2**64 - 1})),
]
UNKNOWN_ORIGINS = ["intruder", f"evil\n{LOG_MARKER}", "chaohui ", "\x1b[2Jscreen"]


class Fuzzer:
    """Streams to one target with one ring member's certificate, one hostile
    message per stream (a refusal ends the stream)."""

    def __init__(self, cluster: LocalCluster, attacker: str, target: str, rng: random.Random):
        self.cluster, self.attacker, self.target, self.rng = cluster, attacker, target, rng
        address = cluster.campus(target).address
        self.channel = creds(cluster, attacker).channel(address, target)
        self.outcomes: Counter[str] = Counter()

    def hello(self, tables: list[pb.TableShape] | None = None) -> bytes:
        return rpb.ReplicateRequest(hello=rpb.Hello(
            campus=self.attacker, cluster=self.cluster.name, protocol_version=PROTOCOL_VERSION,
            tables=tables or [])).SerializeToString()

    async def exchange(self, messages: list[bytes]) -> tuple[str, dict[str, int]]:
        """Send raw messages; return the outcome (a status code name, or
        "ack") and the journal vector the Welcome carried."""
        call = self.channel.stream_stream(
            METHOD, request_serializer=None,
            response_deserializer=rpb.ReplicateResponse.FromString)(timeout=15)
        vector: dict[str, int] = {}
        try:
            await call.write(messages[0])
            first = await call.read()
            if first is grpc.aio.EOF:
                return "eof", vector
            vector = dict(first.welcome.journal.seqs)
            for m in messages[1:]:
                await call.write(m)
                while True:
                    resp = await call.read()
                    if resp is grpc.aio.EOF:
                        return "eof", vector
                    if resp.ack.batch_id:
                        break
            return "ack", vector
        except grpc.aio.AioRpcError as e:
            assert "Traceback" not in (e.details() or ""), e.details()
            return e.code().name, vector
        finally:
            call.cancel()

    async def vector(self) -> dict[str, int]:
        _, vector = await self.exchange([self.hello()])
        return vector

    async def batch(self, frames: list[bytes]) -> str:
        batch = rpb.ReplicateRequest(batch=rpb.Batch(batch_id=1, frames=frames))
        outcome, _ = await self.exchange([self.hello(), batch.SerializeToString()])
        return outcome

    async def one(self) -> tuple[str, str, set[str]]:
        """One hostile message of a random kind: (kind, outcome, outcomes allowed)."""
        rng, target = self.rng, self.target
        refused = {"INVALID_ARGUMENT"}
        harmless = {"INVALID_ARGUMENT", "PERMISSION_DENIED", "ack"}
        others = [c.name for c in self.cluster.campuses if c.name != target]
        choice = rng.randrange(9)
        key = f"{FORGED}-{uuid.UUID(int=rng.getrandbits(128)).hex[:12]}"
        if choice == 0:  # random bytes as the first message
            data = rng.randbytes(rng.randrange(0, 300))
            outcome, _ = await self.exchange([data])
            return "random-first", outcome, harmless
        if choice == 1:  # random bytes as a batch
            outcome, _ = await self.exchange([self.hello(), rng.randbytes(rng.randrange(1, 300))])
            return "random-batch", outcome, harmless
        vector = await self.vector()
        if choice == 2:  # truncated: a frame of this campus's own origin, cut short
            f = sample_frame(target, vector.get(target, 0) + 1, key)
            data = rpb.ReplicateRequest(batch=rpb.Batch(
                batch_id=1, frames=[f.SerializeToString()])).SerializeToString()
            cut = data[:rng.randrange(1, len(data))]
            outcome, _ = await self.exchange([self.hello(), cut])
            return "truncated", outcome, harmless
        if choice == 3:  # bit-flipped frames of the target's own origin
            bodies = own_frames(self.cluster, target) or [
                sample_frame(target, 1, key).SerializeToString()]
            body = bytearray(rng.choice(bodies))
            for _ in range(rng.randrange(1, 4)):
                body[rng.randrange(len(body))] ^= 1 << rng.randrange(8)
            return "bitflip", await self.batch([bytes(body)]), harmless
        if choice == 4:  # a value or field nothing can store, as another origin's next txn
            origin = rng.choice(others)
            name, mutate = rng.choice(BAD_VALUES)
            f = sample_frame(origin, vector.get(origin, 0) + 1, key)
            mutate(f)
            return f"bad-{name}", await self.batch([f.SerializeToString()]), refused
        if choice == 5:  # an origin outside the ring
            origin = rng.choice(UNKNOWN_ORIGINS)
            f = sample_frame(origin, 1, key, final=rng.random() < 0.5)
            return "unknown-origin", await self.batch([f.SerializeToString()]), refused
        if choice == 6:  # the target's own next sequence, forged (complete or never finished)
            f = sample_frame(target, vector.get(target, 0) + 1, key, final=rng.random() < 0.5)
            return "own-next", await self.batch([f.SerializeToString()]), refused
        if choice == 7:  # a duplicate with other content (harmless if already pruned)
            origin = rng.choice(others)
            if not vector.get(origin):
                return "dup-none", "skipped", {"skipped"}
            f = sample_frame(origin, rng.randrange(1, vector[origin] + 1), key)
            return "forged-dup", await self.batch([f.SerializeToString()]), harmless
        # a Hello whose key index is beyond its columns
        bad = pb.TableShape(name="patients", columns=["patient_id"], key_indexes=[5])
        outcome, _ = await self.exchange([self.hello([bad])])
        return "hello-key", outcome, refused


def node_status(cluster: LocalCluster) -> dict[str, dict]:
    result = ctl(cluster, "status", "--json")
    return {n["campus"]: n for n in json.loads(result.stdout)["nodes"]}


def converge(cluster: LocalCluster, timeout: float = 60.0) -> None:
    def same() -> bool:
        rows = [table_rows(c.database, ALL_TABLES) for c in cluster.campuses]
        return all(r == rows[0] for r in rows[1:])

    wait_until(same, timeout, "every campus to hold identical rows", interval=0.5)


def run_fuzz(cluster: LocalCluster, messages: int, seed: int) -> Counter[tuple[str, str]]:
    names = [c.name for c in cluster.campuses]
    stop = threading.Event()

    def writer() -> None:  # the campuses keep working meanwhile
        i = 0
        while not stop.is_set():
            c = cluster.campuses[i % len(names)]
            write_rows(c.database, f"during-{c.name}")
            i += 1
            time.sleep(0.1)

    async def fuzz() -> Counter[tuple[str, str]]:
        rng = random.Random(seed)
        fuzzers = [Fuzzer(cluster, names[(i + 1) % len(names)], t, random.Random(rng.random()))
                   for i, t in enumerate(names)]
        seen: Counter[tuple[str, str]] = Counter()
        try:
            for n in range(messages):
                fz = fuzzers[n % len(fuzzers)]
                kind, outcome, allowed = await fz.one()
                assert outcome in allowed, f"message {n} ({kind}) to {fz.target}: {outcome}"
                seen[(kind, outcome)] += 1
        finally:
            for fz in fuzzers:
                await fz.channel.close()
        return seen

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        return asyncio.run(fuzz())
    finally:
        stop.set()
        thread.join()


def check_ring_after(cluster: LocalCluster, seen: Counter[tuple[str, str]]) -> None:
    names = [c.name for c in cluster.campuses]
    for c in cluster.campuses:  # every campus still applies what the others write
        write_rows(c.database, f"after-{c.name}", 3)
    converge(cluster)
    for c in cluster.campuses:
        assert forged_rows(c.database) == [], c.name
        wait_until(lambda c=c: forged_rows(c.database) == [], 1, "no forged rows")
    status = {}

    def books_balance() -> bool:
        nonlocal status
        status = node_status(cluster)
        return all(n["healthy"] and n["accounting"]["balanced"] for n in status.values())

    wait_until(books_balance, 30, "healthy campuses with balanced books")
    refused_kinds: Counter[str] = Counter()
    for name in names:
        refused = status[name]["refused"]
        assert refused["total"] > 0 and refused["last"], (name, refused)
        assert refused["total"] == sum(refused["by_kind"].values())
        refused_kinds.update(refused["by_kind"])
    for kind in ("bad_value", "unknown_origin", "own_origin"):
        assert refused_kinds[kind] > 0, (kind, refused_kinds, seen)
    for c in cluster.campuses:
        log = c.log.read_text()
        assert "Traceback" not in log and "DecodeError" not in log, c.name
        assert not any(line.startswith(LOG_MARKER) for line in log.splitlines()), c.name
        for kind in ("bad_value", "unknown_origin"):  # once per peer and kind
            assert log.count(f"refused {kind} from ") <= 2, (c.name, kind)
    text = ctl(cluster, "status").stdout
    assert "REFUSED from peers:" in text


def test_hostile_peer_cannot_stop_or_corrupt_the_ring(fuzz_ring: LocalCluster) -> None:
    for c in fuzz_ring.campuses:
        write_rows(c.database, f"before-{c.name}", 2)
    converge(fuzz_ring)
    seen = run_fuzz(fuzz_ring, 1500 if LONG else 120, seed=14)
    check_ring_after(fuzz_ring, seen)


def test_forged_next_sequence_of_a_real_origin_is_raised_as_an_alert(
    fuzz_ring: LocalCluster,
) -> None:
    """Without signatures a forged next transaction of campus C is taken by
    the campus it is sent to; C's real one then differs from it there: that
    is refused and raised as an alert, and C itself never takes the forgery."""
    a, b, c = (x.name for x in fuzz_ring.campuses)
    write_rows(fuzz_ring.campus(c).database, "seed", 1)
    converge(fuzz_ring)
    # With b stopped, a keeps the forged frame (b is not known to hold it).
    fuzz_ring.stop(b)

    async def forge() -> tuple[str, str]:
        to_a = Fuzzer(fuzz_ring, b, a, random.Random(1))
        to_c = Fuzzer(fuzz_ring, b, c, random.Random(2))
        try:
            head = (await to_a.vector())[c]
            taken = await to_a.batch([sample_frame(c, head + 1, f"{FORGED}-next")
                                      .SerializeToString()])
            own = await to_c.batch([sample_frame(c, head + 1, f"{FORGED}-own")
                                    .SerializeToString()])
            return taken, own
        finally:
            await to_a.channel.close()
            await to_c.channel.close()

    taken, own = asyncio.run(forge())
    assert taken == "ack"  # indistinguishable from c's own next transaction at a
    assert own == "INVALID_ARGUMENT"  # c never takes a forgery of its own origin
    write_rows(fuzz_ring.campus(c).database, "real", 1)  # c's real transaction head + 1

    def alerted() -> bool:
        st = node_status(fuzz_ring)[a]
        return any("forged or corrupted frame" in x for x in st.get("alerts", []))

    wait_until(alerted, 30, f"{a} to raise the forged-frame alert")
    st = node_status(fuzz_ring)
    assert st[a]["refused"]["by_kind"].get("forged_duplicate", 0) >= 1
    assert st[c]["refused"]["by_kind"].get("own_origin", 0) >= 1
    assert forged_rows(fuzz_ring.campus(c).database) == []
    assert "forged or corrupted frame" in ctl(fuzz_ring, "status").stdout or st[a]["alerts"]
    log = fuzz_ring.campus(a).log.read_text()
    assert "ALERT: forged or corrupted frame" in log
