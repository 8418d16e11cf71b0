"""The CLI as a user runs it: headless demo, ctl status/verify, pki."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ringsync.commands.demo.cluster import LocalCluster
from tests.helpers import coded_rows, table_rows

RINGSYNC = [sys.executable, "-m", "ringsync.commands.cli"]


def test_headless_demo_converges_and_files_hold_identical_rows(tmp_path: Path) -> None:
    result = subprocess.run(
        [*RINGSYNC, "demo", "--headless", "--duration", "4", "--campuses", "3",
         "--conflict-rate", "0.3", "--data-dir", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["converged"] is True  # shared rows edited everywhere at once, and still equal
    assert report["transactions_written"] > 0
    assert report["contended_transactions"] > 0
    assert set(report["conflicts_logged"]) == {c["name"] for c in report["campuses"]}
    assert Path(report["cluster_file"]).is_file()
    dbs = [Path(c["database"]) for c in report["campuses"]]
    # each campus orders tests by codes of its own (the demo's dictionaries): the
    # rows are the same once read back through each campus's map, and not before
    snapshots = [coded_rows(db, c["name"]) for db, c in zip(dbs, report["campuses"],
                                                            strict=True)]
    assert all(s == snapshots[0] for s in snapshots[1:])
    assert not any(r[2].startswith("UNMAPPED") for r in snapshots[0]["lab_orders"])
    first, second = (table_rows(db)["lab_orders"] for db in dbs[:2])
    assert len(first) == len(second) > 0 and {r[2] for r in first}.isdisjoint(
        {r[2] for r in second})
    assert report["campuses"][0]["rows"]["patients"] == len(snapshots[0]["patients"]) > 0
    pids = json.loads((tmp_path / "demo" / "pids.json").read_text())
    assert pids == {}


def test_headless_demo_with_satellites_lists_them_and_they_hold_the_rows(
        tmp_path: Path) -> None:
    """`demo --satellites`: a whole-route satellite writing like a campus, and a
    subset one; the report lists both as leaves, and the rows in their files
    are their parents' (the whole table, or what the subset's SQL selects)."""
    for route, count in (("all", 1), ("subset", 2)):
        result = subprocess.run(
            [*RINGSYNC, "demo", "--headless", "--duration", "3", "--campuses", "2",
             "--satellites", str(count), "--satellite-route", route, "--no-etcd",
             "--data-dir", str(tmp_path / route)],
            capture_output=True, text=True, timeout=240)
        assert result.returncode == 0, result.stderr[-3000:]
        report = json.loads(result.stdout)
        assert report["converged"] is True
        roles = [(c["name"], c["role"]) for c in report["campuses"]]
        assert roles == [("chaohui", "member"), ("wangjiangshan", "member")] + [
            (f"sat-{i + 1}", "leaf") for i in range(count)]
        files = {c["name"]: Path(c["database"]) for c in report["campuses"]}
        for leaf in report["campuses"][2:]:
            parent, name = leaf["parents"][0], leaf["name"]
            held = table_rows(files[name], tuple(leaf["rows"]))
            if route == "all":
                assert held == table_rows(files[parent]) and held["patients"]
                assert {r[5] for r in held["patients"]} == {"chaohui", "wangjiangshan", name}
                continue
            expected = table_rows(files[parent], ("patients", "lab_orders"))
            assert held == {
                "patients": [r for r in expected["patients"] if r[5] in (parent, name)],
                "lab_orders": [r for r in expected["lab_orders"] if r[5] in (parent, name)]}
            assert held["patients"] and len(held["patients"]) < len(expected["patients"])


def test_ctl_status_json_and_verify(running_pair: LocalCluster) -> None:
    result = subprocess.run(
        [*RINGSYNC, "ctl", "--cluster", str(running_pair.cluster_file), "status", "--json"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert [n["campus"] for n in doc["nodes"]] == [c.name for c in running_pair.campuses]
    for n in doc["nodes"]:
        assert n["healthy"] is True and ":" in n["address"]
        assert {"to", "state", "lag_transactions", "lag_seconds"} <= set(n["links"][0])
    table = subprocess.run(
        [*RINGSYNC, "ctl", "--cluster", str(running_pair.cluster_file), "status"],
        capture_output=True, text=True, timeout=60,
    )
    assert "streaming" in table.stdout and "CAMPUS" in table.stdout
    verify = subprocess.run(
        [*RINGSYNC, "ctl", "--cluster", str(running_pair.cluster_file), "verify", "--json"],
        capture_output=True, text=True, timeout=60,
    )
    assert verify.returncode == 0 and json.loads(verify.stdout)["consistent"] is True


def test_ctl_reports_a_down_node_and_exits_nonzero(running_pair: LocalCluster) -> None:
    running_pair.stop(running_pair.campuses[1].name)
    result = subprocess.run(
        [*RINGSYNC, "ctl", "--cluster", str(running_pair.cluster_file), "status", "--json"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    down = json.loads(result.stdout)["nodes"][1]
    assert down["healthy"] is False and "unreachable" in down["error"]


def test_pki_cli_issues_certificates(tmp_path: Path) -> None:
    d = tmp_path / "pki"
    subprocess.run([*RINGSYNC, "pki", "init", "--dir", str(d)], check=True, timeout=60)
    subprocess.run([*RINGSYNC, "pki", "issue", "--dir", str(d), "--role", "node",
                    "--name", "chaohui", "--host", "10.1.0.5"], check=True, timeout=60)
    again = subprocess.run([*RINGSYNC, "pki", "init", "--dir", str(d)],
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "already exists" in again.stderr
    assert (d / "chaohui.crt").is_file() and (d / "chaohui.key").stat().st_mode & 0o077 == 0


def test_mixed_demo_reports_dsns_keeps_databases_and_stops_them(tmp_path: Path) -> None:
    data_dir = tmp_path / "mixed"
    result = subprocess.run(
        [*RINGSYNC, "demo", "--engine", "mixed", "--campuses", "3", "--headless",
         "--duration", "3", "--keep-databases", "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=240,
    )
    try:
        assert result.returncode == 0, result.stderr[-3000:]
        report = json.loads(result.stdout)
        assert report["converged"] is True
        engines = [c["engine"] for c in report["campuses"]]
        assert engines == ["postgres", "mariadb", "sqlite"]  # CI installs MariaDB
        assert report["campuses"][1]["database"].startswith("mysql://ringsync:")
        targets = [c["database"] if c["engine"] != "sqlite" else Path(c["database"])
                   for c in report["campuses"]]
        snaps = [coded_rows(t, c["name"])  # the servers are still up
                 for t, c in zip(targets, report["campuses"], strict=True)]
        assert all(s == snaps[0] for s in snaps[1:]) and snaps[0]["patients"]
    finally:
        stop = subprocess.run([*RINGSYNC, "demo", "--data-dir", str(data_dir), "--stop"],
                              capture_output=True, text=True, timeout=120)
    assert stop.returncode == 0 and "stopped PostgreSQL" in stop.stderr
    assert "stopped MariaDB" in stop.stderr
    assert not (data_dir / "postgres.json").exists()
    assert not (data_dir / "mariadb.json").exists()


def test_demo_refuses_a_conflict_rate_that_is_not_a_share(tmp_path: Path) -> None:
    result = subprocess.run(
        [*RINGSYNC, "demo", "--headless", "--conflict-rate", "1.5",
         "--data-dir", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "--conflict-rate 1.5 is not a share" in result.stderr
    assert not (tmp_path / "demo").exists()  # refused before anything was made
