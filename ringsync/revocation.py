"""Revoked certificates: the cluster CA's revocation list, kept by `pki revoke`,
honoured by every node.

``ringsync pki revoke --dir D --cert X.crt`` adds the certificate's serial
to ``D/crl.pem``, an X.509 certificate revocation list signed by the CA's
key, its CRL number one higher each time. The list is as public as
``ca.crt``: copy it beside ``ca.crt`` at every campus (a node reads ``crl``
of its ``[tls]``, by default ``crl.pem`` beside its ``ca``), or push it to
every node at once with ``ctl revocations --push``. Because the CA signed
it, it may travel any way: a node takes a list only if the CA's key signed
it and its number is not lower than the one it holds.

``RevocationWatch`` is the node's side: it re-reads the list when the file
changes (checked every second), refuses a list the CA did not sign (the
last good one stays, and the error shows in status), and answers whether a
certificate is revoked.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtensionOID

from ringsync.errors import TLSConfigError
from ringsync.pki import issued_by, load_ca, write_file

CRL_FILE = "crl.pem"
# How long a list says it is current; nodes use the newest they have either way.
NEXT_UPDATE_DAYS = 30


@dataclass(frozen=True)
class Revocations:
    """One CA-signed revocation list, as a node holds it."""

    number: int
    serials: frozenset[int]
    issued_at: float  # Unix s (the list's lastUpdate)


NONE = Revocations(0, frozenset(), 0.0)


def revoke(directory: Path, cert: Path | None = None,
           serial: str | None = None) -> tuple[Path, Revocations]:
    """Add ``cert``'s serial (or ``serial``, hex) to ``directory``'s CRL,
    signed by its CA key."""
    ca_cert, ca_key = load_ca(directory)
    if cert is not None:
        try:
            target = x509.load_pem_x509_certificate(cert.read_bytes())
        except (OSError, ValueError) as e:
            raise TLSConfigError(f"cannot read the certificate to revoke, {cert}: {e}") from None
        refused = issued_by(target, ca_cert)
        if refused:
            raise TLSConfigError(f"{cert} {refused}; only the cluster CA's own certificates "
                                 f"can be revoked by it")
        number = target.serial_number
    else:
        try:
            number = int(serial or "", 16)
        except ValueError:
            raise TLSConfigError(f"--serial {serial!r} is not a hexadecimal serial number "
                                 f"(as `pki renew` prints it)") from None
    path = directory / CRL_FILE
    held = read(path.read_bytes(), ca_cert) if path.exists() else NONE
    serials = held.serials | {number}
    write_file(path, _signed(ca_cert, ca_key, held.number + 1, serials))
    return path, read(path.read_bytes(), ca_cert)


def _signed(ca: x509.Certificate, key: ec.EllipticCurvePrivateKey, number: int,
            serials: frozenset[int]) -> bytes:
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(ca.subject).last_update(now)
               .next_update(now + dt.timedelta(days=NEXT_UPDATE_DAYS))
               .add_extension(x509.CRLNumber(number), critical=False))
    for serial in sorted(serials):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build())
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def read(pem: bytes, ca: x509.Certificate) -> Revocations:
    """The list in ``pem``, if ``ca``'s key signed it (else TLSConfigError)."""
    try:
        crl = x509.load_pem_x509_crl(pem)
    except ValueError as e:
        raise TLSConfigError(f"not a PEM certificate revocation list ({e})") from None
    public = ca.public_key()
    if crl.issuer != ca.subject or not isinstance(public, ec.EllipticCurvePublicKey) or (
            not crl.is_signature_valid(public)):
        raise TLSConfigError("the revocation list was not signed by the cluster CA's key; "
                             "make it with `ringsync pki revoke` at the CA")
    try:
        number = crl.extensions.get_extension_for_oid(ExtensionOID.CRL_NUMBER).value
        n = int(number.crl_number)  # type: ignore[attr-defined]
    except x509.ExtensionNotFound:
        n = 0
    return Revocations(n, frozenset(r.serial_number for r in crl),
                       crl.last_update_utc.timestamp())


@lru_cache(maxsize=512)
def serial_of(cert_pem: bytes) -> int | None:
    try:
        return x509.load_pem_x509_certificate(cert_pem).serial_number
    except ValueError:
        return None


class RevocationWatch:
    """A node's revocation list: read from ``path``, re-read when it changes."""

    def __init__(self, path: Path | None, ca_pem: bytes) -> None:
        self.path = path
        self.ca = x509.load_pem_x509_certificate(ca_pem)
        self.held = NONE
        self.error = ""
        self._seen: tuple[int, int] | None = None  # (mtime_ns, size) last read

    def refresh(self) -> bool:
        """Re-read the file if it changed; True when the list held changed."""
        if self.path is None:
            return False
        try:
            info = self.path.stat()
        except FileNotFoundError:
            return False
        except OSError as e:
            self.error = f"cannot read {self.path}: {e}"
            return False
        seen = (info.st_mtime_ns, info.st_size)
        if seen == self._seen:
            return False
        self._seen = seen
        try:
            return self.take(self.path.read_bytes(), str(self.path))
        except OSError as e:
            self.error = f"cannot read {self.path}: {e}"
            return False

    def take(self, pem: bytes, source: str) -> bool:
        """Hold the list in ``pem`` if the CA signed it and it is not older
        than the one held; True when it changed what is held."""
        try:
            new = read(pem, self.ca)
        except TLSConfigError as e:
            self.error = f"{source}: {e} (the list held before stays)"
            return False
        if new.number < self.held.number:
            self.error = (f"{source}: revocation list number {new.number} is older than "
                          f"number {self.held.number} held; not taken")
            return False
        self.error = ""
        changed = new != self.held
        self.held = new
        return changed

    def store(self, pem: bytes) -> Revocations:
        """Take a pushed list and write it to ``path`` (atomically), so that a
        restart keeps it. Raises TLSConfigError if it is not taken."""
        before = self.held
        if not self.take(pem, "the pushed list") and self.error:
            raise TLSConfigError(self.error)
        if self.path is not None and self.held != before:
            tmp = self.path.with_name(self.path.name + ".new")
            tmp.write_bytes(pem)
            os.replace(tmp, self.path)
            info = self.path.stat()
            self._seen = (info.st_mtime_ns, info.st_size)
        return self.held

    def revoked(self, cert_pem: bytes) -> bool:
        serial = serial_of(cert_pem)
        return serial is not None and serial in self.held.serials
