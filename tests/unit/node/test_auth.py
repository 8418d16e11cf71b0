"""node.auth: who may call what, decided from the identity in the caller's
certificate (real certificates from ringsync.pki; the interceptor itself is
exercised over real gRPC in test_servicers_grpc.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.auth import POLICY, decide, peer_identity
from ringsync import pki
from ringsync.pki import Identity

RING = ("north", "south")
OPERATOR = Identity("operator", "alice")
VIEWER = Identity("viewer", "bob")
NODE = Identity("node", "north")

READ_METHODS = ("GetStatus", "WatchStatus", "Checksum", "ListConflicts", "ListDeadLetters",
                "GetRoutes", "WatchRoutes")
OPERATOR_METHODS = ("ResolveConflict", "ActOnDeadLetter")


@pytest.mark.parametrize("method", READ_METHODS)
@pytest.mark.parametrize("identity", [OPERATOR, VIEWER, NODE], ids=str)
def test_every_role_may_read(method: str, identity: Identity) -> None:
    assert decide(f"/ringsync.v1.Control/{method}", identity, RING) is None


@pytest.mark.parametrize("method", OPERATOR_METHODS)
def test_only_operators_may_act(method: str) -> None:
    full = f"/ringsync.v1.Control/{method}"
    assert decide(full, OPERATOR, RING) is None
    for identity in (VIEWER, NODE):
        reason = decide(full, identity, RING)
        assert reason == (f"{identity} may not call {full}; it needs a certificate with "
                          f"role operator")


@pytest.mark.parametrize("method", ["Replicate", "Snapshot"])
def test_only_ring_nodes_may_replicate(method: str) -> None:
    full = f"/ringsync.v1.Replication/{method}"
    assert decide(full, NODE, RING) is None
    assert decide(full, OPERATOR, RING) == (
        f"operator/alice may not call {full}; it needs a certificate with role node")
    assert decide(full, Identity("node", "rogue"), RING) == (
        "campus 'rogue' is not in this cluster's ring nor one of its leaves")


def test_health_and_reflection_are_open_to_every_role() -> None:
    for method in ("/grpc.health.v1.Health/Check",
                   "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                   "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"):
        for identity in (OPERATOR, VIEWER, NODE):
            assert decide(method, identity, RING) is None


def test_a_method_not_in_the_policy_is_denied_to_everyone() -> None:
    for method in ("/ringsync.v1.Control/DropEverything", "/other.Service/Call"):
        assert decide(method, OPERATOR, RING) == f"{method} is not open to any caller"


def test_a_certificate_without_an_identity_is_denied_first() -> None:
    assert decide("/ringsync.v1.Control/GetStatus", None, RING) == (
        "the client certificate carries no ringsync identity")
    assert decide("/nowhere/", None, RING) == (
        "the client certificate carries no ringsync identity")


def test_the_longest_matching_prefix_decides() -> None:
    """A prefix of a listed method (GetStatusX starts with GetStatus) takes its rule."""
    assert decide("/ringsync.v1.Control/GetStatusX", VIEWER, RING) is None
    assert "/ringsync.v1.Replication/" in POLICY
    assert decide("/ringsync.v1.Replication/Anything", NODE, RING) is None


def test_a_node_outside_the_ring_may_still_read() -> None:
    """Ring membership is checked for replication's sake only after the role."""
    rogue = Identity("node", "rogue")
    assert decide("/ringsync.v1.Control/GetStatus", rogue, RING) == (
        "campus 'rogue' is not in this cluster's ring nor one of its leaves")


class _AuthContext:
    """Just what peer_identity reads from a servicer context."""

    def __init__(self, auth: dict[str, list[bytes]]) -> None:
        self.auth = auth

    def auth_context(self) -> dict[str, list[bytes]]:
        return self.auth


def test_peer_identity_reads_the_certificate_grpc_hands_over(tmp_path: Path) -> None:
    pki.create_ca(tmp_path)
    cert, _ = pki.issue(tmp_path, "operator", "alice")
    context = _AuthContext({"x509_pem_cert": [cert.read_bytes()]})
    assert peer_identity(context) == Identity("operator", "alice")  # type: ignore[arg-type]


def test_peer_identity_is_none_without_a_certificate_or_an_identity(tmp_path: Path) -> None:
    assert peer_identity(_AuthContext({})) is None  # type: ignore[arg-type]
    ca_cert = pki.create_ca(tmp_path)  # a certificate, but issued for no role and name
    context = _AuthContext({"x509_pem_cert": [ca_cert.read_bytes()]})
    assert peer_identity(context) is None  # type: ignore[arg-type]
