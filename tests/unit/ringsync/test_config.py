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


def _node_with(tmp_path: Path, database: str, extra: str = "", cluster_extra: str = "") -> Path:
    cluster = write_cluster(tmp_path)
    cluster.write_text(cluster.read_text() + cluster_extra)
    for name in ("ca.crt", "a.crt", "a.key"):
        (tmp_path / name).write_text("x")
    node = tmp_path / "node.toml"
    node.write_text(
        f'campus = "a"\ncluster_file = "cluster.toml"\n[database]\n{database}\n'
        f'[tls]\nca = "ca.crt"\ncert = "a.crt"\nkey = "a.key"\n{extra}'
    )
    return node


def test_sync_durability_is_for_postgresql_only(tmp_path: Path) -> None:
    node = _node_with(tmp_path, 'engine = "sqlite"\npath = "a.db"\ndurability = "sync"')
    with pytest.raises(ConfigError, match="SQLite campuses are asynchronous only"):
        load_node(node)
    node = _node_with(tmp_path, 'engine = "postgres"\ndsn = "host=x"\ndurability = "sync"\n'
                                'sync_policy = "strict"')
    assert load_node(node).database.sync_policy == "strict"
    node = _node_with(tmp_path, 'engine = "postgres"\ndsn = "host=x"\ndurability = "eventual"')
    with pytest.raises(ConfigError, match="database.durability must be one of"):
        load_node(node)


def test_a_mariadb_campus_names_its_server_with_a_mysql_url(tmp_path: Path) -> None:
    node = _node_with(tmp_path, 'engine = "mariadb"\ndsn = "mysql://ring@10.0.0.5:3307/lis"')
    assert load_node(node).database.dsn == "mysql://ring@10.0.0.5:3307/lis"
    node = _node_with(tmp_path, 'engine = "mariadb"\ndsn = "host=x dbname=lis"')
    with pytest.raises(ConfigError, match='does not suit engine = "mariadb"'):
        load_node(node)
    node = _node_with(tmp_path, 'engine = "postgres"\ndsn = "mysql://ring:s3cret@x/lis"')
    with pytest.raises(ConfigError, match='does not suit engine = "postgres"') as caught:
        load_node(node)
    assert "s3cret" not in str(caught.value)  # the password is never printed
    node = _node_with(tmp_path, 'engine = "mariadb"\ndsn = "mysql://r@x/lis"\n'
                                'durability = "sync"')
    with pytest.raises(ConfigError, match="MariaDB campuses are asynchronous only"):
        load_node(node)
    secret = tmp_path / "pw"
    secret.write_text("p@ss/w:rd\n")
    secret.chmod(0o600)
    node = _node_with(tmp_path, 'engine = "mariadb"\ndsn = "mysql://ring@x:3307/lis"\n'
                                'password_file = "pw"')
    from ringsync.config import connect_dsn

    url = connect_dsn(load_node(node).database)
    from urllib.parse import unquote, urlsplit

    assert unquote(urlsplit(url).password or "") == "p@ss/w:rd"
    assert urlsplit(url).port == 3307 and urlsplit(url).path == "/lis"


def test_node_peers_and_etcd_overrides_are_checked(tmp_path: Path) -> None:
    sqlite = 'engine = "sqlite"\npath = "a.db"'
    dr = '\n[dr]\netcd = ["127.0.0.1:2379"]\n'
    node = load_node(_node_with(tmp_path, sqlite, '[peers]\nb = "127.0.0.1:9002"\n'
                                '[dr]\netcd = ["127.0.0.1:9100"]\n', dr))
    assert node.peer_address("b") == "127.0.0.1:9002"
    assert node.dr.etcd == ("127.0.0.1:9100",) and node.cluster.dr.etcd == ("127.0.0.1:2379",)
    with pytest.raises(ConfigError, match="peers.zz: not another campus"):
        load_node(_node_with(tmp_path, sqlite, '[peers]\nzz = "127.0.0.1:9002"\n', dr))
    with pytest.raises(ConfigError, match="takes only `etcd`"):
        load_node(_node_with(tmp_path, sqlite, '[dr]\nfailover_after = 3\n', dr))
    with pytest.raises(ConfigError, match="has no \\[dr\\] etcd"):
        load_node(_node_with(tmp_path, sqlite, '[dr]\netcd = ["127.0.0.1:9100"]\n'))


def test_fast_apply_is_a_boolean_on_by_default(tmp_path: Path) -> None:
    sqlite = 'engine = "sqlite"\npath = "a.db"'
    assert load_node(_node_with(tmp_path, sqlite)).replication.fast_apply is True
    off = load_node(_node_with(tmp_path, sqlite, "[replication]\nfast_apply = false\n"))
    assert off.replication.fast_apply is False
    for wrong in ('"no"', "0"):
        with pytest.raises(ConfigError, match="replication.fast_apply must be true or false"):
            load_node(_node_with(tmp_path, sqlite, f"[replication]\nfast_apply = {wrong}\n"))
