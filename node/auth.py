"""Who may call what: the node's authorization policy, enforced on every RPC.

TLS (with client certificates required) already refused plaintext clients,
certificates from another CA and expired certificates. This interceptor
then checks, itself, that the caller's certificate was signed directly by
the cluster CA's key (ringsync.pki.issued_by: not by a foreign CA of the
same name, not through an intermediate CA), reads the caller's role and
name from it and checks them against a per-method policy. Anything not
listed is denied. A certificate on the CA's revocation list
(ringsync.revocation) is refused, and a stream opened with it before it
was revoked is ended within REVOKED_POLL_SECONDS of the list reaching the
node.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import grpc

from ringsync.pki import Identity, identity_from_pem, issued_by_pem
from ringsync.revocation import RevocationWatch
from ringsync.scopes import Scope

log = logging.getLogger(__name__)

# How often an open stream's certificate is looked up in the revocation list.
REVOKED_POLL_SECONDS = 1.0

ANY_ROLE = frozenset({"node", "operator", "viewer"})
READERS = ANY_ROLE
NODES = frozenset({"node"})
OPERATORS = frozenset({"operator"})

# Method prefix -> roles allowed. Longest match wins.
POLICY: dict[str, frozenset[str]] = {
    "/ringsync.v1.Replication/": NODES,
    "/ringsync.v1.Control/GetStatus": READERS,
    "/ringsync.v1.Control/WatchStatus": READERS,
    "/ringsync.v1.Control/Checksum": READERS,
    "/ringsync.v1.Control/Verify": READERS,  # read-only; one scan at a time per node
    "/ringsync.v1.Control/RepairRow": OPERATORS,
    "/ringsync.v1.Control/RecordVerification": NODES,
    "/ringsync.v1.Control/ListVerifications": READERS,
    "/ringsync.v1.Control/ListConflicts": READERS,
    "/ringsync.v1.Control/ResolveConflict": OPERATORS,
    "/ringsync.v1.Control/ListDeadLetters": READERS,
    "/ringsync.v1.Control/ActOnDeadLetter": OPERATORS,
    "/ringsync.v1.Control/PublishRevocations": OPERATORS,
    "/ringsync.v1.Control/GetRoutes": READERS,
    "/ringsync.v1.Control/WatchRoutes": READERS,
    "/grpc.health.v1.Health/": ANY_ROLE,
    "/grpc.reflection.v1alpha.ServerReflection/": ANY_ROLE,
    "/grpc.reflection.v1.ServerReflection/": ANY_ROLE,
}


def peer_pem(context: grpc.aio.ServicerContext) -> bytes | None:
    """The caller's certificate (PEM), as TLS received it."""
    pems = context.auth_context().get("x509_pem_cert")
    return pems[0] if pems else None


def peer_identity(context: grpc.aio.ServicerContext) -> Identity | None:
    pem = peer_pem(context)
    return identity_from_pem(pem) if pem is not None else None


def peer_refusal(pem: bytes | None, ca_pem: bytes | None) -> str:
    """Why the caller's certificate is not one the cluster CA issued ("" if it is)."""
    if ca_pem is None:
        return ""
    if pem is None:
        return "the caller presented no client certificate"
    refused = issued_by_pem(pem, ca_pem)
    return f"the client certificate {refused}" if refused else ""


def revoked_reason(pem: bytes | None, watch: RevocationWatch | None) -> str:
    """Why the caller's certificate may no longer be used ("" if it may)."""
    if watch is None:
        return ""
    if pem is not None and watch.revoked(pem):
        return (f"the client certificate is revoked (revocation list number "
                f"{watch.held.number}); issue a new one")
    return ""


def outside_scope(method: str, identity: Identity | None, scopes: Mapping[str, Scope],
                  campus: str) -> str | None:
    """A scoped identity ([[scope]]) at a campus outside its scope: why it is refused."""
    scope = scopes.get(str(identity)) if identity is not None else None
    if scope is None or scope.campus(campus) or not method.startswith("/ringsync.v1.Control/"):
        return None
    return (f"{identity} is scoped to campuses {', '.join(sorted(scope.campuses or ()))}; "
            f"{campus} is not one of them")


def decide(method: str, identity: Identity | None, ring: tuple[str, ...]) -> str | None:
    """None if allowed, else the reason for refusing."""
    if identity is None:
        return "the client certificate carries no ringsync identity"
    matches = [p for p in POLICY if method.startswith(p)]
    if not matches:
        return f"{method} is not open to any caller"
    allowed = POLICY[max(matches, key=len)]
    if identity.role not in allowed:
        return (
            f"{identity} may not call {method}; it needs a certificate with role "
            f"{' or '.join(sorted(allowed))}"
        )
    if identity.role == "node" and identity.name not in ring:
        return f"campus {identity.name!r} is not in this cluster's ring nor one of its leaves"
    return None


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """``ring``: the campuses whose nodes may call (members and leaves);
    ``ca_pem``: the cluster CA, whose key must have signed every caller's
    certificate (None: left to TLS, for unit tests of the policy)."""

    def __init__(self, ring: tuple[str, ...], ca_pem: bytes | None = None,
                 revocations: RevocationWatch | None = None,
                 scopes: Mapping[str, Scope] | None = None, campus: str = "") -> None:
        self.ring = ring
        self.ca_pem = ca_pem
        self.revocations = revocations
        self.scopes = scopes or {}
        self.campus = campus

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler
        method = details.method
        ring, ca_pem, watch = self.ring, self.ca_pem, self.revocations
        scopes, campus = self.scopes, self.campus

        async def check(context: grpc.aio.ServicerContext) -> None:
            pem = peer_pem(context)
            identity = identity_from_pem(pem) if pem is not None else None
            reason = (peer_refusal(pem, ca_pem) or revoked_reason(pem, watch)
                      or decide(method, identity, ring)
                      or outside_scope(method, identity, scopes, campus))
            if reason:
                log.warning("denied %s from %s: %s", method, context.peer(), reason)
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, reason)

        async def until_revoked(context: grpc.aio.ServicerContext) -> str:
            pem = peer_pem(context)
            while not (reason := revoked_reason(pem, watch)):
                await asyncio.sleep(REVOKED_POLL_SECONDS)
            log.warning("ending %s from %s: %s", method, context.peer(), reason)
            return reason

        streaming = handler.request_streaming or handler.response_streaming
        return _wrap(handler, check, until_revoked if watch is not None and streaming else None)


async def _guarded(aw: Awaitable[Any], context: grpc.aio.ServicerContext,
                   until_revoked: Callable[[grpc.aio.ServicerContext], Awaitable[str]] | None
                   ) -> Any:
    """``aw``, unless the caller's certificate is revoked first: then it is
    cancelled and the call ends with PERMISSION_DENIED."""
    if until_revoked is None:
        return await aw
    work = asyncio.ensure_future(aw)
    watcher = asyncio.ensure_future(until_revoked(context))
    try:
        await asyncio.wait({work, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not work.done():
            work.cancel()
    if work.done() and not work.cancelled():
        return work.result()
    await context.abort(grpc.StatusCode.PERMISSION_DENIED, watcher.result())


def _wrap(
    handler: grpc.RpcMethodHandler,
    check: Callable[[grpc.aio.ServicerContext], Awaitable[None]],
    until_revoked: Callable[[grpc.aio.ServicerContext], Awaitable[str]] | None = None,
) -> grpc.RpcMethodHandler:
    kinds = (
        ("unary_unary", grpc.unary_unary_rpc_method_handler),
        ("unary_stream", grpc.unary_stream_rpc_method_handler),
        ("stream_unary", grpc.stream_unary_rpc_method_handler),
        ("stream_stream", grpc.stream_stream_rpc_method_handler),
    )
    for attr, factory in kinds:
        behavior = getattr(handler, attr)
        if behavior is None:
            continue
        if inspect.isasyncgenfunction(behavior):

            async def gen_inner(request: Any, context: Any, _b: Any = behavior) -> Any:
                await check(context)
                items = _b(request, context)
                try:
                    while True:
                        try:
                            item = await _guarded(anext(items), context, until_revoked)
                        except StopAsyncIteration:
                            return
                        yield item
                finally:
                    await items.aclose()

            inner: Any = gen_inner
        else:

            async def plain_inner(request: Any, context: Any, _b: Any = behavior) -> Any:
                await check(context)
                result = _b(request, context)
                if inspect.isawaitable(result):
                    result = await _guarded(result, context, until_revoked)
                return result

            inner = plain_inner
        return factory(
            inner,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return handler
