"""`ringsync bench` as a smoke test: it runs end to end on a tiny scale and its
JSON is well formed. Never a timing assertion: the figures depend on the
machine; only their presence and shape are checked here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

RESULT_KEYS = {"mode", "workload", "rows_per_s", "ratio_to_native", "lag_p50_ms", "lag_p99_ms",
               "cpu_percent", "peak_rss_mb"}


def test_bench_quick_runs_every_mode_and_writes_well_formed_results(tmp_path: Path) -> None:
    out = tmp_path / "results"
    result = subprocess.run(
        [sys.executable, "-m", "ringsync.commands.cli", "bench", "--quick", "--json",
         "--bulk-rows", "1000", "--rates", "100", "--step-seconds", "1",
         "--catchup-seconds", "1", "--ring-rate", "50", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    doc = json.loads(result.stdout)
    results = doc["results"]
    assert {(r["mode"], r["workload"]) for r in results} == {
        (m, w) for m in ("native", "hop", "sqlite") for w in ("bulk", "stream", "catchup")
    } | {("ring", "ring")}
    for r in results:
        assert RESULT_KEYS <= set(r), r
        assert r["rows_per_s"] > 0, r  # every row arrived (the probe waited for each)
        assert r["cpu_percent"] >= 0 and r["peak_rss_mb"] >= 0
    native = {r["workload"]: r for r in results if r["mode"] == "native"}
    assert all(r["ratio_to_native"] == 1.0 for r in native.values())
    for r in results:
        if r["mode"] in ("hop", "sqlite"):
            expected = r["rows_per_s"] / native[r["workload"]]["rows_per_s"]
            assert abs(r["ratio_to_native"] - expected) < 0.01 * expected + 0.01
    stream = next(r for r in results if r["mode"] == "hop" and r["workload"] == "stream")
    assert stream["detail"]["steps"][0]["rate"] == 100
    assert {t["name"] for t in doc["targets"]} >= {
        "bulk rows/s per hop vs native", "node peak RSS under the stream load"}
    assert all(isinstance(t["met"], bool) and t["measured"] for t in doc["targets"])
    written = sorted(p.name for p in out.iterdir())
    stem = written[0].split(".")[0].removesuffix("-lag")
    assert written == sorted([f"{stem}.json", f"{stem}.md", f"{stem}-lag.svg"])
    assert json.loads((out / f"{stem}.json").read_text())["results"] == results
    assert "| hop | bulk |" in (out / f"{stem}.md").read_text()
    assert (out / f"{stem}-lag.svg").read_text().startswith("<svg")
