"""How a control or replication RPC ends: a RingsyncError becomes the
status code its class names (``RingsyncError.grpc_code``, ringsync/errors.py)
with its message as the details, and what operators do or are refused is
written to the campus's audit trail (node.audit) on the way.

node.servicers decorates its RPCs with ``answers_errors`` and calls
``audit`` for the actions it carries out.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar, cast

import grpc

from node.auth import peer_identity
from node.runtime import NodeRuntime
from node.scoping import OutOfScope
from ringsync.errors import RingsyncError

log = logging.getLogger(__name__)

RpcMethod = TypeVar("RpcMethod", bound=Callable[..., Any])


async def audit(rt: NodeRuntime, context: grpc.aio.ServicerContext, action: str,
                outcome: str, table: str = "", key: Any = None, **detail: Any) -> None:
    """One entry in the campus's audit trail (node.audit), by the caller."""
    if rt.audit is not None:
        identity = peer_identity(context)
        await rt.audit.record(action, str(identity) if identity is not None else "unknown",
                              outcome, table=table, key=key, **detail)


def refused(error: RingsyncError) -> str:
    """An outcome for the trail: the kind of refusal, never its text (which
    can quote a row)."""
    return f"refused: {type(error).__name__}"


def status_code_for(error: RingsyncError) -> grpc.StatusCode:
    """The status code a call refused because of ``error`` ends with."""
    return grpc.StatusCode[error.grpc_code]


async def abort_for(context: grpc.aio.ServicerContext, error: RingsyncError,
                    quiet: bool = False) -> None:
    """End the call with ``error``'s status code and message. ``quiet``: do not
    log it (logged already, or an operator's request refused in the reply)."""
    code = status_code_for(error)
    if not quiet:
        log.warning("rejecting %s from %s: %s", code.name, context.peer(), error)
    await context.abort(code, str(error))


def answers_errors(
    quiet: tuple[type[RingsyncError], ...] = (),
) -> Callable[[RpcMethod], RpcMethod]:
    """Decorate an RPC method (a coroutine, or an async generator for a
    server stream) so that a RingsyncError escaping it aborts the call through
    ``abort_for``; errors of the ``quiet`` classes are not logged."""

    def decorate(method: RpcMethod) -> RpcMethod:
        async def refuse(servicer: Any, context: grpc.aio.ServicerContext,
                         e: RingsyncError) -> None:
            rt = getattr(servicer, "rt", None)
            if isinstance(e, OutOfScope) and rt is not None:  # every denial is in the trail
                await audit(rt, context, "denied", "denied", table=e.table,
                            rpc=method.__name__, what=e.what)
            await abort_for(context, e, quiet=isinstance(e, quiet))

        if inspect.isasyncgenfunction(method):

            @functools.wraps(method)
            async def streaming(self: Any, request: Any, context: grpc.aio.ServicerContext,
                                ) -> AsyncIterator[Any]:
                try:
                    async for item in method(self, request, context):
                        yield item
                except RingsyncError as e:
                    await refuse(self, context, e)

            return cast(RpcMethod, streaming)

        @functools.wraps(method)
        async def unary(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                return await method(self, request, context)
            except RingsyncError as e:
                await refuse(self, context, e)

        return cast(RpcMethod, unary)

    return decorate
