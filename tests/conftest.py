"""Fixtures: throwaway PKI, local clusters of real node processes."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from ringsync import pki
from ringsync.commands.demo.cluster import LIS_SCHEMA, LocalCluster, Schema
from tests.mariadb_fixtures import mariadb_db, mariadb_server  # noqa: F401 (fixtures)


def _terminated(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    """A run stopped by SIGTERM (``timeout``, a CI runner giving up) unwinds
    like Ctrl-C, so every fixture's teardown stops the node processes and the
    database servers it started instead of leaving them running."""
    signal.signal(signal.SIGTERM, _terminated)


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    d = tmp_path / "pki"
    pki.create_ca(d)
    return d


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator:
    """Build LocalClusters under tmp_path; every node they start is stopped after."""
    clusters: list[LocalCluster] = []

    def make(count: int = 3, engines: list[str] | None = None,
             conflict_policies: str | None = None, dictionaries: bool = False,
             leaves: list[dict] | None = None, schema: Schema = LIS_SCHEMA,
             **tuning: float | int) -> LocalCluster:
        root = tmp_path / f"cluster{len(clusters)}"
        replication: dict[str, float | int | bool] = {
            "heal_after_seconds": 2.0, "probe_interval_seconds": 0.5, **tuning}
        if os.environ.get("RINGSYNC_FAST_APPLY") == "0":  # the exact path only
            replication["fast_apply"] = False
        cluster = LocalCluster.create(root, count, replication=replication, engines=engines,
                                      conflict_policies=conflict_policies,
                                      dictionaries=dictionaries, leaves=leaves,
                                      schema=schema)
        clusters.append(cluster)
        return cluster

    yield make
    for cluster in clusters:
        cluster.stop_all()
        cluster.stop_databases()
