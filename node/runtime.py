"""The node's composition root: its configuration and the parts the loops share.

NodeRuntime creates the parts (node.server.NodeService builds it and wires
the loops, each given only the parts it uses):

* ``res``: node.replication.resources.NodeResources: the engine, the
  journal, their worker threads and the notifiers;
* ``state``: node.replication.state.ReplicationState: vectors, links,
  counters, errors, the applier's machine, join progress, refusals;
* ``clock`` (node.hlc), ``sets`` (node.dr.sets, kept by the DR agent) and,
  once the engine is open, ``resolver`` (node.conflicts.driver).

The DR agent, the servicers and status take the whole runtime and read the
parts through the attributes below, which forward to them (``rt.applied`` is
``rt.state.applied``, ``rt.in_engine`` is ``rt.res.in_engine``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

from node.audit import AuditTrail
from node.conflicts.driver import Resolver
from node.dr.sets import SetGuard
from node.engines.base import Engine
from node.hlc import HybridClock
from node.replication.applystate import ApplyMachine
from node.replication.framecheck import Refusals
from node.replication.journal import Journal
from node.replication.resources import NodeResources, Notifier
from node.replication.state import (
    INCOMPLETE_ALERT_SECONDS,
    JoinProgress,
    LinkState,
    RateMeter,
    ReplicationState,
)
from node.replication.vectors import Vector
from node.verify.reports import ReportStore
from node.verify.schedule import VerifyScheduler
from ringsync.client import Credentials
from ringsync.config import NodeConfig
from ringsync.revocation import RevocationWatch

__all__ = ["INCOMPLETE_ALERT_SECONDS", "JoinProgress", "LinkState", "NodeRuntime", "Notifier",
           "RateMeter"]

T = TypeVar("T")


class Forwarded(Generic[T]):
    """A NodeRuntime attribute that lives on one of its parts, under the same name."""

    def __init__(self, part: str) -> None:
        self.part = part
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type) -> Forwarded[T]: ...

    @overload
    def __get__(self, obj: object, owner: type) -> T: ...

    def __get__(self, obj: object | None, owner: type) -> Forwarded[T] | T:
        if obj is None:
            return self
        value: T = getattr(getattr(obj, self.part), self.name)
        return value

    def __set__(self, obj: object, value: T) -> None:
        setattr(getattr(obj, self.part), self.name, value)


class NodeRuntime:
    """One campus node's parts, created together and shared by its loops."""

    resolver: Resolver  # set once the engine is open and knows its tables

    # node.replication.resources.NodeResources
    engine: Forwarded[Engine] = Forwarded("res")
    journal: Forwarded[Journal] = Forwarded("res")
    journal_changed: Forwarded[Notifier] = Forwarded("res")
    applied_changed: Forwarded[Notifier] = Forwarded("res")
    acks_changed: Forwarded[Notifier] = Forwarded("res")
    # node.replication.state.ReplicationState
    applied: Forwarded[Vector] = Forwarded("state")
    known: Forwarded[dict[str, Vector]] = Forwarded("state")
    links: Forwarded[dict[str, LinkState]] = Forwarded("state")
    incomplete: Forwarded[dict[tuple[str, int], float]] = Forwarded("state")
    journaled_through: Forwarded[int] = Forwarded("state")
    apply_machine: Forwarded[ApplyMachine] = Forwarded("state")
    captured_txns: Forwarded[int] = Forwarded("state")
    applied_txns: Forwarded[int] = Forwarded("state")
    conflicts_logged: Forwarded[int] = Forwarded("state")
    pending_waits: Forwarded[int] = Forwarded("state")
    dead_lettered: Forwarded[int] = Forwarded("state")
    database_error: Forwarded[str] = Forwarded("state")
    apply_error: Forwarded[str] = Forwarded("state")
    started_at: Forwarded[float] = Forwarded("state")
    durability: Forwarded[str] = Forwarded("state")
    join: Forwarded[JoinProgress] = Forwarded("state")
    initialized: Forwarded[asyncio.Event] = Forwarded("state")
    refused: Forwarded[Refusals] = Forwarded("state")

    def __init__(self, config: NodeConfig, engine: Engine, journal: Journal) -> None:
        self.config = config
        self.campus = config.campus
        self.res = NodeResources(config.campus, engine, journal)
        self.state = ReplicationState(config.campus, config.cluster.ring,
                                      [leaf.name for leaf in config.cluster.leaves])
        self.clock = HybridClock(config.cluster.conflicts.max_clock_skew_ms)
        # Single-writer sets: epochs, verdicts, stale tails (the DR agent keeps it).
        self.sets = SetGuard(config.cluster.sets, config.campus)
        # Scheduled verification ([verify]) and the reports kept here (node.verify).
        self.verifier = VerifyScheduler(config, ReportStore(
            config.data_dir / "verify-reports.jsonl", config.cluster.verify.keep_reports))
        # The CA's revocation list and this node's own certificate (node.revocations).
        self.revocations: RevocationWatch | None = None
        self.credentials: Credentials | None = None  # renewed in place (ringsync.client)
        self.audit: AuditTrail | None = None  # what operators did here (node.audit)

    async def in_engine(self, fn: Callable[..., T], *args: Any) -> T:
        return await self.res.in_engine(fn, *args)

    async def in_capture(self, fn: Callable[..., T], *args: Any) -> T:
        return await self.res.in_capture(fn, *args)

    async def in_fence(self, fn: Callable[..., T], *args: Any) -> T:
        return await self.res.in_fence(fn, *args)

    async def in_journal(self, fn: Callable[..., T], *args: Any) -> T:
        return await self.res.in_journal(fn, *args)

    def incomplete_alert(self) -> str:
        """An alert when a foreign transaction has stayed incomplete too long."""
        return self.state.incomplete_alert()

    def learn(self, campus: str, journal_vector: Vector) -> None:
        """Record what a campus is known to hold (vectors only grow)."""
        self.state.learn(campus, journal_vector)

    def applied_vector(self) -> Vector:
        """What this campus's database holds: applied foreign txns plus its own."""
        return self.state.applied_vector(self.journal.vector())

    def known_snapshot(self) -> dict[str, Vector]:
        return self.state.known_snapshot(self.journal.vector())

    def shutdown_threads(self) -> None:
        self.res.shutdown_threads()
