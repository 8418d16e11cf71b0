"""The node's revocation list (ringsync.revocation): kept current, pushed, shown.

The list is read at start from ``[tls] crl`` (default ``crl.pem`` beside
``ca``), re-read every second when the file changes (``refresh_loop``), and
taken from an operator's ``Control.PublishRevocations`` (``publish``: the
CA must have signed it, and it must not be older than the one held; it is
then written to the file, so a restart keeps it). node.auth refuses every
certificate on it and ends streams opened with one. Status shows the list's
number and size, and alerts when a list was refused, when this node's own
certificate is on it, and when that certificate expires within
EXPIRY_WARN_DAYS (renew it with ``ringsync pki issue --force``).
"""

from __future__ import annotations

import asyncio
import time

from ringsync.errors import RingsyncError, TLSConfigError
from ringsync.revocation import RevocationWatch
from ringsync.v1 import control_pb2 as cpb

REFRESH_SECONDS = 1.0
EXPIRY_WARN_DAYS = 30


class RevocationsRefused(RingsyncError):
    """A pushed revocation list this node does not take (the reason says why)."""

    grpc_code = "INVALID_ARGUMENT"


async def refresh_loop(watch: RevocationWatch) -> None:
    while True:
        await asyncio.to_thread(watch.refresh)
        await asyncio.sleep(REFRESH_SECONDS)


def publish(watch: RevocationWatch, pem: bytes, expires_at: float) -> cpb.RevocationStatus:
    """Take a pushed list (worker thread: it writes the file)."""
    try:
        watch.store(pem)
    except (TLSConfigError, OSError) as e:
        raise RevocationsRefused(f"revocation list not taken: {e}") from None
    return revocation_status(watch, expires_at)


def revocation_status(watch: RevocationWatch, expires_at: float) -> cpb.RevocationStatus:
    held = watch.held
    return cpb.RevocationStatus(number=held.number, revoked=len(held.serials),
                                issued_at=held.issued_at, error=watch.error,
                                certificate_expires_at=expires_at)


def revocation_alerts(watch: RevocationWatch, own_cert: bytes, expires_at: float,
                      now: float | None = None) -> list[str]:
    now = time.time() if now is None else now
    out = []
    if watch.error:
        out.append(f"revocation list: {watch.error}")
    if watch.revoked(own_cert):
        out.append("this node's own certificate is on the revocation list: its peers refuse "
                   "it; issue it a new one (`ringsync pki issue --force`) and restart it")
    left = expires_at - now
    if left < EXPIRY_WARN_DAYS * 86400:
        when = "has expired" if left <= 0 else f"expires in {left / 86400:.1f} days"
        out.append(f"this node's certificate {when}; renew it (`ringsync pki issue --force "
                   f"--role node --name <campus>`) and restart the node")
    return out
