"""What the pruner may drop (what every campus holds and this one has
applied and recorded), and synchronous mode's rounds: commits released as
far as a peer holds them, degraded when acknowledgements stall (policy
"degrade"), restored when a peer catches up. Real journal; the clock is
passed in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import cast

import pytest

from node.dr.sets import SetGuard
from node.engines.base import Engine
from node.model import CapturedChunk, Change, Op
from node.replication.journal import Journal
from node.replication.pruner import held_everywhere, prune_journal
from node.replication.resources import NodeResources
from node.replication.state import ReplicationState
from node.replication.syncrep import SyncRelease, acknowledged_seq, sync_alert
from ringsync.config import DatabaseConfig

from .campus import RING, insert_patient, patient


def own(journal: Journal, res: NodeResources, *positions: int) -> None:
    """Journal campus a's transactions, one per capture position."""
    for p in positions:
        chunk = CapturedChunk([Change("patients", Op.INSERT, new=patient(f"a{p}", campus="a"))],
                              True, 1.0, p)
        journal.append_local([chunk], dict(res.engine.shapes()))


@pytest.fixture
def no_sets() -> SetGuard:
    return SetGuard((), "a")


async def test_the_journal_keeps_everything_for_a_campus_never_heard_from(
        res: NodeResources, state: ReplicationState, no_sets: SetGuard) -> None:
    own(res.journal, res, 10, 20)
    state.applied = {"a": 2}
    state.learn("b", {"a": 2})
    assert held_everywhere(RING, state, no_sets, res.journal.vector()) is None  # c: silent
    assert await prune_journal(RING, res, state, no_sets) == 0
    assert res.journal.transactions == 2


async def test_what_every_campus_holds_and_this_one_applied_is_pruned(
        res: NodeResources, state: ReplicationState, no_sets: SetGuard) -> None:
    journal, engine = res.journal, res.engine
    own(journal, res, 10, 20, 30)
    journal.append_remote([insert_patient(engine, "b", 1, "b1"),
                           insert_patient(engine, "b", 2, "b2")])
    state.applied = {"a": 3, "b": 2}
    state.learn("b", {"a": 3, "b": 2})
    state.learn("c", {"a": 2, "b": 2})
    assert held_everywhere(RING, state, no_sets, journal.vector()) == {"a": 2, "b": 2}
    # not applied here yet, or own versions not recorded yet: kept
    state.applied = {"a": 1, "b": 1}
    assert held_everywhere(RING, state, no_sets, journal.vector()) == {"a": 1, "b": 1}
    state.applied = {"a": 3, "b": 2}
    assert await prune_journal(RING, res, state, no_sets) == 4
    assert [(e.origin, e.seq) for e in journal.entries_after(0, 10)] == [("a", 3)]


class RecordingSource:
    """The engine's capture side as synchronous mode drives it."""

    def __init__(self) -> None:
        self.released: list[int | None] = []

    def sync_release(self, position: int | None) -> None:
        self.released.append(position)


@pytest.fixture
def source() -> RecordingSource:
    return RecordingSource()


@pytest.fixture
async def sync_res(res: NodeResources, source: RecordingSource
                   ) -> AsyncIterator[NodeResources]:
    """Campus a's journal with a/1..3 (positions 10, 20, 30), its engine's
    capture side recording what it is told to release."""
    own(res.journal, res, 10, 20, 30)
    engine = cast(Engine, SimpleNamespace(source=source))
    parts = NodeResources("a", engine, res.journal)
    yield parts
    parts.shutdown_threads()


def postgres(policy: str) -> DatabaseConfig:
    return DatabaseConfig("postgres", dsn="host=unused", durability="sync", sync_policy=policy,
                          degrade_after=10.0)


async def test_commits_are_released_as_far_as_a_peer_holds_them_and_degrade_on_a_stall(
        sync_res: NodeResources, state: ReplicationState, source: RecordingSource) -> None:
    release = SyncRelease(postgres("degrade"), sync_res, state, now=0.0)
    await release.step(0.0)
    assert source.released == [9]  # nothing acknowledged: up to just before a/1
    assert state.durability == "sync" and sync_alert(state) == ""

    state.learn("b", {"a": 2})
    assert acknowledged_seq(state) == 2
    await release.step(1.0)
    assert source.released == [9, 20]
    await release.step(2.0)
    assert source.released == [9, 20]  # unchanged: not handed again

    await release.step(1.0 + 10.0 + 0.5)  # no acknowledgement for longer than degrade_after
    assert source.released[-1] is None  # commits stop waiting
    assert state.durability.startswith("sync DEGRADED")
    assert sync_alert(state).startswith("SYNC DEGRADED: ")

    state.learn("c", {"a": 3})  # a peer holds everything again
    await release.step(13.0)
    assert source.released[-1] == 30 and state.durability == "sync"
    assert sync_alert(state) == ""


async def test_strict_sync_never_stops_waiting(
        sync_res: NodeResources, state: ReplicationState, source: RecordingSource) -> None:
    release = SyncRelease(postgres("strict"), sync_res, state, now=0.0)
    await release.step(0.0)
    await release.step(1000.0)
    assert source.released == [9] and state.durability == "sync"
