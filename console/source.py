"""What the console needs from the cluster, as Protocols tests can fake."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import grpc

from ringsync.client import ClusterClient, NodeReply, describe_rpc_error
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


class Verifier(Protocol):
    """Runs one verification of ``tables`` (``full``: hash every row, as ``ctl verify
    --full``), reporting progress lines; returns the report (docs/verification.md)."""

    async def verify(self, tables: list[str], full: bool,
                     say: Callable[[str], None]) -> dict[str, Any]: ...


class ClusterVerifier:
    """The real verifier: ringsync.verification, as `ringsync ctl verify` runs it, on a
    client of its own (the status poll's keeps polling). A failed RPC is raised as a
    RuntimeError with a one-line reason."""

    def __init__(self, cluster: ClusterConfig) -> None:
        self.cluster = cluster

    async def verify(self, tables: list[str], full: bool,
                     say: Callable[[str], None]) -> dict[str, Any]:
        from ringsync.verification import Verification

        client = ClusterClient(self.cluster)
        try:
            return await Verification(client, tables, full=full, progress=say).run()
        except grpc.aio.AioRpcError as e:
            raise RuntimeError(describe_rpc_error(e)) from e
        finally:
            await client.close()
