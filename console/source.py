"""What the console needs from the cluster, as Protocols tests can fake."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from ringsync.client import NodeReply
from ringsync.config import ClusterConfig


class StatusSource(Protocol):
    async def status_all(self) -> list[NodeReply]: ...

    async def close(self) -> None: ...


class RouteMover(Protocol):
    """Moves a campus's users (switchover, switchback, failback), reporting progress."""

    async def move(self, campus: str, to: str, kind: str,
                   say: Callable[[str], None]) -> dict[str, Any]: ...


class ClusterMover:
    """The real mover: the same code as `ringsync ctl switchover` (ringsync.dr.moves)."""

    def __init__(self, cluster: ClusterConfig) -> None:
        self.cluster = cluster

    async def move(self, campus: str, to: str, kind: str,
                   say: Callable[[str], None]) -> dict[str, Any]:
        from ringsync.dr.moves import MOVE_TIMEOUT_SECONDS, move

        return await move(self.cluster, campus, to, kind, MOVE_TIMEOUT_SECONDS, say)
