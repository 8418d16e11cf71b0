"""Leaves and the journal's pruning: a parent keeps what a leaf lacks within
its retention, and no longer once the oldest of it is past (the leaf must be
re-seeded); a leaf never heard of holds nothing back. And the alerts that
say so. Real journal and database (campus "a" of campus.py)."""

from __future__ import annotations

import time
from pathlib import Path

from node.dr.sets import SetGuard
from node.leaf.status import leaf_alerts
from node.replication.pruner import campuses_kept_for, held_everywhere
from node.replication.resources import NodeResources
from node.replication.state import ReplicationState
from ringsync.config import load_node
from ringsync.v1 import control_pb2 as cpb
from tests.unit.configs import cluster_toml, node_toml

from .campus import RING, insert_patient

LEAVES = """
[[leaf]]
name = "sat"
address = "127.0.0.1:7101"
parents = ["a"]
retention_hours = 1

[[leaf]]
name = "quiet"
address = "127.0.0.1:7102"
parents = ["b"]
"""


def leafy_config(tmp_path: Path):
    d = tmp_path / "leafy"
    d.mkdir()
    (d / "cluster.toml").write_text(cluster_toml(RING, LEAVES))
    (d / "node.toml").write_text(node_toml("a"))
    for name in ("ca.crt", "a.crt", "a.key"):
        (d / name).write_text("")
    return load_node(d / "node.toml")


async def test_a_leaf_holds_pruning_back_only_within_its_retention(
        tmp_path: Path, res: NodeResources) -> None:
    config = leafy_config(tmp_path)
    state = ReplicationState("a", RING, ["sat", "quiet"])
    journal, no_sets = res.journal, SetGuard((), "a")
    journal.append_remote([insert_patient(res.engine, "b", 1, "b1"),
                           insert_patient(res.engine, "b", 2, "b2")])
    state.applied = {"b": 2}
    for campus in ("b", "c"):
        state.learn(campus, {"b": 2})
    state.learn("sat", {"b": 1})  # it lacks b/2
    kept = await campuses_kept_for(config, res, state)
    assert kept == (*RING, "sat")  # "quiet" was never heard of: it copies when it comes
    assert held_everywhere(kept, state, no_sets, journal.vector()) == {"b": 1}
    # b/2 reached this journal two hours ago: past sat's one-hour retention.
    journal.conn.execute("UPDATE frames SET recv_time = ?", (time.time() - 7200,))
    kept = await campuses_kept_for(config, res, state)
    assert kept == RING
    assert held_everywhere(kept, state, no_sets, journal.vector()) == {"b": 2}


def test_the_alerts_say_what_to_do_about_a_leaf() -> None:
    hour = 3600.0
    near = cpb.LeafStatus(name="sat", retention_hours=10, lag_seconds=9 * hour)
    past = cpb.LeafStatus(name="far", retention_hours=10, lag_seconds=11 * hour,
                          past_retention=True)
    unjudged = cpb.LeafStatus(name="sub", retention_hours=10, unjudged=2,
                              last_unjudged="the row filter of patients ... p7")
    blocked = cpb.LeafStatus(name="moved", retention_hours=10, blocked=True,
                             error="the route of leaf moved changed")
    fine = cpb.LeafStatus(name="ok", retention_hours=10, lag_seconds=hour)
    alerts = leaf_alerts([near, past, unjudged, blocked, fine])
    assert alerts[0].startswith("leaf sat has lacked transactions for 9.0h of its 10h")
    assert "past its 10h retention" in alerts[1] and "re-seed it" in alerts[1]
    assert "2 row(s) its route's filter could not judge" in alerts[2] and "p7" in alerts[2]
    assert alerts[3] == "leaf moved does not follow its parent: the route of leaf moved changed"
    assert len(alerts) == 4
