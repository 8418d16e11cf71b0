"""What the console needs from the cluster, as a Protocol tests can fake."""

from __future__ import annotations

from typing import Protocol

from ringsync.client import NodeReply


class StatusSource(Protocol):
    async def status_all(self) -> list[NodeReply]: ...

    async def close(self) -> None: ...
