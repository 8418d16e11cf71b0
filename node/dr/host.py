"""AgentRuntime: what the DR agent (node.dr.agent, node.dr.setfencing) uses
of the node it runs in.

node.runtime.NodeRuntime is the real one; a unit test passes a small object
with these attributes (an engine whose fence records its calls, a journal
that reports a vector), so the agent's steps run without a database.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from node.dr.sets import SetGuard
from node.engines.base import Engine
from node.replication.vectors import Vector
from ringsync.config import NodeConfig

T = TypeVar("T")


class JournalHead(Protocol):
    def vector(self) -> Vector:
        """The highest seq journaled of every origin."""
        ...


class AgentRuntime(Protocol):
    @property
    def campus(self) -> str: ...

    @property
    def config(self) -> NodeConfig:
        """.cluster (ring, campuses, sets) and .dr (the DR settings)."""
        ...

    @property
    def engine(self) -> Engine:
        """Its fence role: set_fence, set_set_fence, end_app_sessions..."""
        ...

    @property
    def journal(self) -> JournalHead: ...

    @property
    def sets(self) -> SetGuard: ...

    @property
    def initialized(self) -> asyncio.Event:
        """Set once the campus has joined (its copy is complete)."""
        ...

    @property
    def applied(self) -> Vector:
        """Foreign transactions applied here."""
        ...

    @property
    def journaled_through(self) -> int:
        """Capture has journaled every commit up to this position."""
        ...

    def applied_vector(self) -> Vector:
        """Applied foreign transactions plus this campus's own journal head."""
        ...

    async def in_engine(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on the engine's thread."""
        ...

    async def in_fence(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on the fence's own thread (engines with a fence connection)."""
        ...
