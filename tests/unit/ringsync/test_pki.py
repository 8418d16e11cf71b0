"""ringsync.pki: trust anchored on the CA's key, key files kept private, no silent overwrite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography import x509

from ringsync import pki
from ringsync.errors import TLSConfigError
from tests.pki_helpers import intermediate_issued


def subject(cert: Path) -> x509.Name:
    return x509.load_pem_x509_certificate(cert.read_bytes()).subject


def test_every_ca_has_a_subject_of_its_own(tmp_path):
    a, b = pki.create_ca(tmp_path / "a"), pki.create_ca(tmp_path / "b")
    assert subject(a) != subject(b)
    assert subject(a).rfc4514_string().startswith("CN=ringsync cluster CA ")


def test_a_certificate_is_the_clusters_only_if_the_ca_key_signed_it(tmp_path):
    ours = pki.create_ca(tmp_path / "ours", name="ringsync cluster CA")
    pki.create_ca(tmp_path / "theirs", name="ringsync cluster CA")  # the same name
    cert, key = pki.issue(tmp_path / "theirs", "node", "chaohui")
    with pytest.raises(TLSConfigError, match="was not signed by the cluster CA's key"):
        pki.read_tls_files(ours, cert, key)
    good_cert, good_key = pki.issue(tmp_path / "ours", "node", "chaohui")
    assert pki.read_tls_files(ours, good_cert, good_key)[1] == good_cert.read_bytes()
    assert pki.issued_by_pem(cert.read_bytes(), ours.read_bytes()) != ""
    assert pki.issued_by_pem(good_cert.read_bytes(), ours.read_bytes()) == ""


def test_a_certificate_issued_through_an_intermediate_is_refused(tmp_path):
    ca = pki.create_ca(tmp_path / "ca")
    cert, key = intermediate_issued(tmp_path / "ca", tmp_path / "mallory")
    with pytest.raises(TLSConfigError, match="was not signed by the cluster CA's key"):
        pki.read_tls_files(ca, cert, key)


def test_a_ca_certificate_is_not_an_identity(tmp_path):
    ca = pki.create_ca(tmp_path / "ca")
    assert "is a CA certificate itself" in pki.issued_by_pem(ca.read_bytes(), ca.read_bytes())


def test_a_key_others_may_read_is_refused_with_the_fix(tmp_path):
    ca = pki.create_ca(tmp_path / "ca")
    cert, key = pki.issue(tmp_path / "ca", "operator", "oncall")
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    key.chmod(0o644)
    with pytest.raises(TLSConfigError, match=f"chmod 600 {key}"):
        pki.read_tls_files(ca, cert, key)


def test_issue_refuses_to_overwrite_unless_forced_and_always_writes_the_key_0600(tmp_path):
    pki.create_ca(tmp_path / "ca")
    cert, key = pki.issue(tmp_path / "ca", "viewer", "dashboard")
    before = cert.read_bytes()
    with pytest.raises(TLSConfigError, match="already exists.*--force"):
        pki.issue(tmp_path / "ca", "viewer", "dashboard")
    assert cert.read_bytes() == before
    key.chmod(0o644)  # loosened by hand: a forced issue must not keep that
    pki.issue(tmp_path / "ca", "viewer", "dashboard", force=True)
    assert cert.read_bytes() != before
    assert os.stat(key).st_mode & 0o777 == 0o600


def test_renew_keeps_the_identity_and_hosts_in_place_with_a_new_key(tmp_path):
    ca = pki.create_ca(tmp_path / "ca")
    cert, key = pki.issue(tmp_path / "ca", "node", "chaohui", hosts=("127.0.0.1", "lis.local"))
    old_cert, old_key = cert.read_bytes(), key.read_bytes()
    new_cert, new_key = pki.renew(tmp_path / "ca", cert, days=30)
    assert (new_cert, new_key) == (cert, key)
    assert cert.read_bytes() != old_cert and key.read_bytes() != old_key
    assert pki.identity_from_pem(cert.read_bytes()) == pki.Identity("node", "chaohui")
    sans = x509.load_pem_x509_certificate(cert.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert {str(a) for a in sans.get_values_for_type(x509.IPAddress)} == {"127.0.0.1"}
    assert set(sans.get_values_for_type(x509.DNSName)) == {"chaohui.node.ringsync", "lis.local"}
    assert pki.read_tls_files(ca, cert, key)
