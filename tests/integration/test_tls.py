"""Mutual TLS and roles, against a real node process.

Rejected: a plaintext client, a certificate from another CA, an expired
certificate, a certificate with the wrong role, a node of a campus outside
the ring, and a server that is not the campus the client dialled.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from node.replication import PROTOCOL_VERSION
from ringsync import pki
from ringsync.client import Credentials
from ringsync.commands.demo.cluster import LocalCluster
from ringsync.config import TLSFiles
from ringsync.revocation import revoke
from ringsync.v1 import control_pb2, control_pb2_grpc, replication_pb2, replication_pb2_grpc
from tests.helpers import table_rows, wait_until
from tests.integration.conftest import ctl
from tests.pki_helpers import intermediate_issued


def creds(pki_dir: Path, role: str, name: str, **kw) -> Credentials:
    cert, key = pki.issue(pki_dir, role, name, out_stem=f"t-{role}-{name}", **kw)
    return Credentials(TLSFiles(pki_dir / "ca.crt", cert, key))


async def status(channel: grpc.aio.Channel) -> control_pb2.NodeStatus:
    return await control_pb2_grpc.ControlStub(channel).GetStatus(
        control_pb2.StatusRequest(), timeout=5
    )


async def replicate_hello(channel: grpc.aio.Channel, campus: str | None) -> tuple[
        grpc.StatusCode, str]:
    """Open Replicate, say Hello as ``campus`` (None: say nothing), read the
    answer; return how the call ended.

    The access check refuses a call before its handler reads anything, so a
    Hello written meanwhile can race the refusal: grpc then fails the write
    locally and reports INTERNAL instead of the server's status. Tests of
    that check therefore send nothing and just read the refusal."""
    call = replication_pb2_grpc.ReplicationStub(channel).Replicate(timeout=5)
    try:
        if campus is not None:
            await call.write(replication_pb2.ReplicateRequest(hello=replication_pb2.Hello(
                campus=campus, cluster="demo", protocol_version=PROTOCOL_VERSION)))
        await call.read()
    except grpc.aio.AioRpcError:
        pass
    else:
        call.cancel()
    return await call.code(), await call.details() or ""


def target(cluster: LocalCluster) -> tuple[str, str]:
    c = cluster.campuses[0]
    return c.address, c.name


async def test_viewer_and_operator_read_status(running_pair: LocalCluster) -> None:
    address, campus = target(running_pair)
    for role in ("viewer", "operator"):
        async with creds(running_pair.pki_dir, role, "alice").channel(address, campus) as ch:
            s = await status(ch)
            assert s.campus == campus and s.engine == "sqlite"


@pytest.mark.parametrize("role,name,reason", [
    ("viewer", "eve", "role node"),               # wrong role
    ("node", "rogue", "not in this cluster"),     # right role, campus outside the ring
])
async def test_only_ring_nodes_may_replicate(
    running_pair: LocalCluster, role: str, name: str, reason: str
) -> None:
    address, campus = target(running_pair)
    async with creds(running_pair.pki_dir, role, name).channel(address, campus) as ch:
        code, details = await replicate_hello(ch, None)
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert reason in details


async def test_node_claiming_another_campus_in_hello_is_refused(
    running_pair: LocalCluster,
) -> None:
    address, campus = target(running_pair)
    other = running_pair.campuses[1].name
    pki_dir = running_pair.pki_dir
    node_creds = Credentials(TLSFiles(pki_dir / "ca.crt", pki_dir / f"{other}.crt",
                                      pki_dir / f"{other}.key"))
    async with node_creds.channel(address, campus) as ch:
        code, _ = await replicate_hello(ch, campus)  # lies about who it is
    assert code == grpc.StatusCode.PERMISSION_DENIED


async def test_plaintext_client_is_refused(running_pair: LocalCluster) -> None:
    address, _ = target(running_pair)
    async with grpc.aio.insecure_channel(address) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await status(ch)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_certificate_from_another_ca_is_refused(
    running_pair: LocalCluster, tmp_path: Path
) -> None:
    address, campus = target(running_pair)
    other_ca = tmp_path / "other-ca"
    pki.create_ca(other_ca)
    cert, key = pki.issue(other_ca, "operator", "mallory")
    # trust the real CA for the server, but present a certificate it never issued
    foreign = Credentials.__new__(Credentials)
    foreign.ca = (running_pair.pki_dir / "ca.crt").read_bytes()
    foreign.cert, foreign.key = cert.read_bytes(), key.read_bytes()
    async with foreign.channel(address, campus) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await status(ch)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_expired_certificate_is_refused(running_pair: LocalCluster) -> None:
    address, campus = target(running_pair)
    now = dt.datetime.now(dt.UTC)
    cert, key = pki.issue(running_pair.pki_dir, "operator", "old", out_stem="expired",
                          not_before=now - dt.timedelta(days=30),
                          not_after=now - dt.timedelta(days=1))
    expired = Credentials.__new__(Credentials)
    expired.ca = (running_pair.pki_dir / "ca.crt").read_bytes()
    expired.cert, expired.key = cert.read_bytes(), key.read_bytes()
    async with expired.channel(address, campus) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await status(ch)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_client_refuses_a_server_that_is_not_the_campus_it_dialled(
    running_pair: LocalCluster,
) -> None:
    address, _ = target(running_pair)
    wrong = running_pair.campuses[1].name
    async with creds(running_pair.pki_dir, "viewer", "v").channel(address, wrong) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await status(ch)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_reflection_lists_the_services(running_pair: LocalCluster) -> None:
    address, campus = target(running_pair)
    async with creds(running_pair.pki_dir, "viewer", "v").channel(address, campus) as ch:
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)

        async def requests():
            yield reflection_pb2.ServerReflectionRequest(list_services="")

        names = set()
        async for reply in stub.ServerReflectionInfo(requests(), timeout=5):
            names = {s.name for s in reply.list_services_response.service}
    assert {"ringsync.v1.Replication", "ringsync.v1.Control", "grpc.health.v1.Health"} <= names


async def test_reflection_answers_as_v1_too(running_pair: LocalCluster) -> None:
    """grpcurl and newer clients ask grpc.reflection.v1 (the same messages)."""
    address, campus = target(running_pair)
    async with creds(running_pair.pki_dir, "viewer", "v1").channel(address, campus) as ch:
        call = ch.stream_stream(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)

        async def requests():
            yield reflection_pb2.ServerReflectionRequest(list_services="")

        names = set()
        async for reply in call(requests(), timeout=5):
            names = {s.name for s in reply.list_services_response.service}
    assert {"ringsync.v1.Control", "grpc.reflection.v1.ServerReflection"} <= names


async def test_a_certificate_issued_through_an_intermediate_ca_is_refused(
    running_pair: LocalCluster, tmp_path: Path
) -> None:
    """The cluster CA says pathlen:0; a leaf certificate signed by a CA:TRUE
    certificate under it (presented with its chain) is refused: by TLS, or
    else by the node's own check that the CA key signed it directly."""
    address, campus = target(running_pair)
    cert, key = intermediate_issued(running_pair.pki_dir, tmp_path / "mallory")
    mallory = Credentials.__new__(Credentials)
    mallory.ca = (running_pair.pki_dir / "ca.crt").read_bytes()
    mallory.cert, mallory.key = cert.read_bytes(), key.read_bytes()
    async with mallory.channel(address, campus) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await status(ch)
    assert e.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.PERMISSION_DENIED)
    if e.value.code() == grpc.StatusCode.PERMISSION_DENIED:
        assert "was not signed by the cluster CA's key" in (e.value.details() or "")


async def test_a_revoked_certificate_is_refused_and_its_open_stream_ended(
    running_pair: LocalCluster, tmp_path: Path
) -> None:
    """`pki revoke` updates the CA's list; both nodes read it beside ca.crt (the
    demo's nodes share the pki directory) or take it pushed by `ctl
    revocations --push`. A revoked viewer is refused on its next call, its
    WatchStatus stream opened before ends with PERMISSION_DENIED, and a
    certificate revoked later is refused once the list is pushed."""
    address, campus = target(running_pair)
    other_address = running_pair.campuses[1].address
    other = running_pair.campuses[1].name
    pki_dir = running_pair.pki_dir
    leaked = creds(pki_dir, "viewer", "leaked")
    async with leaked.channel(address, campus) as ch:
        assert (await status(ch)).campus == campus
        watch = control_pb2_grpc.ControlStub(ch).WatchStatus(control_pb2.StatusRequest())
        await anext(aiter(watch))  # the stream is open

        revoked = subprocess.run(
            [sys.executable, "-m", "ringsync.commands.cli", "pki", "revoke", "--dir",
             str(pki_dir), "--cert", str(pki_dir / "t-viewer-leaked.crt")],
            capture_output=True, text=True, timeout=60)
        assert revoked.returncode == 0, revoked.stderr
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            async for _ in watch:
                pass
        assert ended.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "revoked" in (ended.value.details() or "")
        assert time.monotonic() - started < 5
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await status(ch)
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    async with leaked.channel(other_address, other) as ch:  # the other node too
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await status(ch)
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED

    # A second revocation, pushed; a list of another CA is refused by every node.
    later = creds(pki_dir, "operator", "later")
    cert_file = pki_dir / "t-operator-later.crt"
    crl_copy = tmp_path / "crl.pem"
    crl, held = revoke(pki_dir, cert_file)
    crl_copy.write_bytes(crl.read_bytes())
    pushed = ctl(running_pair, "revocations", "--push", str(crl_copy), "--json")
    assert pushed.returncode == 0, pushed.stderr
    nodes = json.loads(pushed.stdout)["nodes"]
    assert [(n["number"], n["revoked"]) for n in nodes] == [(held.number, 2)] * 2
    async with later.channel(address, campus) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await status(ch)
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    foreign = tmp_path / "foreign"
    pki.create_ca(foreign)
    revoke(foreign, pki.issue(foreign, "viewer", "x")[0])
    refused = ctl(running_pair, "revocations", "--push", str(foreign / "crl.pem"), "--json")
    assert refused.returncode == 1
    assert all("not signed by the cluster CA's key" in n["error"]
               for n in json.loads(refused.stdout)["nodes"])
    shown = json.loads(ctl(running_pair, "revocations", "--json").stdout)["nodes"]
    assert [n["number"] for n in shown] == [held.number] * 2


def _add_patient(db: Path, pid: str) -> None:
    conn = sqlite3.connect(db, timeout=30)
    try:
        with conn:
            conn.execute("INSERT INTO patients VALUES (?, 'm', 'n', NULL, 'F', 'x', 't')", (pid,))
    finally:
        conn.close()


def _patient_ids(db: Path) -> set[str]:
    return {r[0] for r in table_rows(db, ("patients",))["patients"]}


def test_a_node_certificate_renewed_then_the_old_one_revoked_keeps_the_ring_flowing(
    running_pair: LocalCluster,
) -> None:
    """Rotation without a restart: chaohui's certificate is renewed in place
    (the node serves it at the next handshake and dials with it), then the
    old one is revoked; chaohui's writes still reach wangjiangshan and back,
    over new connections made with the new certificate."""
    a, b = running_pair.campuses
    pki_dir = running_pair.pki_dir
    _add_patient(a.database, "before")
    wait_until(lambda: "before" in _patient_ids(b.database), 60, "a write to replicate")
    old_serial = pki.x509.load_pem_x509_certificate(
        (pki_dir / f"{a.name}.crt").read_bytes()).serial_number
    renewed = subprocess.run(
        [sys.executable, "-m", "ringsync.commands.cli", "pki", "renew", "--dir", str(pki_dir),
         "--cert", str(pki_dir / f"{a.name}.crt"), "--days", "900"],
        capture_output=True, text=True, timeout=60)
    assert renewed.returncode == 0, renewed.stderr
    assert f"--serial {old_serial:x}" in renewed.stdout

    def expiry_shown() -> bool:
        nodes = json.loads(ctl(running_pair, "revocations", "--json").stdout)["nodes"]
        shown = {n["campus"]: n["certificate_expires_at"] for n in nodes}
        return shown[a.name] is not None and shown[a.name] > shown[b.name]

    wait_until(expiry_shown, 30, "chaohui to take its renewed certificate")
    revoked = subprocess.run(
        [sys.executable, "-m", "ringsync.commands.cli", "pki", "revoke", "--dir", str(pki_dir),
         "--serial", f"{old_serial:x}"], capture_output=True, text=True, timeout=60)
    assert revoked.returncode == 0, revoked.stderr
    time.sleep(2)  # the old certificate's streams end; new ones are made with the new one
    _add_patient(a.database, "after-a")
    _add_patient(b.database, "after-b")
    wait_until(lambda: {"after-a", "after-b"} <= _patient_ids(b.database)
               and {"after-a", "after-b"} <= _patient_ids(a.database), 60,
               "writes at both campuses to cross after the old certificate was revoked")
    status = json.loads(ctl(running_pair, "status", "--json").stdout)
    assert all(n["revocations"]["revoked"] == 1 for n in status["nodes"])
    assert not any("not taken" in x for n in status["nodes"] for x in n["alerts"])
