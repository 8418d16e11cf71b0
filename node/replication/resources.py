"""The node's resources every loop works through: the engine, the journal,
the single worker thread each runs on, and the notifiers that wake loops.

The engine and the journal are blocking code (SQLite, psycopg): each runs
on its own one-thread executor, so every engine call is serialized, and so
is every journal call, without holding up the event loop. Capture and DR
fence writes get threads of their own, so neither waits behind apply.

Notifiers carry "something changed" between loops: capture and the
receiver wake the applier and the sender (``journal_changed``), the applier
wakes the receiver's acknowledgements (``applied_changed``), the sender
wakes synchronous-mode release (``acks_changed``), the receiver and the
sender's probe wake a sender waiting to redial a campus that is back
(``peer_returned``; which campus is in ReplicationState.returns).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from node.engines.base import Engine
from node.replication.journal import Journal

T = TypeVar("T")


class Notifier:
    """Wakes every waiter when something changed.

    Take ``ticket()`` before checking for work, then ``wait(ticket)``: a
    change between the check and the wait is never missed.
    """

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    def ticket(self) -> asyncio.Event:
        return self._event

    async def wait(self, ticket: asyncio.Event, timeout: float) -> None:
        try:
            await asyncio.wait_for(ticket.wait(), timeout)
        except TimeoutError:
            pass


class NodeResources:
    """The engine and the journal, their worker threads, and the notifiers."""

    def __init__(self, campus: str, engine: Engine, journal: Journal) -> None:
        self.engine = engine
        self.journal = journal
        self._engine_exec = ThreadPoolExecutor(1, thread_name_prefix=f"engine-{campus}")
        self._journal_exec = ThreadPoolExecutor(1, thread_name_prefix=f"journal-{campus}")
        self._capture_exec = ThreadPoolExecutor(1, thread_name_prefix=f"capture-{campus}")
        # DR fence writes (node.dr.agent): never queued behind apply or a waiting commit
        self._fence_exec = ThreadPoolExecutor(1, thread_name_prefix=f"fence-{campus}")
        self.journal_changed = Notifier()
        self.applied_changed = Notifier()
        self.acks_changed = Notifier()  # a peer acknowledged (node.replication.syncrep)
        self.peer_returned = Notifier()  # a campus is back (ReplicationState.peer_back)
        # Held by the applier for each step, and by a leaf's re-seed for its whole
        # copy (node.leaf.reseed): apply never runs against a copy being replaced.
        self.apply_gate = asyncio.Lock()

    async def in_engine(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._engine_exec, fn, *args)

    async def in_capture(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._capture_exec, fn, *args)

    async def in_fence(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._fence_exec, fn, *args)

    async def in_journal(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._journal_exec, fn, *args)

    def shutdown_threads(self) -> None:
        self._engine_exec.shutdown(wait=True, cancel_futures=True)
        self._journal_exec.shutdown(wait=True, cancel_futures=True)
        self._capture_exec.shutdown(wait=True, cancel_futures=True)
        self._fence_exec.shutdown(wait=True, cancel_futures=True)
