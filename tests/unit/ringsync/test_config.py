"""Config errors are caught at load time with a message that says what to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from ringsync.config import load_cluster, load_node
from ringsync.errors import ConfigError

CLUSTER = """
[cluster]
name = "t"
ring = {ring}
tables = ["patients"]

[[campus]]
name = "a"
address = "127.0.0.1:7001"

[[campus]]
name = "b"
address = "{b_address}"
"""


def write_cluster(tmp_path: Path, ring: str = '["a", "b"]', b_address: str = "127.0.0.1:7002"):
    p = tmp_path / "cluster.toml"
    p.write_text(CLUSTER.format(ring=ring, b_address=b_address))
    return p


def test_valid_cluster_loads(tmp_path: Path) -> None:
    c = load_cluster(write_cluster(tmp_path))
    assert c.ring == ("a", "b") and c.address_of("b") == "127.0.0.1:7002"
    assert c.successors("a") == ("b",)


@pytest.mark.parametrize("ring,b_address,message", [
    ('["a", "c"]', "127.0.0.1:7002", "'b' is not in cluster.ring"),
    ('["a", "b", "c"]', "127.0.0.1:7002", "'c' is in cluster.ring but has no"),
    ('["a", "a"]', "127.0.0.1:7002", "names a campus twice"),
    ('["a", "b"]', "nowhere", "must be host:port"),
    ('["A!", "b"]', "127.0.0.1:7002", "is invalid"),
])
def test_inconsistent_cluster_is_refused(tmp_path, ring, b_address, message) -> None:
    with pytest.raises(ConfigError, match=message):
        load_cluster(write_cluster(tmp_path, ring, b_address))


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_cluster(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[cluster\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_cluster(bad)


def test_node_with_missing_certificate_names_the_file(tmp_path: Path) -> None:
    write_cluster(tmp_path)
    node = tmp_path / "node.toml"
    node.write_text(
        'campus = "a"\ncluster_file = "cluster.toml"\n[database]\nengine = "sqlite"\n'
        'path = "a.db"\n[tls]\nca = "ca.crt"\ncert = "a.crt"\nkey = "a.key"\n'
    )
    with pytest.raises(ConfigError, match=r"tls.ca = .*ca.crt does not exist.*ringsync pki"):
        load_node(node)


def test_node_of_unknown_campus_is_refused(tmp_path: Path) -> None:
    write_cluster(tmp_path)
    node = tmp_path / "node.toml"
    node.write_text('campus = "zz"\ncluster_file = "cluster.toml"\n')
    with pytest.raises(ConfigError, match="'zz' is not in the ring"):
        load_node(node)


def test_unknown_tuning_key_is_refused(tmp_path: Path) -> None:
    write_cluster(tmp_path)
    for name in ("ca.crt", "a.crt", "a.key"):
        (tmp_path / name).write_text("x")
    node = tmp_path / "node.toml"
    node.write_text(
        'campus = "a"\ncluster_file = "cluster.toml"\n[database]\nengine = "sqlite"\n'
        'path = "a.db"\n[tls]\nca = "ca.crt"\ncert = "a.crt"\nkey = "a.key"\n'
        "[replication]\nheal_after = 3\n"
    )
    with pytest.raises(ConfigError, match="unknown key replication.heal_after"):
        load_node(node)
