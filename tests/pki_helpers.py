"""Certificates ringsync's own pki never makes, for tests of what a node refuses."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def intermediate_issued(ca_dir: Path, out: Path) -> tuple[Path, Path]:
    """An operator certificate issued through a CA:TRUE intermediate under the
    cluster CA (whose pathlen:0 forbids one): what an attacker holding a
    wrongly issued CA certificate would make."""
    ca = x509.load_pem_x509_certificate((ca_dir / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), None)
    now = dt.datetime.now(dt.UTC)

    def cert(name: str, key, issuer_name, signer, is_ca: bool, uri: str | None = None):
        b = (x509.CertificateBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
             .issuer_name(issuer_name).public_key(key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(now - dt.timedelta(minutes=5))
             .not_valid_after(now + dt.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True))
        if uri:
            b = b.add_extension(x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(uri)]), critical=False)
        return b.sign(signer, hashes.SHA256())

    mid_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(
        ec.SECP256R1())
    mid = cert("intermediate", mid_key, ca.subject, ca_key, True)
    leaf = cert("mallory", leaf_key, mid.subject, mid_key, False, "ringsync://operator/mallory")
    out.mkdir(parents=True, exist_ok=True)
    crt, key = out / "mallory.crt", out / "mallory.key"
    crt.write_bytes(leaf.public_bytes(serialization.Encoding.PEM)
                    + mid.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(leaf_key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key.chmod(0o600)
    return crt, key
