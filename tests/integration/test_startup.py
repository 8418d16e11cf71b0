"""Start-up checks everything before touching anything; PostgreSQL passwords stay hidden.

Real node processes: a node whose port is taken (or whose listen address is
not on this host) exits 2 with the message and leaves no journal.db and no
ringsync object in its database, SQLite or PostgreSQL. A PostgreSQL node
given its password by database.password_file connects, and neither its
start-up log nor `ctl status --json` shows the password.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from ringsync.commands.demo.cluster import CampusLayout
from tests.helpers import wait_until
from tests.integration.conftest import ctl, wait_ready


def run_node(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "node", "--config", str(config)],
                          capture_output=True, text=True, timeout=90)


def ringsync_objects(c: CampusLayout) -> list[str]:
    """Whatever a node installs in its campus database, by name."""
    if c.postgres is None:
        conn = sqlite3.connect(f"file:{c.database}?mode=ro", uri=True)
        try:
            return [r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE name LIKE '\\_rs\\_%' ESCAPE '\\'")]
        finally:
            conn.close()
    with psycopg.connect(c.postgres.dsn, autocommit=True) as pg:
        return [r[0] for r in pg.execute("""
            SELECT 'schema ' || nspname FROM pg_namespace WHERE nspname = 'ringsync'
            UNION ALL SELECT 'relation ' || relname FROM pg_class WHERE relname LIKE '\\_rs\\_%'
            UNION ALL SELECT 'trigger ' || tgname FROM pg_trigger
                WHERE tgname LIKE 'ringsync%' OR tgname LIKE '\\_rs\\_%'
            UNION ALL SELECT 'function ' || proname FROM pg_proc WHERE proname LIKE '\\_rs\\_%'
            UNION ALL SELECT 'publication ' || pubname FROM pg_publication
            UNION ALL SELECT 'slot ' || slot_name FROM pg_replication_slots
            UNION ALL SELECT 'origin ' || roname FROM pg_replication_origin""").fetchall()]


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_a_taken_port_stops_start_up_before_anything_is_created(make_cluster,
                                                                engine: str) -> None:
    cluster = make_cluster(2, engines=[engine, "sqlite"])
    c = cluster.campuses[0]
    assert ringsync_objects(c) == []
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", c.port))
        holder.listen()
        result = run_node(c.config)
    assert result.returncode == 2, result.stderr
    assert f"cannot listen on {c.address}" in result.stderr
    assert "the port is in use; stop what holds it or change `listen`" in result.stderr
    assert not (c.dir / "journal.db").exists()
    assert ringsync_objects(c) == []
    # and with the port free the same node starts and installs
    cluster.start(c.name)
    wait_until(lambda: (c.dir / "journal.db").exists() and ringsync_objects(c), 60,
               "the node to create its journal and install")


def test_a_listen_address_not_on_this_host_stops_start_up_cleanly(make_cluster) -> None:
    cluster = make_cluster(2)
    c = cluster.campuses[0]
    c.config.write_text(c.config.read_text().replace(
        'data_dir = "."', 'data_dir = "."\nlisten = "192.0.2.1:7400"'))
    result = run_node(c.config)
    assert result.returncode == 2, result.stderr
    assert "cannot listen on 192.0.2.1:7400 for replication: the address is not local" \
        in result.stderr
    assert not (c.dir / "journal.db").exists()
    assert ringsync_objects(c) == []


def test_a_missing_table_on_postgres_leaves_nothing(make_cluster) -> None:
    cluster = make_cluster(2, engines=["postgres", "sqlite"])
    c = cluster.campuses[0]
    assert c.postgres is not None
    with psycopg.connect(c.postgres.dsn, autocommit=True) as pg:
        pg.execute("DROP TABLE lab_results")
    result = run_node(c.config)
    assert result.returncode == 2, result.stderr
    assert "'lab_results' is listed in cluster.tables but does not exist" in result.stderr
    assert not (c.dir / "journal.db").exists()
    assert ringsync_objects(c) == []


def test_password_file_connects_and_the_password_is_never_shown(make_cluster) -> None:
    cluster = make_cluster(2, engines=["postgres", "sqlite"])
    c = cluster.campuses[0]
    secret = "Sup3r secret'pw"
    (c.dir / "pgpassword").write_text(secret + "\n")
    (c.dir / "pgpassword").chmod(0o644)
    text = c.config.read_text()
    c.config.write_text(text.replace("[database]\n", '[database]\npassword_file = "pgpassword"\n'))
    refused = run_node(c.config)
    assert refused.returncode == 2
    assert "permissions 0644 are too open" in refused.stderr
    assert not (c.dir / "journal.db").exists()
    (c.dir / "pgpassword").chmod(0o600)
    cluster.start_all()
    wait_ready(cluster)
    status = json.loads(ctl(cluster, "status", "--json").stdout)
    (node,) = [n for n in status["nodes"] if n["campus"] == c.name]
    assert "password=***" in node["database"] and "Sup3r" not in node["database"]
    log = c.log.read_text()
    assert "serving on" in log and "password=***" in log
    assert "Sup3r" not in log and "Sup3r" not in json.dumps(status)


def test_a_node_certificate_of_a_foreign_ca_with_the_same_name_stops_start_up(
        make_cluster, tmp_path: Path) -> None:
    """Trust is the CA's key, not its name: a node given a certificate from
    another CA that copied the cluster CA's subject refuses to start."""
    from cryptography import x509

    from ringsync import pki

    cluster = make_cluster(2)
    c = cluster.campuses[0]
    ca = x509.load_pem_x509_certificate((cluster.pki_dir / "ca.crt").read_bytes())
    name = ca.subject.rfc4514_string().removeprefix("CN=")
    pki.create_ca(tmp_path / "forged", name=name)
    cert, key = pki.issue(tmp_path / "forged", "node", c.name, hosts=("127.0.0.1",))
    for forged, ours in ((cert, cluster.pki_dir / f"{c.name}.crt"),
                         (key, cluster.pki_dir / f"{c.name}.key")):
        ours.write_bytes(forged.read_bytes())
    result = run_node(c.config)
    assert result.returncode == 2, result.stderr
    assert "was not signed by the cluster CA's key" in result.stderr
    assert not (c.dir / "journal.db").exists()


def test_the_nodes_files_are_its_own_only(make_cluster) -> None:
    """The journal (full rows until pruned) and the node's other files are
    0600; one left readable by an earlier run is tightened at start."""
    cluster = make_cluster(2)
    c = cluster.campuses[0]
    reports = c.dir / "verify-reports.jsonl"
    reports.write_text("")
    reports.chmod(0o644)
    lis_mode = (c.dir / "lis.db").stat().st_mode & 0o777
    cluster.start_all()
    wait_ready(cluster)
    for name in ("journal.db", "journal.db-wal", "verify-reports.jsonl"):
        path = c.dir / name
        if path.exists() or name == "journal.db":
            assert path.stat().st_mode & 0o777 == 0o600, name
    assert c.dir.stat().st_mode & 0o777 == 0o700
    assert (c.dir / "lis.db").stat().st_mode & 0o777 == lis_mode  # not the node's: untouched
    wait_until(lambda: "could be read by other users" in c.log.read_text(), 10,
               "the node to say it tightened the reports file")
