"""`ringsync bench --modes mariadb` end to end on a tiny scale: MariaDB's own
GTID replication as the anchor, then a PostgreSQL -> MariaDB and a MariaDB ->
PostgreSQL hop of real nodes, every workload's rows waited for at the
receiver. Never a timing assertion: only the figures' presence, their
anchor, and the counts the MariaDB writer and the receivers agree on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.integration.test_bench import CPU_PER, RESULT_KEYS, is_count
from tests.mariadb_fixtures import need_mariadb

MODES = ("mariadb-native", "pg-mariadb", "mariadb-pg")
WORKLOADS = ("bulk", "stream", "catchup")


def test_bench_mariadb_mode_runs_both_hops_against_mariadbs_own_replication(
        tmp_path: Path) -> None:
    need_mariadb()
    result = subprocess.run(
        [sys.executable, "-m", "ringsync.commands.cli", "bench", "--quick", "--json",
         "--modes", "mariadb", "--workloads", ",".join(WORKLOADS), "--bulk-rows", "1000",
         "--rates", "100", "--step-seconds", "1", "--catchup-seconds", "1",
         "--out", str(tmp_path / "results")],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads(result.stdout)["results"]
    assert [(r["mode"], r["workload"]) for r in results] == [
        (m, w) for m in MODES for w in WORKLOADS]
    native = {r["workload"]: r for r in results if r["mode"] == "mariadb-native"}
    for r in results:
        assert RESULT_KEYS <= set(r) and r["anchor"] == "mariadb-native", r
        assert r["rows_per_s"] > 0, r  # every row arrived: the probe waited for each
        assert all(is_count(r[k]) for k in CPU_PER), r
        expected = r["rows_per_s"] / native[r["workload"]]["rows_per_s"]
        assert abs(r["ratio_to_native"] - expected) < 0.01 * expected + 0.01, r
        if r["workload"] == "stream":  # the writer's transactions, counted as it committed
            step = r["detail"]["steps"][0]
            assert step["rate"] == 100 and step["rows"] / 3 <= step["txns"] <= step["rows"], step
        if r["workload"] == "catchup":
            d = r["detail"]
            assert d["backlog_rows"] / 3 <= d["backlog_txns"] <= d["backlog_rows"], d
    # MariaDB's replica server is what the anchor meters: it did the apply work
    assert sum(r["detail"].get("cpu_seconds", 0) for r in native.values()) > 0, native
    # each hop's node stream lag is plotted beside the anchor's
    assert "mariadb-native" in result.stderr and "pg-mariadb |" in result.stderr
