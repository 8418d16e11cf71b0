"""[[leaf]] entries in cluster.toml: what is accepted, and what is refused with which fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from ringsync.config import load_cluster, load_node
from ringsync.errors import ConfigError
from tests.unit.configs import cluster_toml, node_toml

RING = ("chaohui", "fuyang")


def write_cluster(tmp_path: Path, leaf: str) -> Path:
    path = tmp_path / "cluster.toml"
    path.write_text(cluster_toml(RING, leaf))
    return path


def test_a_leaf_with_its_route_is_read_whole(tmp_path):
    cluster = load_cluster(write_cluster(tmp_path, '''
[[leaf]]
name = "fy-sat"
address = "127.0.0.1:7100"
parents = ["fuyang", "chaohui"]
tables = ["lab_orders", "patients"]
retention_hours = 12
[leaf.filter]
patients = 'home_campus == "fuyang"'
'''))
    (leaf,) = cluster.leaves
    assert leaf.parents == ("fuyang", "chaohui")
    assert leaf.tables == ("patients", "lab_orders")  # in cluster.tables order
    assert leaf.filters == {"patients": 'home_campus == "fuyang"'}
    assert (leaf.uploads, leaf.retention_hours) == (True, 12.0)
    assert cluster.origins == (*RING, "fy-sat")
    assert cluster.address_of("fy-sat") == "127.0.0.1:7100"
    assert [x.name for x in cluster.leaves_of("chaohui")] == ["fy-sat"]
    assert cluster.leaf("chaohui") is None


def test_a_leaf_route_can_have_child_tables_follow_their_parent_row(tmp_path):
    cluster = load_cluster(write_cluster(tmp_path, '''
[[leaf]]
name = "fy-sat"
address = "127.0.0.1:7100"
parents = ["fuyang"]
tables = ["patients", "lab_orders", "specimens"]
[leaf.filter]
patients = 'home_campus == "fuyang"'
[leaf.follows]
lab_orders = { parent = "patients", by = "patient_id" }
specimens = { parent = "lab_orders", by = ["order_id"] }
'''))
    (leaf,) = cluster.leaves
    assert {t: (f.parent, f.by) for t, f in leaf.follows.items()} == {
        "lab_orders": ("patients", ("patient_id",)), "specimens": ("lab_orders", ("order_id",))}
    with pytest.raises(ConfigError, match="'lab_results' follows a parent, but it is not one"):
        load_cluster(write_cluster(tmp_path, '''
[[leaf]]
name = "fy-sat"
address = "127.0.0.1:7100"
parents = ["fuyang"]
tables = ["patients"]
[leaf.follows]
lab_results = { parent = "patients", by = "patient_id" }
'''))


def test_a_leaf_defaults_to_every_table_taken_whole(tmp_path):
    cluster = load_cluster(write_cluster(tmp_path, '''
[[leaf]]
name = "sat"
address = "127.0.0.1:7100"
parents = ["chaohui"]
'''))
    (leaf,) = cluster.leaves
    assert leaf.tables == cluster.tables and leaf.filters == {} and leaf.uploads


@pytest.mark.parametrize(("entry", "says"), [
    ('name = "chaohui"\naddress = "127.0.0.1:7100"\nparents = ["fuyang"]', "also in cluster.ring"),
    ('name = "sat"\nparents = ["fuyang"]', "needs `address`"),
    ('name = "sat"\naddress = "127.0.0.1:7100"', "parents must list"),
    ('name = "sat"\naddress = "127.0.0.1:7100"\nparents = ["binjiang"]', "not in cluster.ring"),
    ('name = "sat"\naddress = "127.0.0.1:7100"\nparents = ["fuyang", "fuyang"]', "twice"),
    ('name = "sat"\naddress = "127.0.0.1:7100"\nparents = ["fuyang"]\ntables = ["scans"]',
     "not in cluster.tables"),
    ('name = "sat"\naddress = "127.0.0.1:7100"\nparents = ["fuyang"]\nretention_hours = 0',
     "positive number of hours"),
    ('name = "sat"\naddress = "127.0.0.1:7100"\nparents = ["fuyang"]\ntables = ["patients"]\n'
     '[leaf.filter]\nlab_orders = "true"', "not one of its tables"),
    ('name = "sat"\naddress = "127.0.0.1:7100"\nparents = ["fuyang"]\n[leaf.filter]\n'
     'patients = ""', "CEL expression"),
    ('name = "sat"\naddress = "127.0.0.1:7100"\nparents = ["fuyang"]\nrouter = "x"',
     r"unknown key leaf\[0\]\.router"),
])
def test_a_wrong_leaf_is_refused_with_what_to_fix(tmp_path, entry, says):
    with pytest.raises(ConfigError, match=says):
        load_cluster(write_cluster(tmp_path, f"\n[[leaf]]\n{entry}\n"))


def test_a_leaf_node_replicates_its_route_tables_and_is_never_a_seed(tmp_path):
    write_cluster(tmp_path, '''
[[leaf]]
name = "sat"
address = "127.0.0.1:7100"
parents = ["fuyang"]
tables = ["patients"]
''')
    pki = tmp_path / "pki"
    pki.mkdir()
    for name in ("ca.crt", "sat.crt", "sat.key"):
        (pki / name).write_text("x")
    node = tmp_path / "node.toml"
    node.write_text(node_toml("sat", "pki/"))
    config = load_node(node)
    assert config.leaf is not None and config.tables == ("patients",)
    assert config.listen == "127.0.0.1:7100"
    node.write_text(node_toml("sat", "pki/") + "[join]\nseed = true\n")
    with pytest.raises(ConfigError, match="never a seed"):
        load_node(node)
    node.write_text(node_toml("sat", "pki/") + '[join]\ndonor = "chaohui"\n')
    with pytest.raises(ConfigError, match="name a parent"):
        load_node(node)


def test_the_route_fingerprint_moves_with_what_the_route_selects_and_nothing_else(tmp_path):
    from node.leaf.state import ROUTE_FILE, route_change

    base = ('\n[[leaf]]\nname = "sat"\naddress = "127.0.0.1:7100"\nparents = ["fuyang"]\n'
            'tables = ["patients"]\n')
    one = load_cluster(write_cluster(tmp_path, base + "[leaf.filter]\npatients = 'true'\n"))
    moved = load_cluster(write_cluster(tmp_path, base.replace('"fuyang"]', '"chaohui"]')
                                       + "[leaf.filter]\npatients = 'true'\n"))
    other = load_cluster(write_cluster(tmp_path, base + "[leaf.filter]\npatients = 'false'\n"))
    assert one.leaves[0].fingerprint == moved.leaves[0].fingerprint  # parents: not the route
    assert one.leaves[0].fingerprint != other.leaves[0].fingerprint
    data = tmp_path / "data"
    data.mkdir()
    assert route_change(data, one.leaves[0]) == ""  # first start: recorded
    assert (data / ROUTE_FILE).read_text().strip() == one.leaves[0].fingerprint
    assert route_change(data, one.leaves[0]) == ""
    assert "changed since it copied its subset" in route_change(data, other.leaves[0])
