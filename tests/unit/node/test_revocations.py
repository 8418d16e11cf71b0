"""node.revocations: the alerts a node raises about its list and its own certificate."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from node.revocations import RevocationsRefused, publish, revocation_alerts
from ringsync import pki
from ringsync.client import Credentials
from ringsync.config import TLSFiles
from ringsync.revocation import RevocationWatch, revoke


def own(ca, days: float) -> Credentials:
    now = dt.datetime.now(dt.UTC)
    cert, key = pki.issue(ca, "node", "a", not_after=now + dt.timedelta(days=days), force=True)
    return Credentials(TLSFiles(ca / "ca.crt", cert, key))


def test_alerts_for_a_refused_list_an_own_revoked_certificate_and_a_near_expiry(tmp_path):
    ca = tmp_path / "ca"
    pki.create_ca(ca)
    watch = RevocationWatch(tmp_path / "node" / "crl.pem", (ca / "ca.crt").read_bytes())
    assert revocation_alerts(watch, own(ca, 90)) == []
    soon = own(ca, 12)
    assert "expires in 12.0 days" in revocation_alerts(watch, soon, time.time() + 60)[0]
    assert "has expired" in revocation_alerts(watch, soon, time.time() + 13 * 86400)[0]
    creds = own(ca, 90)
    with pytest.raises(RevocationsRefused, match="not a PEM"):
        publish(watch, b"junk", creds)
    assert "revocation list: the pushed list" in revocation_alerts(watch, creds)[0]
    (tmp_path / "node").mkdir()
    revoke(ca, creds.files.cert)
    status = publish(watch, (ca / "crl.pem").read_bytes(), creds)
    assert (status.number, status.revoked, status.error) == (1, 1, "")
    (alert,) = revocation_alerts(watch, creds)
    assert "own certificate is on the revocation list" in alert


def test_renewed_files_are_taken_and_a_bad_pair_is_not(tmp_path):
    ca = tmp_path / "ca"
    pki.create_ca(ca)
    creds = own(ca, 90)
    first, generation = creds.cert, creds.generation
    assert not creds.refresh()  # nothing changed
    pki.renew(ca, creds.files.cert, days=400)
    assert creds.refresh() and creds.cert != first and creds.generation == generation + 1
    other_key = pki.issue(ca, "viewer", "v")[1]
    creds.files.key.write_bytes(other_key.read_bytes())  # a key of another certificate
    assert not creds.refresh() and "does not belong" in creds.error
    assert "were not taken" in revocation_alerts(
        RevocationWatch(None, creds.ca), creds)[0]
