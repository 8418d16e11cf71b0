"""Integration fixtures: a running two-campus cluster of real node processes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ringsync.client import ClusterClient
from ringsync.commands.demo.cluster import LocalCluster
from ringsync.commands.demo.etcd import LocalEtcd
from ringsync.config import load_cluster
from tests.helpers import async_wait_until


def wait_ready(cluster: LocalCluster, timeout: float = 30.0) -> None:
    async def check() -> None:
        client = ClusterClient(load_cluster(cluster.cluster_file, need_client_tls=True))

        async def ready() -> bool:
            cluster.check_alive()
            replies = await client.status_all()
            now = time.time()
            return all(
                r.status is not None and any(
                    link.successor and link.state == "streaming" for link in r.status.links)
                # With DR on, a database starts fenced and opens once its node holds
                # a lease and has read the routing map: writes before then are refused.
                and (not r.status.routing.dr_enabled or r.status.routing.writable_until > now)
                for r in replies if r.campus in cluster.processes
                and cluster.processes[r.campus].poll() is None
            )

        try:
            await async_wait_until(ready, timeout, "nodes to stream to their successors")
        finally:
            await client.close()

    asyncio.run(check())


@pytest.fixture
def running_pair(make_cluster) -> Iterator[LocalCluster]:
    cluster = make_cluster(2)
    cluster.start_all()
    wait_ready(cluster)
    yield cluster


RINGSYNC = [sys.executable, "-m", "ringsync.commands.cli"]


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[LocalEtcd]:
    """A real one-member etcd on free ports (disaster-recovery tests), not yet
    started: its cluster starts it with its pki directory (TLS only)."""
    server = LocalEtcd.create(tmp_path / "etcd", 1)
    yield server
    server.stop()


def ctl(cluster: LocalCluster, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    """`ringsync ctl` against the cluster's file, as an operator runs it."""
    return subprocess.run([*RINGSYNC, "ctl", "--cluster", str(cluster.cluster_file), *args],
                          capture_output=True, text=True, timeout=timeout)
