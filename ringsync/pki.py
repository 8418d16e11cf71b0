"""The cluster's certificate authority and the identities it issues.

Every certificate names one principal and one role in a URI SAN,
``ringsync://<role>/<name>``:

* ``node``     a campus node; name is the campus. It also carries the DNS SAN
               ``<campus>.node.ringsync`` that clients verify, so a client that
               dials chaohui's address talks to chaohui's node or fails.
* ``operator`` a person or script that may read status and trigger actions.
* ``viewer``   read-only status.
* ``etcd``     a member of the DR etcd cluster (``[dr] etcd_tls``): it carries
               the DNS SAN ``etcd.ringsync`` that clients verify, and is
               allowed no call of the node API.

Keys are ECDSA P-256; files are PEM. Private keys are written mode 0600
(also over an existing file), and a key file that others may read is
refused when it is loaded. Every ``create_ca`` makes a CA with a subject of
its own, and trust is anchored on the CA's key, not its name: a certificate
counts as the cluster's only if the CA's key signed it directly
(``issued_by``), so a foreign CA with the same name, or an intermediate CA
under the cluster's (which its ``pathlen:0`` forbids), is refused whether or
not the TLS stack checked.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import stat
from dataclasses import dataclass
from functools import lru_cache
from ipaddress import ip_address
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ringsync.errors import TLSConfigError

ROLES = ("node", "operator", "viewer", "etcd")
ETCD_SERVER_NAME = "etcd.ringsync"
URI_PREFIX = "ringsync://"
NODE_DNS_SUFFIX = ".node.ringsync"


@dataclass(frozen=True)
class Identity:
    role: str
    name: str

    def __str__(self) -> str:
        return f"{self.role}/{self.name}"


def node_server_name(campus: str) -> str:
    """The DNS name a client verifies on a campus node's certificate."""
    return f"{campus}{NODE_DNS_SUFFIX}"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def write_file(path: Path, data: bytes, private: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if private:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o600)  # an existing file keeps its mode otherwise
            fh.write(data)
    else:
        path.write_bytes(data)


def unique_ca_name(base: str = "ringsync cluster CA") -> str:
    """A CA subject no other ``pki init`` makes (a name is not an identity, but
    two clusters' CAs should not even look alike)."""
    return f"{base} {secrets.token_hex(6)}"


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def create_ca(directory: Path, name: str | None = None, days: int = 3650) -> Path:
    """Write ca.crt and ca.key into directory; refuse to overwrite an existing CA.
    ``name``: the CA's subject (default: "ringsync cluster CA" and a random tag)."""
    name = name or unique_ca_name()
    cert_path, key_path = directory / "ca.crt", directory / "ca.key"
    if cert_path.exists() or key_path.exists():
        raise TLSConfigError(
            f"{cert_path} already exists; a new CA would orphan every certificate it issued. "
            f"Use another --dir, or delete the old CA deliberately."
        )
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    write_file(key_path, _key_pem(key), private=True)
    write_file(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return cert_path


def load_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_path, key_path = directory / "ca.crt", directory / "ca.key"
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except FileNotFoundError as e:
        raise TLSConfigError(
            f"{e.filename} not found; create the CA first with "
            f"`ringsync pki init --dir {directory}`"
        ) from e
    except ValueError as e:
        raise TLSConfigError(f"{directory}: CA files are not valid PEM ({e})") from e
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TLSConfigError(f"{key_path}: expected an EC private key")
    return cert, key


def issue(
    directory: Path,
    role: str,
    name: str,
    hosts: tuple[str, ...] = (),
    days: int = 825,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    out_stem: str | None = None,
    force: bool = False,
    out_dir: Path | None = None,
) -> tuple[Path, Path]:
    """Issue a certificate for (role, name) signed by the CA in directory.

    Writes ``<out_stem or name>.crt`` and ``.key`` beside the CA and returns
    their paths (or into ``out_dir``); an existing pair is replaced only with
    ``force``.
    ``not_before``/``not_after`` override the validity window (tests use them
    to make expired certificates).
    """
    if role not in ROLES:
        raise TLSConfigError(f"role {role!r} is unknown; use one of {', '.join(ROLES)}")
    stem = out_stem or name
    where = out_dir or directory
    cert_path, key_path = where / f"{stem}.crt", where / f"{stem}.key"
    existing = [p for p in (cert_path, key_path) if p.exists()]
    if existing and not force:
        raise TLSConfigError(f"{existing[0]} already exists; replacing it cuts off whatever "
                             f"uses it. Pass --force to replace it deliberately")
    ca_cert, ca_key = load_ca(directory)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(f"{URI_PREFIX}{role}/{name}")]
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if role in ("node", "etcd"):
        sans.append(x509.DNSName(node_server_name(name) if role == "node" else ETCD_SERVER_NAME))
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        for host in hosts:
            try:
                sans.append(x509.IPAddress(ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, name),
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - dt.timedelta(minutes=5))
        .not_valid_after(not_after or now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    write_file(key_path, _key_pem(key), private=True)
    write_file(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def renew(directory: Path, cert: Path, days: int = 825) -> tuple[Path, Path]:
    """A new certificate and key for the identity and hosts of ``cert``, in
    its place (``<stem>.crt`` and ``<stem>.key`` beside it). A node watching
    those files takes them without a restart; revoke the old certificate
    once every user of it has the new one."""
    try:
        old = x509.load_pem_x509_certificate(cert.read_bytes())
    except (OSError, ValueError) as e:
        raise TLSConfigError(f"cannot read the certificate to renew, {cert}: {e}") from None
    ca_cert, _ = load_ca(directory)
    refused = issued_by(old, ca_cert)
    if refused:
        raise TLSConfigError(f"{cert} {refused} (the CA in {directory}); renew it at its own CA")
    identity = identity_from_pem(old.public_bytes(serialization.Encoding.PEM))
    if identity is None:
        raise TLSConfigError(f"{cert} carries no ringsync identity; issue a new one instead")
    sans = old.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    own_dns = node_server_name(identity.name)
    hosts = tuple([str(a) for a in sans.get_values_for_type(x509.IPAddress)]
                  + [d for d in sans.get_values_for_type(x509.DNSName)
                     if d not in (own_dns, ETCD_SERVER_NAME)])
    return issue(directory, identity.role, identity.name, hosts, days=days,
                 out_stem=cert.stem, force=True, out_dir=cert.parent)


@lru_cache(maxsize=256)
def identity_from_pem(pem: bytes) -> Identity | None:
    """The (role, name) a certificate was issued for, or None if it has none."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return None
    for uri in sans.get_values_for_type(x509.UniformResourceIdentifier):
        if uri.startswith(URI_PREFIX):
            role, _, name = uri[len(URI_PREFIX) :].partition("/")
            if role in ROLES and name:
                return Identity(role, name)
    return None


def read_tls_files(ca: Path, cert: Path, key: Path) -> tuple[bytes, bytes, bytes]:
    """Read and sanity-check a PEM triple, with an actionable error per file."""
    out: list[bytes] = []
    for label, path in (("CA certificate", ca), ("certificate", cert), ("private key", key)):
        try:
            data = path.read_bytes()
        except OSError as e:
            raise TLSConfigError(f"cannot read the {label} {path}: {e.strerror}") from e
        out.append(data)
    ca_pem, cert_pem, key_pem = out
    try:
        ca_cert = x509.load_pem_x509_certificate(ca_pem)
        leaf = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as e:
        raise TLSConfigError(f"{cert} or {ca} is not a PEM certificate ({e})") from e
    try:
        private = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as e:
        raise TLSConfigError(f"{key} is not an unencrypted PEM private key ({e})") from e
    if private.public_key().public_numbers() != leaf.public_key().public_numbers():  # type: ignore[union-attr]
        raise TLSConfigError(f"{key} does not belong to {cert}; pair each certificate with its key")
    refused = issued_by(leaf, ca_cert)
    if refused:
        raise TLSConfigError(f"{cert} {refused} (the CA: {ca}); issue it from the cluster CA "
                             f"(`ringsync pki issue --dir <the CA's directory>`)")
    loose = stat.S_IMODE(key.stat().st_mode) & 0o077
    if loose:
        raise TLSConfigError(f"{key} may be read by others (mode "
                             f"{stat.S_IMODE(key.stat().st_mode):04o}); a private key must "
                             f"be its owner's only: chmod 600 {key}")
    if leaf.not_valid_after_utc < _now():
        raise TLSConfigError(
            f"{cert} expired on {leaf.not_valid_after_utc:%Y-%m-%d}; issue a new one with "
            f"`ringsync pki issue`"
        )
    return ca_pem, cert_pem, key_pem


def issued_by(cert: x509.Certificate, ca: x509.Certificate) -> str:
    """Why ``cert`` is not one the cluster CA ``ca`` issued ("" when it is):
    its signature must verify with the CA's key, directly (no intermediate),
    and it must not be a CA itself."""
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return "was not signed by the cluster CA's key"
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is not None and constraints.ca:
        return "is a CA certificate itself; the cluster CA (pathlen 0) issues only end certificates"
    return ""


@lru_cache(maxsize=256)
def issued_by_pem(cert_pem: bytes, ca_pem: bytes) -> str:
    """``issued_by`` over PEM (a peer's certificate, on every call: cached)."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        ca = x509.load_pem_x509_certificate(ca_pem)
    except ValueError:
        return "is not a PEM certificate"
    return issued_by(cert, ca)
