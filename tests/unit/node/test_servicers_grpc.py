"""node.servicers over real gRPC: an in-process grpc.aio server on a free port
with mutual TLS (certificates from ringsync.pki) and node.auth's interceptor,
serving campus "a" on a real SQLite database and journal. Each RPC's argument
checks, the status codes its refusals carry, and who may call it."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from node.audit import AuditTrail
from node.auth import AuthInterceptor
from node.conflicts.deadletter import dead_letter_entry
from node.conflicts.driver import ConflictRecord, Resolver, TxnInfo
from node.dr.agent import DRAgent
from node.engines.sqlite.engine import SQLiteEngine
from node.model import Change, Op
from node.replication.journal import Journal
from node.runtime import NodeRuntime
from node.servicers import ControlServicer, ReplicationServicer, add_replication_service
from node.status import StatusCache
from ringsync import pki
from ringsync.audit import read_entries, verify_trail
from ringsync.client import Credentials
from ringsync.commands.demo.lis import create_sqlite_database
from ringsync.config import TLSFiles, load_node
from ringsync.v1 import control_pb2 as cpb
from ringsync.v1 import control_pb2_grpc
from tests.unit.configs import cluster_toml, node_toml

TABLES = ("patients", "lab_orders", "specimens", "lab_results")
PATIENT = ("p1", "m-p1", "Ada", None, "F", "b", "2026-01-01T00:00:00Z")
# Leaves (node.leaf): "sat" hangs from this campus and takes patients; "far" from b.
LEAVES = """
[[leaf]]
name = "sat"
address = "127.0.0.1:7101"
parents = ["a"]
tables = ["patients"]
[leaf.filter]
patients = 'home_campus == "fy"'

[[leaf]]
name = "far"
address = "127.0.0.1:7102"
parents = ["b"]

# Scoped identities (ringsync.scopes): an orthopaedics viewer and operator see
# lab orders only; a viewer of campus b only.
[[scope]]
identity = "viewer/ortho"
tables = ["lab_orders"]

[[scope]]
identity = "operator/ortho"
tables = ["lab_orders"]

[[scope]]
identity = "viewer/at-b"
campuses = ["b"]
"""
CLUSTER = cluster_toml(("a", "b"), LEAVES)
NODE = node_toml("a", pki="pki/")


@dataclass
class Campus:
    rt: NodeRuntime
    address: str
    pki_dir: Path
    db: Path

    def client(self, role: str, name: str) -> grpc.aio.Channel:
        if role == "node" and name == "a":
            cert, key = self.pki_dir / "a.crt", self.pki_dir / "a.key"
        elif (self.pki_dir / f"{role}-{name}.crt").exists():  # issued by an earlier call
            cert, key = self.pki_dir / f"{role}-{name}.crt", self.pki_dir / f"{role}-{name}.key"
        else:
            cert, key = pki.issue(self.pki_dir, role, name, out_stem=f"{role}-{name}")
        return Credentials(TLSFiles(self.pki_dir / "ca.crt", cert, key)).channel(
            self.address, "a")


@pytest.fixture
async def campus(tmp_path: Path) -> AsyncIterator[Campus]:
    pki_dir = tmp_path / "pki"
    pki.create_ca(pki_dir)
    pki.issue(pki_dir, "node", "a", hosts=("127.0.0.1",))
    (tmp_path / "cluster.toml").write_text(CLUSTER)
    (tmp_path / "node.toml").write_text(NODE)
    create_sqlite_database(tmp_path / "a.db")
    config = load_node(tmp_path / "node.toml")
    engine = SQLiteEngine(tmp_path / "a.db", TABLES, "a")
    engine.open()
    journal = Journal(tmp_path / "journal.db", "a")
    journal.open()
    rt = NodeRuntime(config, engine, journal)
    rt.resolver = Resolver(engine.shapes(), config.cluster.conflicts, rt.clock)
    creds = Credentials(config.tls)
    rt.audit = AuditTrail(tmp_path, "a", creds)
    rt.audit.open()
    server = grpc.aio.server(interceptors=[AuthInterceptor(
        config.cluster.origins, scopes=config.cluster.scopes, campus="a")])
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials(
        [(creds.key, creds.cert)], root_certificates=creds.ca, require_client_auth=True))
    add_replication_service(ReplicationServicer(rt), server)
    control_pb2_grpc.add_ControlServicer_to_server(
        ControlServicer(rt, StatusCache(), DRAgent(rt, lambda: True)), server)
    await server.start()
    try:
        yield Campus(rt, f"127.0.0.1:{port}", pki_dir, tmp_path / "a.db")
    finally:
        await server.stop(None)
        rt.shutdown_threads()
        journal.close()
        engine.close()


async def refusal(call: object) -> grpc.aio.AioRpcError:
    """The error a call ends with (it must end with one)."""
    with pytest.raises(grpc.aio.AioRpcError) as e:
        if hasattr(call, "__aiter__"):
            async for _ in call:  # type: ignore[attr-defined]
                pass
        else:
            await call  # type: ignore[misc]
    return e.value


def control(channel: grpc.aio.Channel) -> control_pb2_grpc.ControlStub:
    return control_pb2_grpc.ControlStub(channel)


def log_conflict(db: Path, state: str) -> None:
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(
            "INSERT INTO _rs_conflicts(at, tbl, key, kind, rule, winner, local_origin, "
            "local_hlc, remote_origin, remote_seq, remote_hlc, remote_row, skew_ms, state) "
            "VALUES (12.5, 'patients', '[\"p1\"]', 'update_update', 'latest', 'remote', 'a', "
            "7, 'b', 3, 9, '{\"name\":\"Ada\"}', 0, ?)", (state,))
    conn.close()


def park_patient(rt: NodeRuntime) -> None:
    shapes = dict(rt.engine.shapes())
    key = ConflictRecord.key_json_of(shapes["patients"].key_of(PATIENT))
    with rt.engine.target.apply_session() as store:
        store.park([dead_letter_entry(TxnInfo("b", 5, 0, {}, False),
                                      Change("patients", Op.INSERT, new=PATIENT), shapes,
                                      "IntegrityError: no", key)])


# -- reading -------------------------------------------------------------------


@pytest.mark.parametrize("role,name", [("viewer", "bob"), ("operator", "alice"), ("node", "b")])
async def test_every_role_reads_status(campus: Campus, role: str, name: str) -> None:
    async with campus.client(role, name) as ch:
        s = await control(ch).GetStatus(cpb.StatusRequest(), timeout=10)
        routes = await control(ch).GetRoutes(cpb.RoutesRequest(), timeout=10)
    assert s.campus == "a" and s.engine == "sqlite"
    assert routes.node == "a" and not routes.dr_enabled


async def test_checksum_of_every_table_or_the_ones_named(campus: Campus) -> None:
    async with campus.client("viewer", "bob") as ch:
        every = await control(ch).Checksum(cpb.ChecksumRequest(), timeout=10)
        one = await control(ch).Checksum(cpb.ChecksumRequest(tables=["patients"]), timeout=10)
    assert every.campus == "a" and [t.table for t in every.tables] == list(TABLES)
    assert [(t.table, t.rows) for t in one.tables] == [("patients", 0)]


async def test_checksum_of_a_table_not_replicated_is_an_invalid_argument(
    campus: Campus,
) -> None:
    async with campus.client("viewer", "bob") as ch:
        e = await refusal(control(ch).Checksum(
            cpb.ChecksumRequest(tables=["patients", "nope"]), timeout=10))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.details() == "tables ['nope'] are not replicated"


async def test_conflicts_are_listed_as_logged(campus: Campus) -> None:
    log_conflict(campus.db, "logged")
    async with campus.client("viewer", "bob") as ch:
        reply = await control(ch).ListConflicts(cpb.ConflictsRequest(), timeout=10)
        none = await control(ch).ListConflicts(cpb.ConflictsRequest(table="lab_orders"),
                                                timeout=10)
    assert reply.campus == "a" and none.conflicts == []
    assert reply.conflicts == [cpb.ConflictEntry(
        id=1, at=12.5, table="patients", key='["p1"]', kind="update_update", rule="latest",
        winner="remote", local_origin="a", local_hlc=7, remote_origin="b", remote_seq=3,
        remote_hlc=9, local_row="", remote_row='{"name":"Ada"}', skew_ms=0, state="logged",
        resolution="")]


async def test_conflicts_of_a_table_not_replicated_is_an_invalid_argument(
    campus: Campus,
) -> None:
    async with campus.client("viewer", "bob") as ch:
        e = await refusal(control(ch).ListConflicts(cpb.ConflictsRequest(table="nope"),
                                                    timeout=10))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.details() == "table 'nope' is not replicated"


async def test_dead_letters_are_listed_with_the_row(campus: Campus) -> None:
    park_patient(campus.rt)
    async with campus.client("viewer", "bob") as ch:
        reply = await control(ch).ListDeadLetters(cpb.DeadLettersRequest(), timeout=10)
    [d] = reply.entries
    assert (d.id, d.origin, d.seq, d.table, d.key, d.op, d.error, d.attempts, d.state) == (
        1, "b", 5, "patients", '["p1"]', "I", "IntegrityError: no", 1, "parked")
    assert json.loads(d.row)["name"] == "Ada"
    assert [a["action"] for a in json.loads(d.actions)] == ["parked"]


# -- operator actions ------------------------------------------------------------


@pytest.mark.parametrize("role,name", [("viewer", "bob"), ("node", "b")])
async def test_only_operators_resolve_conflicts_or_act_on_dead_letters(
    campus: Campus, role: str, name: str,
) -> None:
    async with campus.client(role, name) as ch:
        resolve = await refusal(control(ch).ResolveConflict(
            cpb.ResolveConflictRequest(id=1, take="local"), timeout=10))
        act = await refusal(control(ch).ActOnDeadLetter(
            cpb.DeadLetterAction(id=1, action="skip"), timeout=10))
    for e, method in ((resolve, "ResolveConflict"), (act, "ActOnDeadLetter")):
        assert e.code() == grpc.StatusCode.PERMISSION_DENIED
        assert e.details() == (f"{role}/{name} may not call /ringsync.v1.Control/{method}; "
                               f"it needs a certificate with role operator")


async def test_resolving_what_is_not_a_parked_conflict_is_a_failed_precondition(
    campus: Campus,
) -> None:
    log_conflict(campus.db, "logged")
    async with campus.client("operator", "alice") as ch:
        missing = await refusal(control(ch).ResolveConflict(
            cpb.ResolveConflictRequest(id=99, take="local"), timeout=10))
        logged = await refusal(control(ch).ResolveConflict(
            cpb.ResolveConflictRequest(id=1, take="local"), timeout=10))
    assert missing.code() == logged.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert missing.details() == "no conflict 99 here (it may be past retention)"
    assert logged.details() == ("conflict 1 is logged, not parked: the latest policy decided "
                                "it; edit the row itself to change the outcome")


async def test_dead_letter_actions_are_checked_then_carried_out(campus: Campus) -> None:
    park_patient(campus.rt)
    async with campus.client("operator", "alice") as ch:
        stub = control(ch)
        bad = await refusal(stub.ActOnDeadLetter(cpb.DeadLetterAction(id=1, action="drop"),
                                                 timeout=10))
        missing = await refusal(stub.ActOnDeadLetter(
            cpb.DeadLetterAction(id=7, action="retry"), timeout=10))
        done = await stub.ActOnDeadLetter(cpb.DeadLetterAction(id=1, action="retry"),
                                          timeout=10)
        again = await refusal(stub.ActOnDeadLetter(cpb.DeadLetterAction(id=1, action="skip"),
                                                   timeout=10))
    assert bad.code() == missing.code() == again.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert bad.details() == "action 'drop': use retry or skip"
    assert missing.details() == "no dead letter 7 here"
    assert again.details() == "dead letter 1 is applied, not parked"
    assert done.campus == "a" and json.loads(done.outcome) == [{"id": 1, "state": "applied"}]
    assert done.outcome == '[{"id": 1, "state": "applied"}]'


# -- replication -------------------------------------------------------------------


def raw_replicate(ch: grpc.aio.Channel) -> grpc.aio.StreamStreamCall:
    return ch.stream_stream("/ringsync.v1.Replication/Replicate")(timeout=10)


async def test_an_undecodable_message_is_an_invalid_argument_and_is_booked(
    campus: Campus,
) -> None:
    async with campus.client("node", "b") as ch:
        call = raw_replicate(ch)
        await call.write(b"\xff\xff garbage")
        e = await refusal(call.read())
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "undecodable" in e.details()
    assert campus.rt.refused.total == 1


async def test_an_undecodable_snapshot_request_is_an_invalid_argument(campus: Campus) -> None:
    async with campus.client("node", "b") as ch:
        call = ch.unary_stream("/ringsync.v1.Replication/Snapshot")(b"\xff\xff", timeout=10)
        e = await refusal(call)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.details() == "a SnapshotRequest of 2 bytes is undecodable"


@pytest.mark.parametrize("role,name,reason", [
    ("operator", "alice", "operator/alice may not call /ringsync.v1.Replication/Snapshot; "
                          "it needs a certificate with role node"),
    ("node", "rogue", "campus 'rogue' is not in this cluster's ring nor one of its leaves"),
])
async def test_only_ring_nodes_may_replicate(campus: Campus, role: str, name: str,
                                            reason: str) -> None:
    """Asked with Snapshot: a refused Replicate can race the client's first write."""
    async with campus.client(role, name) as ch:
        e = await refusal(ch.unary_stream("/ringsync.v1.Replication/Snapshot")(
            b"", timeout=10))
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED and e.details() == reason


# -- scoped identities ([[scope]]) -------------------------------------------------


async def test_a_viewer_scoped_to_one_table_sees_no_row_of_another_in_any_rpc(
        campus: Campus) -> None:
    log_conflict(campus.db, "parked")  # a conflict and a dead letter of patients
    park_patient(campus.rt)
    async with campus.client("viewer", "ortho") as ch:
        stub = control(ch)
        conflicts = await stub.ListConflicts(cpb.ConflictsRequest(), timeout=10)
        letters = await stub.ListDeadLetters(cpb.DeadLettersRequest(), timeout=10)
        status = await stub.GetStatus(cpb.StatusRequest(), timeout=10)
        sums = await stub.Checksum(cpb.ChecksumRequest(), timeout=10)
        denied = [await refusal(call) for call in (
            stub.ListConflicts(cpb.ConflictsRequest(table="patients"), timeout=10),
            stub.ListDeadLetters(cpb.DeadLettersRequest(table="patients"), timeout=10),
            stub.Checksum(cpb.ChecksumRequest(tables=["patients"]), timeout=10),
            stub.Verify(cpb.VerifyRequest(table="patients", bits=4), timeout=10))]
    assert conflicts.conflicts == [] and letters.entries == []
    assert set(status.row_counts) <= {"lab_orders"}
    assert [t.table for t in sums.tables] == ["lab_orders"]
    assert {e.code() for e in denied} == {grpc.StatusCode.PERMISSION_DENIED}
    assert all("viewer/ortho is scoped to tables lab_orders" in e.details() for e in denied)
    async with campus.client("viewer", "bob") as ch:  # unscoped: everything, as before
        every = await control(ch).ListConflicts(cpb.ConflictsRequest(), timeout=10)
    assert [c.table for c in every.conflicts] == ["patients"]


async def test_a_scoped_operator_acts_only_in_its_tables(campus: Campus) -> None:
    log_conflict(campus.db, "parked")
    park_patient(campus.rt)
    async with campus.client("operator", "ortho") as ch:
        resolve = await refusal(control(ch).ResolveConflict(
            cpb.ResolveConflictRequest(id=1, take="local"), timeout=10))
        act = await refusal(control(ch).ActOnDeadLetter(
            cpb.DeadLetterAction(id=1, action="skip"), timeout=10))
        repair = await refusal(control(ch).RepairRow(
            cpb.RepairRequest(table="patients", key='{"patient_id": "p1"}', action="inspect"),
            timeout=10))
    assert {e.code() for e in (resolve, act, repair)} == {grpc.StatusCode.PERMISSION_DENIED}
    async with campus.client("viewer", "bob") as ch:  # nothing was changed
        [entry] = (await control(ch).ListDeadLetters(cpb.DeadLettersRequest(),
                                                     timeout=10)).entries
    assert entry.state == "parked"
    # Every denial is in the campus's audit trail, which still verifies.
    trail = campus.rt.audit.directory
    assert verify_trail(trail, (campus.pki_dir / "ca.crt").read_bytes()).ok
    assert [(e["action"], e["who"], e["rpc"], e["table"]) for e in read_entries(trail)] == [
        ("denied", "operator/ortho", rpc, "patients")
        for rpc in ("ResolveConflict", "ActOnDeadLetter", "RepairRow")]


async def test_an_identity_scoped_to_another_campus_is_refused_here(campus: Campus) -> None:
    async with campus.client("viewer", "at-b") as ch:
        e = await refusal(control(ch).GetStatus(cpb.StatusRequest(), timeout=10))
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED
    assert e.details() == "viewer/at-b is scoped to campuses b; a is not one of them"
