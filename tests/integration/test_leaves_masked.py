"""A masked leaf: a test environment that never receives a real identifier.

A ring of two SQLite campuses holds a patient registry of 10,000 generated
patients (Chinese names, mobile numbers, 18-digit resident identity numbers,
addresses, free-text notes) and their visits. Two masked leaves of one
environment (one key) copy it, half by initial load and half as it is
written. Then every value in each leaf's database and every frame its
journal received (what crossed the link) is searched for the real
identifiers: none may survive. Pseudonyms must still join visits to
patients, line up between the two loads, and dates must move together per
patient. The parent refuses the masked leaf's writes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import sqlite3
from pathlib import Path

import grpc
import pytest

from node.codec import decode_changes
from node.replication import PROTOCOL_VERSION
from ringsync.client import Credentials
from ringsync.commands.demo.cluster import Schema
from ringsync.commands.demo.lis import create_sqlite_database
from ringsync.config import load_node
from ringsync.masking import id_check_digit, valid_resident_id
from ringsync.v1 import control_pb2, control_pb2_grpc, replication_pb2_grpc
from ringsync.v1 import replication_pb2 as rpb
from ringsync.v1 import values_pb2 as pb
from tests.helpers import wait_until
from tests.integration.conftest import ctl, wait_ready

REGISTRY_SQL = """
CREATE TABLE patients(patient_id TEXT PRIMARY KEY, name TEXT NOT NULL, mobile TEXT,
    resident_id TEXT, address TEXT, birth_date TEXT, note TEXT);
CREATE TABLE visits(visit_id TEXT PRIMARY KEY, patient_id TEXT NOT NULL, visited_on TEXT,
    department TEXT);
"""
COLUMNS = {"patients": ("patient_id", "name", "mobile", "resident_id", "address", "birth_date",
                         "note"),
           "visits": ("visit_id", "patient_id", "visited_on", "department")}
REGISTRY = Schema(("patients", "visits"), lambda dsn: None,
                  lambda path: create_sqlite_database(path, REGISTRY_SQL))
MASKING = {
    "patients": {"patient_id": "pseudonym", "name": "name", "mobile": "mobile",
                 "resident_id": {"kind": "resident_id", "patient": "patient_id"},
                 "address": "address", "note": "redact",
                 "birth_date": {"kind": "date_shift", "patient": "patient_id"}},
    "visits": {"patient_id": "pseudonym",
               "visited_on": {"kind": "date_shift", "patient": "patient_id"}},
}
PATIENTS = 10_000
SURNAMES, GIVEN = "王李张刘陈杨赵黄周吴徐孙胡朱高林", "伟芳娜敏静丽强磊军洋勇艳杰娟涛明"


def generated(seed: int, first: int, count: int) -> tuple[list[tuple], list[tuple]]:
    """Patients and one visit each, every identifier unique."""
    rng = random.Random(seed)
    patients, visits = [], []
    for i in range(first, first + count):
        birth = dt.date(1940, 1, 1) + dt.timedelta(days=rng.randrange(30_000))
        body = f"3401{rng.randrange(10, 99)}{birth:%Y%m%d}{i:03d}"[:17]
        body = body[:14] + f"{i % 1000:03d}"
        # Four characters: a masked name has two or three, so none equals a real one by chance.
        name = rng.choice(SURNAMES) + rng.choice(GIVEN) + chr(0x4E00 + i % 20000) + "华"
        patients.append((f"PT{i:06d}", name, f"139{i:08d}", body + id_check_digit(body),
                         f"合肥市长江路{i}号", birth.isoformat(), f"主诉 {name} 电话 139{i:08d}"))
        visits.append((f"V{i:06d}", f"PT{i:06d}", (birth + dt.timedelta(days=20_000 + i % 300))
                       .isoformat(), "心内科"))
    return patients, visits


def insert(db: Path, patients: list[tuple], visits: list[tuple]) -> None:
    conn = sqlite3.connect(db, isolation_level=None, timeout=30)
    try:
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO patients VALUES (?, ?, ?, ?, ?, ?, ?)", patients)
        conn.executemany("INSERT INTO visits VALUES (?, ?, ?, ?)", visits)
        conn.execute("COMMIT")
    finally:
        conn.close()


def all_text(db: Path) -> set[str]:
    """Every value of every table in a SQLite file, ringsync's own tables included."""
    conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
    try:
        out: set[str] = set()
        for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                out.update(v.decode(errors="replace") if isinstance(v, bytes) else str(v)
                           for v in row if v is not None)
        return out
    finally:
        conn.close()


def rows(db: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_no_real_identifier_reaches_a_masked_leaf_and_pseudonyms_line_up(make_cluster, tmp_path):
    key = tmp_path / "test-env.key"
    key.write_text("a-test-environment-secret-of-32-bytes\n")
    # test-a and test-b run as nodes; test-wire is played by this test, to read the link.
    leaves = [{"name": name, "parents": ["chaohui"], "uploads": False,
               "masking_key_file": str(key), "masking": MASKING}
              for name in ("test-a", "test-b", "test-wire")]
    cluster = make_cluster(2, leaves=leaves, schema=REGISTRY, conflict_policies="")
    ring_db = cluster.campuses[0].database
    before = generated(1, 0, PATIENTS // 2)
    insert(ring_db, *before)  # copied by initial load
    for name in ("chaohui", "wangjiangshan", "test-a", "test-b"):
        cluster.start(name)
    wait_ready(cluster)
    leaf_dbs = [cluster.campus(n).database for n in ("test-a", "test-b")]
    for db in leaf_dbs:
        wait_until(lambda db=db: rows(db, "SELECT count(*) FROM patients") == [(PATIENTS // 2,)],
                   120, "a masked leaf to copy the registry")
    after = generated(2, PATIENTS // 2, PATIENTS // 2)
    tap = load_node(cluster.campus("test-wire").config)
    frames = asyncio.run(_wire(tap, lambda: insert(ring_db, *after), PATIENTS // 2 * 2))
    patients = before[0] + after[0]
    for db in leaf_dbs:
        wait_until(lambda db=db: rows(db, "SELECT count(*) FROM visits") == [(PATIENTS,)]
                   and rows(db, "SELECT count(*) FROM patients") == [(PATIENTS,)], 120,
                   "a masked leaf to hold every patient and visit")

    identifiers = {v for p in patients for v in (p[0], p[1], p[2], p[3], p[4])}
    notes = {p[6] for p in patients}
    for db in leaf_dbs:
        held = all_text(db)
        assert not held & identifiers, sorted(held & identifiers)[:5]
        assert not held & notes
    on_wire = set()
    for body in frames:
        _, changes = decode_changes(pb.TxnFrame.FromString(body))
        on_wire.update(str(v) for c in changes for row in (c.new, c.old) if row
                       for v in row if v is not None)
    assert on_wire and not on_wire & (identifiers | notes), sorted(on_wire & identifiers)[:5]
    blob = b"".join(frames)
    for p in after[0][::97]:  # nor as bytes anywhere in a frame
        assert p[0].encode() not in blob and p[3].encode() not in blob
        assert p[1].encode() not in blob and p[2].encode() not in blob

    # Masked, but still a registry: formats kept, joins kept, dates moved together.
    masked = rows(leaf_dbs[0], "SELECT * FROM patients ORDER BY patient_id")
    assert masked == rows(leaf_dbs[1], "SELECT * FROM patients ORDER BY patient_id")
    assert all(valid_resident_id(r[3]) and len(r[2]) == 11 and r[6] is None for r in masked)
    joined = rows(leaf_dbs[0], "SELECT count(*) FROM visits JOIN patients USING (patient_id)")
    assert joined == [(PATIENTS,)]
    real_gaps = [(dt.date.fromisoformat(v[2]) - dt.date.fromisoformat(p[5])).days
                 for v, p in zip(before[1] + after[1], patients, strict=True)]
    gaps = rows(leaf_dbs[0], "SELECT julianday(v.visited_on) - julianday(p.birth_date) "
                             "FROM visits v JOIN patients p USING (patient_id)")
    assert sorted(round(g) for (g,) in gaps) == sorted(real_gaps)

    # ctl verify compares each masked leaf with its parent's masked view of its route.
    report = json.loads(ctl(cluster, "verify", "--json").stdout)["leaves"]
    assert report["test-a"]["consistent"] and report["test-b"]["consistent"]
    assert report["test-a"]["tables"]["patients"] == {
        "leaf_rows": PATIENTS, "parent_rows": PATIENTS, "held_back": False}
    assert report["test-wire"]["error"]  # played by this test, not running: reported

    # A masked leaf never sends writes up: its parent refuses them.
    config = load_node(cluster.campus("test-a").config)
    assert asyncio.run(_upload_refusal(config)) == grpc.StatusCode.PERMISSION_DENIED


async def _wire(tap, write, rows_expected: int) -> list[bytes]:
    """Follow the parent as the leaf ``tap`` from the parent's present journal,
    run ``write``, and return every frame the parent sent until the rows of
    ``rows_expected`` changes have crossed the link."""
    creds = Credentials(tap.tls)
    channel = creds.channel(tap.peer_address("chaohui"),
                            "chaohui", [("grpc.max_receive_message_length", 64 << 20)])
    try:
        status = await control_pb2_grpc.ControlStub(channel).GetStatus(
            control_pb2.StatusRequest(), timeout=10)
        journal = dict(status.journal.seqs)
        call = replication_pb2_grpc.ReplicationStub(channel).Follow()
        await call.write(rpb.FollowRequest(hello=rpb.FollowHello(
            campus=tap.campus, cluster=tap.cluster.name, protocol_version=PROTOCOL_VERSION,
            tables=[pb.TableShape(name=t, columns=c, key_indexes=[0],
                                  column_kinds=["text"] * len(c)) for t, c in COLUMNS.items()],
            journal=rpb.Vector(seqs=journal), route=tap.leaf.fingerprint)))
        welcome = await asyncio.wait_for(call.read(), 10)
        assert welcome.WhichOneof("msg") == "welcome"
        await asyncio.to_thread(write)
        frames: list[bytes] = []
        seen = 0
        while seen < rows_expected:
            msg = await asyncio.wait_for(call.read(), 60)
            frames += msg.batch.frames
            seen += sum(len(pb.TxnFrame.FromString(f).changes) for f in msg.batch.frames)
            journal = {**journal, **{f.origin: f.seq for f in map(pb.TxnFrame.FromString,
                                                                  msg.batch.frames) if f.final}}
            await call.write(rpb.FollowRequest(ack=rpb.Ack(
                batch_id=msg.batch.batch_id, journal=rpb.Vector(seqs=journal))))
        call.cancel()
        return frames
    finally:
        await channel.close()


async def _upload_refusal(config) -> grpc.StatusCode:
    creds = Credentials(config.tls)
    channel = creds.channel(config.peer_address("chaohui"), "chaohui", [])
    try:
        call = replication_pb2_grpc.ReplicationStub(channel).Replicate()
        await call.write(rpb.ReplicateRequest(hello=rpb.Hello(
            campus=config.campus, cluster=config.cluster.name,
            protocol_version=PROTOCOL_VERSION)))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call.read()
        assert "sends no writes up" in (refused.value.details() or "")
        return refused.value.code()
    finally:
        await channel.close()
