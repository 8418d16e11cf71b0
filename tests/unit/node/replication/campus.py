"""Campus "a" of the ring a -> b -> c, for the replication loops' unit tests:
its config files, frames its peers would send, and a look at its database.
The fixtures that build it are in conftest.py."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from node.codec import build_frame
from node.engines.base import Engine
from node.model import Change, Op
from node.replication.resources import NodeResources
from node.replication.state import ReplicationState
from ringsync.config import NodeConfig
from ringsync.v1 import values_pb2 as pb
from tests.unit.configs import cluster_toml, node_toml

TABLES = ("patients", "lab_orders", "specimens", "lab_results")
RING = ("a", "b", "c")

CLUSTER = cluster_toml(RING)

NODE = node_toml("a")


@dataclass
class Parts:
    """What node.servicers hands a receiver or a snapshot donor (node.replication.parts)."""

    config: NodeConfig
    res: NodeResources
    state: ReplicationState


def patient(pid: str, name: str = "n", campus: str = "b") -> tuple[object, ...]:
    return (pid, f"m-{pid}", name, None, "F", campus, "2026-01-01T00:00:00Z")


def order(oid: str, priority: str = "routine") -> tuple[object, ...]:
    return (oid, "p1", "CBC", priority, "ordered", "b", "2026-01-01T00:00:00Z")


def txn_frame(engine: Engine, origin: str, seq: int, changes: list[Change],
              deps: dict[str, int] | None = None, hlc: int = 0) -> tuple[pb.TxnFrame, bytes]:
    """One whole foreign transaction as a peer would send it."""
    f = build_frame(origin, seq, 0, True, 1.0, changes, dict(engine.shapes()), hlc=hlc,
                    deps=deps)
    return f, f.SerializeToString()


def insert_patient(engine: Engine, origin: str, seq: int, pid: str,
                   name: str = "n") -> tuple[pb.TxnFrame, bytes]:
    return txn_frame(engine, origin, seq, [Change("patients", Op.INSERT,
                                                  new=patient(pid, name, origin))])


def app(config: NodeConfig) -> sqlite3.Connection:
    """An application's connection to campus a's database."""
    assert config.database.path is not None
    return sqlite3.connect(config.database.path, isolation_level=None, timeout=10)


def rows(config: NodeConfig, table: str, columns: str = "*") -> list[tuple[object, ...]]:
    conn = app(config)
    try:
        return conn.execute(f"SELECT {columns} FROM {table} ORDER BY 1").fetchall()
    finally:
        conn.close()
