"""Fixtures: campus "a" (see campus.py) with a real SQLite database (the demo
LIS schema), a real journal and a real node config in a temp dir, and the
node's parts (resources, state) built from them. No node, no network: the
loops run step by step."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from node.engines.sqlite.engine import SQLiteEngine
from node.replication.journal import Journal
from node.replication.resources import NodeResources
from node.replication.state import ReplicationState
from ringsync.commands.demo.lis import create_sqlite_database
from ringsync.config import NodeConfig, load_node

from .campus import CLUSTER, NODE, RING, TABLES, Parts


@pytest.fixture
def config(tmp_path: Path) -> NodeConfig:
    (tmp_path / "cluster.toml").write_text(CLUSTER)
    (tmp_path / "node.toml").write_text(NODE)
    for name in ("ca.crt", "a.crt", "a.key"):  # load_node checks they exist; nothing dials
        (tmp_path / name).write_text("")
    create_sqlite_database(tmp_path / "a.db")
    return load_node(tmp_path / "node.toml")


@pytest.fixture
def engine(config: NodeConfig) -> Iterator[SQLiteEngine]:
    assert config.database.path is not None
    e = SQLiteEngine(config.database.path, TABLES, "a")
    e.open()
    yield e
    e.close()


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(tmp_path / "journal.db", "a")
    j.open()
    yield j
    j.close()


@pytest.fixture
async def res(engine: SQLiteEngine, journal: Journal) -> AsyncIterator[NodeResources]:
    r = NodeResources("a", engine, journal)
    yield r
    r.shutdown_threads()


@pytest.fixture
def state() -> ReplicationState:
    return ReplicationState("a", RING)


@pytest.fixture
def parts(config: NodeConfig, res: NodeResources, state: ReplicationState) -> Parts:
    return Parts(config, res, state)


