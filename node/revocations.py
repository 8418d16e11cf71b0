"""The node's revocation list (ringsync.revocation): kept current, pushed, shown.

The list is read at start from ``[tls] crl`` (default ``crl.pem`` beside
``ca``), re-read every second when the file changes (``refresh_loop``), and
taken from an operator's ``Control.PublishRevocations`` (``publish``: the
CA must have signed it, and it must not be older than the one held; it is
then written to the file, so a restart keeps it). node.auth refuses every
certificate on it and ends streams opened with one. Status shows the list's
number and size, and alerts when a list was refused, when this node's own
certificate is on it, when that certificate expires within
EXPIRY_WARN_DAYS (``ringsync pki renew``: the node takes the renewed files
without a restart, ringsync.client.Credentials), and when renewed files
were not taken.
"""

from __future__ import annotations

import asyncio
import time
from functools import lru_cache

from cryptography import x509

from ringsync.client import Credentials
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


@lru_cache(maxsize=8)
def expires_at(cert_pem: bytes) -> float:
    return x509.load_pem_x509_certificate(cert_pem).not_valid_after_utc.timestamp()


def publish(watch: RevocationWatch, pem: bytes, own: Credentials) -> cpb.RevocationStatus:
    """Take a pushed list (worker thread: it writes the file)."""
    try:
        watch.store(pem)
    except (TLSConfigError, OSError) as e:
        raise RevocationsRefused(f"revocation list not taken: {e}") from None
    return revocation_status(watch, own)


def revocation_status(watch: RevocationWatch, own: Credentials) -> cpb.RevocationStatus:
    held = watch.held
    return cpb.RevocationStatus(number=held.number, revoked=len(held.serials),
                                issued_at=held.issued_at, error=watch.error,
                                certificate_expires_at=expires_at(own.cert))


def revocation_alerts(watch: RevocationWatch, own: Credentials,
                      now: float | None = None) -> list[str]:
    now = time.time() if now is None else now
    out = []
    if watch.error:
        out.append(f"revocation list: {watch.error}")
    if own.error:
        out.append(f"this node's certificate files changed but were not taken: {own.error}")
    if watch.revoked(own.cert):
        out.append("this node's own certificate is on the revocation list: its peers refuse "
                   "it; renew it (`ringsync pki renew --cert <its .crt>`): the node takes "
                   "the new one without a restart")
    left = expires_at(own.cert) - now
    if left < EXPIRY_WARN_DAYS * 86400:
        when = "has expired" if left <= 0 else f"expires in {left / 86400:.1f} days"
        out.append(f"this node's certificate {when}; renew it (`ringsync pki renew --dir "
                   f"<the CA's directory> --cert {own.files.cert}`): the node takes it "
                   f"without a restart")
    return out
