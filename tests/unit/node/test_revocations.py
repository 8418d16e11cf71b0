"""node.revocations: the alerts a node raises about its list and its own certificate."""

from __future__ import annotations

import pytest

from node.revocations import RevocationsRefused, publish, revocation_alerts
from ringsync import pki
from ringsync.revocation import RevocationWatch, revoke

DAY = 86400.0


def test_alerts_for_a_refused_list_an_own_revoked_certificate_and_a_near_expiry(tmp_path):
    ca = tmp_path / "ca"
    pki.create_ca(ca)
    own, _ = pki.issue(ca, "node", "a")
    watch = RevocationWatch(tmp_path / "node" / "crl.pem", (ca / "ca.crt").read_bytes())
    now = 1_000_000.0
    assert revocation_alerts(watch, own.read_bytes(), now + 90 * DAY, now) == []
    assert "expires in 12.0 days" in revocation_alerts(watch, own.read_bytes(),
                                                       now + 12 * DAY, now)[0]
    assert "has expired" in revocation_alerts(watch, own.read_bytes(), now - 1, now)[0]
    with pytest.raises(RevocationsRefused, match="not a PEM"):
        publish(watch, b"junk", now + 90 * DAY)
    assert "revocation list: the pushed list" in revocation_alerts(
        watch, own.read_bytes(), now + 90 * DAY, now)[0]
    (tmp_path / "node").mkdir()
    revoke(ca, own)
    status = publish(watch, (ca / "crl.pem").read_bytes(), now + 90 * DAY)
    assert (status.number, status.revoked, status.error) == (1, 1, "")
    (alert,) = revocation_alerts(watch, own.read_bytes(), now + 90 * DAY, now)
    assert "own certificate is on the revocation list" in alert
