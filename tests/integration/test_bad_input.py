"""Bad peer messages and bad configuration: a clear error, nothing half-started."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from node.replication import PROTOCOL_VERSION
from ringsync.client import Credentials
from ringsync.commands.demo.cluster import LocalCluster
from ringsync.config import TLSFiles
from ringsync.v1 import control_pb2, control_pb2_grpc, replication_pb2, replication_pb2_grpc


def node_creds(cluster: LocalCluster, campus: str) -> Credentials:
    d = cluster.pki_dir
    return Credentials(TLSFiles(d / "ca.crt", d / f"{campus}.crt", d / f"{campus}.key"))


async def open_stream(cluster: LocalCluster, options=()):
    receiver, sender = cluster.campuses[0], cluster.campuses[1]
    channel = node_creds(cluster, sender.name).channel(receiver.address, receiver.name, options)
    call = replication_pb2_grpc.ReplicationStub(channel).Replicate(timeout=10)
    await call.write(replication_pb2.ReplicateRequest(
        hello=replication_pb2.Hello(campus=sender.name, cluster="demo",
                                    protocol_version=PROTOCOL_VERSION)))
    welcome = await call.read()
    assert welcome.WhichOneof("msg") == "welcome"
    return channel, call


async def still_serving(cluster: LocalCluster) -> None:
    cluster.check_alive()
    c = cluster.campuses[0]
    async with node_creds(cluster, c.name).channel(c.address, c.name) as ch:
        s = await control_pb2_grpc.ControlStub(ch).GetStatus(control_pb2.StatusRequest(),
                                                           timeout=5)
    assert s.database_healthy


async def test_undecodable_frame_is_rejected_and_node_keeps_running(
    running_pair: LocalCluster,
) -> None:
    channel, call = await open_stream(running_pair)
    await call.write(replication_pb2.ReplicateRequest(
        batch=replication_pb2.Batch(batch_id=1, frames=[b"\xff\xff\xff garbage"])))
    with pytest.raises(grpc.aio.AioRpcError) as e:
        while True:
            await call.read()
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "undecodable" in e.value.details()
    await channel.close()
    await still_serving(running_pair)
    log = running_pair.campus(running_pair.campuses[0].name).log.read_text()
    assert "undecodable" in log


async def test_gap_in_sequence_is_rejected(running_pair: LocalCluster) -> None:
    from node.codec import build_frame
    from node.model import Change, Op, TableShape

    shape = TableShape("patients", ("patient_id", "mrn", "name", "birth_date", "sex",
                                    "home_campus", "created_at"), (0,))
    frame = build_frame("wangjiangshan", 999_999, 0, True, 1.0,
                        [Change("patients", Op.INSERT, new=("x", "m", "n", None, "F", "w", "t"))],
                        {"patients": shape})
    channel, call = await open_stream(running_pair)
    await call.write(replication_pb2.ReplicateRequest(
        batch=replication_pb2.Batch(batch_id=1, frames=[frame.SerializeToString()])))
    with pytest.raises(grpc.aio.AioRpcError) as e:
        while True:
            await call.read()
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "gap" in e.value.details()
    await channel.close()
    await still_serving(running_pair)


async def test_oversized_message_is_rejected(running_pair: LocalCluster) -> None:
    big = 64 << 20
    channel, call = await open_stream(
        running_pair, [("grpc.max_send_message_length", big)])
    await call.write(replication_pb2.ReplicateRequest(
        batch=replication_pb2.Batch(batch_id=1, frames=[b"\x00" * (16 << 20)])))
    with pytest.raises(grpc.aio.AioRpcError) as e:
        while True:
            await call.read()
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    await channel.close()
    await still_serving(running_pair)


def run_node(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "node", "--config", str(config)],
                          capture_output=True, text=True, timeout=60)


def test_port_in_use_is_a_clear_error(make_cluster) -> None:
    cluster = make_cluster(2)
    c = cluster.campuses[0]
    with socket.socket() as s:
        s.bind(("127.0.0.1", c.port))
        s.listen()
        result = run_node(c.config)
    assert result.returncode == 2
    assert f"cannot listen on {c.address}" in result.stderr and "port is in use" in result.stderr


def test_missing_certificate_is_a_clear_error(make_cluster) -> None:
    cluster = make_cluster(2)
    c = cluster.campuses[0]
    (cluster.pki_dir / f"{c.name}.key").unlink()
    result = run_node(c.config)
    assert result.returncode == 2
    assert f"{c.name}.key does not exist" in result.stderr


def test_table_without_primary_key_is_a_clear_error(make_cluster) -> None:
    cluster = make_cluster(2)
    c = cluster.campuses[0]
    conn = sqlite3.connect(c.database)
    conn.execute("DROP TABLE specimens")
    conn.execute("CREATE TABLE specimens(specimen_id TEXT, order_id TEXT)")
    conn.commit()
    conn.close()
    result = run_node(c.config)
    assert result.returncode == 2
    assert "'specimens'" in result.stderr and "no primary key" in result.stderr
    # nothing half-started: no journal was created
    assert not (c.dir / "journal.db").exists()


def test_certificate_of_another_campus_is_a_clear_error(make_cluster) -> None:
    cluster = make_cluster(2)
    a, b = cluster.campuses
    text = a.config.read_text().replace(f"{a.name}.crt", f"{b.name}.crt").replace(
        f"{a.name}.key", f"{b.name}.key")
    a.config.write_text(text)
    result = run_node(a.config)
    assert result.returncode == 2
    assert f"is for node/{b.name}" in result.stderr
