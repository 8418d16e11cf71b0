"""Unknown sections and keys are refused with the nearest valid name; password_file."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from ringsync import pki
from ringsync.config import CLUSTER_SCHEMA, NODE_SCHEMA, check_known, load_cluster, load_node
from ringsync.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]

CLUSTER = """
[cluster]
name = "t"
ring = ["a", "b"]
tables = ["patients"]

[[campus]]
name = "a"
address = "127.0.0.1:7001"

[[campus]]
name = "b"
address = "127.0.0.1:7002"
{extra}
"""

NODE = """
campus = "a"
cluster_file = "cluster.toml"
{top}
[database]
{database}

[tls]
ca = "pki/ca.crt"
cert = "pki/a.crt"
key = "pki/a.key"
{extra}
"""

SQLITE = 'engine = "sqlite"\npath = "lis.db"'
POSTGRES = 'engine = "postgres"\ndsn = "host=127.0.0.1 user=rs dbname=lis"'


@pytest.fixture
def files(tmp_path: Path):
    pki.create_ca(tmp_path / "pki")
    pki.issue(tmp_path / "pki", "node", "a", ("127.0.0.1",))

    def write(node_extra: str = "", cluster_extra: str = "", database: str = SQLITE,
              top: str = "") -> Path:
        (tmp_path / "cluster.toml").write_text(CLUSTER.format(extra=cluster_extra))
        p = tmp_path / "node.toml"
        p.write_text(NODE.format(extra=node_extra, database=database, top=top))
        return p
    return write


@pytest.mark.parametrize(("extra", "message"), [
    ("[replicaton]\nwindow = 2", r"node.toml: unknown section \[replicaton\]; did you mean "
                                 r"\[replication\]\?"),
    ("[replication]\nheal_afer_seconds = 2.0",
     r"node.toml: unknown key replication.heal_afer_seconds; did you mean `heal_after_seconds`"),
    ("[join]\nseeds = true", r"unknown key join.seeds; did you mean `seed`"),
    ("[peer]\nb = \"127.0.0.1:9\"", r"unknown section \[peer\]; did you mean \[peers\]"),
    ("[dr]\netdc = [\"127.0.0.1:2379\"]", r"unknown key dr.etdc; did you mean `etcd`"),
    ("[tls2]\nx = 1", r"unknown section \[tls2\]; did you mean \[tls\]"),
    ("[zzz]\nx = 1", r"unknown section \[zzz\]; valid at the top level: .*\[replication\]"),
])
def test_node_file_typos_are_refused_with_the_nearest_name(files, extra, message) -> None:
    with pytest.raises(ConfigError, match=message):
        load_node(files(node_extra=extra))


def test_node_file_typos_at_the_top_and_in_database(files) -> None:
    with pytest.raises(ConfigError, match=r"unknown key `lisen` \(top level\); did you mean "
                                          r"`listen`"):
        load_node(files(top='lisen = "127.0.0.1:7001"'))
    with pytest.raises(ConfigError, match=r"unknown key database.pth; did you mean `path`"):
        load_node(files(database='engine = "sqlite"\npth = "lis.db"'))
    with pytest.raises(ConfigError, match=r"unknown key tls.cerd; did you mean `cert`"):
        p = files()
        p.write_text(p.read_text().replace("cert =", "cerd ="))
        load_node(p)


@pytest.mark.parametrize(("extra", "message"), [
    ("[clusterr]\nx = 1", r"cluster.toml: unknown section \[clusterr\]; did you mean \[cluster\]"),
    ("[[campuss]]\nname = \"a\"", r"unknown section \[\[campuss\]\]; did you mean \[\[campus\]\]"),
    ("[[set]]\nname = \"s\"\ntables = [\"patients\"]\nwritter = \"a\"",
     r"unknown key set\[0\].writter; did you mean `writer`"),
    ("[dr]\nfailover_afer = 3.0", r"unknown key dr.failover_afer; did you mean `failover_after`"),
    ("[conflicts]\nmax_clock_skew = 5", r"unknown key conflicts.max_clock_skew; did you mean "
                                        r"`max_clock_skew_ms`"),
    ("[conflicts.tables.patients]\nrulle = \"latest\"",
     r"unknown key conflicts.tables.patients.rulle; did you mean `rule`"),
    ("[client]\nca = \"x\"\ncertificate = \"y\"", r"unknown key client.certificate"),
])
def test_cluster_file_typos_are_refused_with_the_nearest_name(files, extra, message) -> None:
    with pytest.raises(ConfigError, match=message):
        load_cluster(files(cluster_extra=extra).parent / "cluster.toml")


def test_campus_entry_typo_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "cluster.toml"
    p.write_text(CLUSTER.format(extra="").replace('address = "127.0.0.1:7002"',
                                                  'adress = "127.0.0.1:7002"'))
    with pytest.raises(ConfigError, match=r"unknown key campus\[1\].adress; did you mean "
                                          r"`address`"):
        load_cluster(p)


def test_user_names_are_not_keys(files) -> None:
    """Campus names under [peers] and columns under monotonic are the user's own."""
    node = load_node(files(node_extra='[peers]\nb = "127.0.0.1:9002"', cluster_extra=(
        '[conflicts.tables.patients]\nrule = "latest"\nmonotonic = { status = ["a", "b"] }')))
    assert node.peers == {"b": "127.0.0.1:9002"}


def test_password_file(files, tmp_path: Path) -> None:
    secret = tmp_path / "pgpassword"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    node = load_node(files(database=POSTGRES + '\npassword_file = "pgpassword"'))
    assert node.database.password_file == secret
    assert "s3cret" not in repr(node)
    from ringsync.config import connect_dsn
    assert "password=s3cret" in connect_dsn(node.database)
    secret.chmod(0o644)
    with pytest.raises(ConfigError, match=r"node.toml: database.password_file = .* too open"):
        load_node(files(database=POSTGRES + '\npassword_file = "pgpassword"'))
    secret.chmod(0o600)
    with pytest.raises(ConfigError, match="carries a password and database.password_file"):
        load_node(files(database='engine = "postgres"\ndsn = "host=x password=y"\n'
                                 'password_file = "pgpassword"'))
    with pytest.raises(ConfigError, match="database.password_file is for engine = .postgres"):
        load_node(files(database=SQLITE + '\npassword_file = "pgpassword"'))


def _toml_blocks(text: str) -> list[str]:
    return re.findall(r"```toml\n(.*?)```", text, re.S)


@pytest.mark.parametrize("doc", ["README.md", *[str(p.relative_to(ROOT))
                                                for p in sorted((ROOT / "docs").glob("*.md"))]])
def test_every_documented_toml_example_uses_known_names(doc: str) -> None:
    for block in _toml_blocks((ROOT / doc).read_text()):
        data = tomllib.loads(block.replace("…", ""))
        errors = []
        for schema in (NODE_SCHEMA, CLUSTER_SCHEMA):
            try:
                check_known(data, schema, Path(doc))
                break
            except ConfigError as e:
                errors.append(str(e))
        else:
            pytest.fail(f"{doc}: a TOML example is neither a node nor a cluster file: {errors}")
