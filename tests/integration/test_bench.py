"""`ringsync bench` as a smoke test: it runs end to end on a tiny scale and its
JSON is well formed. Never a timing assertion: the figures depend on the
machine; only their presence and shape are checked here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

RESULT_KEYS = {"mode", "workload", "rows_per_s", "ratio_to_native", "lag_p50_ms", "lag_p99_ms",
               "cpu_percent", "peak_rss_mb", "cpu_us_per_row", "cpu_us_per_txn"}
CPU_PER = ("cpu_us_per_row", "cpu_us_per_txn")
# the targets of issue 16 that a run of every mode reports (the ring's names its rate)
TARGET_NAMES = {
    "bulk rows/s per hop vs native", "bulk rows/s PostgreSQL -> SQLite vs native",
    "stream: hop at native's highest sustained rate, p99 lag <= 300 ms",
    "catch-up: drain rate per hop vs native",
    "catch-up: first row after the receiver answers again",
    "CPU per row, bulk, hop vs native", "CPU per transaction, stream, hop vs native",
    "node peak RSS under the stream load", "node peak RSS over every workload"}
COMMIT_FIGURES = ("p50_ms", "p99_ms", "max_ms", "achieved_tps")


def is_count(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and v >= 0


def test_bench_quick_runs_every_mode_and_writes_well_formed_results(tmp_path: Path) -> None:
    out = tmp_path / "results"
    result = subprocess.run(
        [sys.executable, "-m", "ringsync.commands.cli", "bench", "--quick", "--json",
         "--modes", "native,hop,ring,sqlite", "--workloads", "bulk,stream,catchup,ring,sync",
         "--bulk-rows", "1000", "--rates", "100", "--step-seconds", "1",
         "--catchup-seconds", "1", "--ring-rate", "50", "--sync-rate", "20",
         "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    doc = json.loads(result.stdout)
    results = doc["results"]
    assert {(r["mode"], r["workload"]) for r in results} == {
        (m, w) for m in ("native", "hop", "sqlite") for w in ("bulk", "stream", "catchup")
    } | {("ring", "ring"), ("hop", "sync")}
    for r in results:
        assert RESULT_KEYS <= set(r), r
        assert r["rows_per_s"] > 0, r  # every row arrived (the probe waited for each)
        assert r["cpu_percent"] >= 0 and r["peak_rss_mb"] >= 0
        # every workload counts its transactions (bulk: one), so neither figure is null
        assert all(is_count(r[k]) for k in CPU_PER), r
        for s in r["detail"].get("steps", []):
            assert all(is_count(s[k]) for k in CPU_PER) and s["txns"] > 0, s
    bulks = [r for r in results if r["workload"] == "bulk"]
    # one transaction: its CPU per transaction is all the CPU, per row that over 1,000 rows
    assert all(abs(r["cpu_us_per_txn"] - 1000 * r["cpu_us_per_row"]) <= 0.01 * r["cpu_us_per_txn"]
               + 10 for r in bulks), bulks
    for r in results:
        if r["workload"] == "catchup":  # pgbench's 1-3-row transactions, counted at the source
            d = r["detail"]
            assert d["backlog_rows"] / 3 <= d["backlog_txns"] <= d["backlog_rows"], d
    native = {r["workload"]: r for r in results if r["mode"] == "native"}
    assert all(r["ratio_to_native"] == 1.0 for r in native.values())
    for r in results:
        if r["mode"] in ("hop", "sqlite") and r["workload"] in native:
            expected = r["rows_per_s"] / native[r["workload"]]["rows_per_s"]
            assert abs(r["ratio_to_native"] - expected) < 0.01 * expected + 0.01
    stream = next(r for r in results if r["mode"] == "hop" and r["workload"] == "stream")
    assert stream["detail"]["steps"][0]["rate"] == 100
    sync = next(r for r in results if r["workload"] == "sync")["detail"]
    assert sync["rate"] == 20 and sync["clients"] > 0
    for durability in ("async", "sync"):  # pgbench logged every transaction of both runs
        run = sync[durability]
        assert all(is_count(run[k]) for k in COMMIT_FIGURES) and run["transactions"] > 0, run
        assert run["p50_ms"] <= run["p99_ms"] <= run["max_ms"], run
    # the second hop really ran sync: its node says so, and PostgreSQL waits for the
    # node's capture connection as its synchronous standby; the first hop did not
    assert (sync["sync"]["node_durability"], sync["sync"]["standby_sync_state"]) == (
        "sync", "sync")
    assert (sync["async"]["node_durability"], sync["async"]["standby_sync_state"]) == (
        "async", "async")
    assert abs(sync["added_p99_ms"] - (sync["sync"]["p99_ms"] - sync["async"]["p99_ms"])) < 1e-6
    # pgbench's log holds every transaction the sync origin committed (a client's last
    # one may be committed there as pgbench stops without being logged)
    logged = sync["sync"]["transactions"]
    assert logged <= sync["txns"] <= logged + sync["clients"], sync
    names = {t["name"] for t in doc["targets"]}
    assert names >= TARGET_NAMES, TARGET_NAMES - names
    assert any(n.startswith("ring: p99 lag to the farthest campus") for n in names), names
    assert "sync mode: commit latency added at 20 tx/s, p99" in names, names
    assert all(isinstance(t["met"], bool) and t["measured"] for t in doc["targets"])
    written = sorted(p.name for p in out.iterdir())
    stem = written[0].split(".")[0].removesuffix("-lag")
    assert written == sorted([f"{stem}.json", f"{stem}.md", f"{stem}-lag.svg"])
    assert json.loads((out / f"{stem}.json").read_text())["results"] == results
    table = (out / f"{stem}.md").read_text()
    assert "| hop | bulk |" in table and "| CPU µs/row | CPU µs/txn |" in table
    assert "| hop | sync |" in table and "| sync adds |" in table
    assert (out / f"{stem}-lag.svg").read_text().startswith("<svg")


def test_bench_verify_workload_measures_the_stock_pass_and_the_incremental_check(
        tmp_path: Path) -> None:
    """The verify workload on its own, on a hop that keeps digests (no second hop)."""
    result = subprocess.run(
        [sys.executable, "-m", "ringsync.commands.cli", "bench", "--quick", "--json",
         "--modes", "hop", "--workloads", "verify", "--incremental-digests",
         "--bulk-rows", "1000", "--out", str(tmp_path / "results")],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    doc = json.loads(result.stdout)
    (check,) = [r for r in doc["results"] if r["workload"] == "verify"]
    detail = check["detail"]
    assert detail["consistent"] is True and detail["rows"] >= 1000, detail
    assert detail["copy_rows_per_s"] > 0 and len(detail["campuses"]) == 2  # the hop's two
    assert [(run["rows"], run["changes"]) for run in detail["incremental"]] == [
        (1000, 1000), (10000, 10000)]
    assert all(run["check_seconds"] > 0 for run in detail["incremental"])
    names = [t["name"] for t in doc["targets"]]
    assert any(n.startswith("stock verification") for n in names)
    assert sum(n.startswith("incremental check") for n in names) == 2
