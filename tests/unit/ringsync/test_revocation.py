"""ringsync.revocation: the CA-signed revocation list, and a node's watch over it."""

from __future__ import annotations

import os

import pytest

from ringsync import pki
from ringsync.errors import TLSConfigError
from ringsync.revocation import CRL_FILE, RevocationWatch, revoke, serial_of


@pytest.fixture
def ca(tmp_path):
    pki.create_ca(tmp_path / "ca")
    return tmp_path / "ca"


def test_each_revocation_makes_a_signed_list_one_number_higher(ca):
    a, _ = pki.issue(ca, "operator", "a")
    b, _ = pki.issue(ca, "viewer", "b")
    path, first = revoke(ca, a)
    assert path == ca / CRL_FILE and first.number == 1
    assert first.serials == {serial_of(a.read_bytes())}
    _, second = revoke(ca, b)
    assert second.number == 2 and len(second.serials) == 2


def test_a_list_or_a_certificate_of_another_ca_is_refused(ca, tmp_path):
    pki.create_ca(tmp_path / "other", name=pki.x509.load_pem_x509_certificate(
        (ca / "ca.crt").read_bytes()).subject.rfc4514_string().removeprefix("CN="))
    theirs, _ = pki.issue(tmp_path / "other", "operator", "x")
    with pytest.raises(TLSConfigError, match="only the cluster CA's own certificates"):
        revoke(ca, theirs)
    revoke(tmp_path / "other", theirs)  # a list signed by the look-alike CA
    watch = RevocationWatch(ca / CRL_FILE, (ca / "ca.crt").read_bytes())
    assert not watch.take((tmp_path / "other" / CRL_FILE).read_bytes(), "pushed")
    assert "not signed by the cluster CA's key" in watch.error and watch.held.number == 0


def test_a_watch_follows_the_file_and_never_goes_back_to_an_older_list(ca):
    a, _ = pki.issue(ca, "operator", "a")
    b, _ = pki.issue(ca, "operator", "b")
    watch = RevocationWatch(ca / CRL_FILE, (ca / "ca.crt").read_bytes())
    assert not watch.refresh() and not watch.revoked(a.read_bytes())  # no list yet
    revoke(ca, a)
    old = (ca / CRL_FILE).read_bytes()
    assert watch.refresh() and watch.revoked(a.read_bytes()) and not watch.revoked(
        b.read_bytes())
    assert not watch.refresh()  # unchanged: not read again
    revoke(ca, b)
    os.utime(ca / CRL_FILE, ns=(1, 1))  # even with an old mtime, a changed size is seen
    assert watch.refresh() and watch.held.number == 2 and watch.revoked(b.read_bytes())
    with pytest.raises(TLSConfigError, match="older than number 2"):
        watch.store(old)
    assert watch.held.number == 2 and (ca / CRL_FILE).read_bytes() != old
    watch.take(b"not a list", "pushed")
    assert "not a PEM certificate revocation list" in watch.error and watch.held.number == 2


def test_a_pushed_list_is_kept_in_the_file(ca, tmp_path):
    a, _ = pki.issue(ca, "operator", "a")
    revoke(ca, a)
    node_copy = tmp_path / "node" / "crl.pem"
    node_copy.parent.mkdir()
    watch = RevocationWatch(node_copy, (ca / "ca.crt").read_bytes())
    held = watch.store((ca / CRL_FILE).read_bytes())
    assert held.number == 1 and node_copy.read_bytes() == (ca / CRL_FILE).read_bytes()
    again = RevocationWatch(node_copy, (ca / "ca.crt").read_bytes())  # a restart
    assert again.refresh() and again.revoked(a.read_bytes())
