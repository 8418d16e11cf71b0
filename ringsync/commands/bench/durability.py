"""The ``sync`` workload: the commit latency synchronous durability (RPO = 0)
adds at the origin.

The same pgbench stream (1-3-row transactions at ``Scale.sync_rate``, 1,000
tx/s by default, for one stream step's length) runs twice in one invocation:
on the hop every other workload measured (durability async), then on a
second hop built the same way beside it with ``durability = "sync"`` and
``sync_policy = "strict"`` (setups.sync_twin), so every commit at the origin
returns only once the other campus holds it in its journal and none is
released early by degrading. The second hop is torn down right after.

The origin's commit latency is read from pgbench's own per-transaction log
(``pgbench -l``): each transaction's own time, from when its client sent it
until its commit returned. pgbench counts a throttled transaction's latency
from its scheduled start; the time a client spent behind schedule (its
previous transaction still waiting) is reported apart, as the schedule lag,
not as commit latency. Both runs use SYNC_CLIENTS clients: a client waits
for each commit, so offering 1,000 tx/s takes 1,000 x the commit latency
clients (Little's law); the stream's usual 8 would cap a 36 ms commit at
220 tx/s. 40 clients offer 1,000 tx/s at up to 40 ms a commit and fit, with
the node's own connections, in the bench servers' max_connections = 50.

Each run must really be in the mode it is reported as: the origin's node
status says async or sync, and in sync PostgreSQL lists the node's capture
connection as its synchronous standby (in async, as an async one); a
mismatch stops the benchmark.

The result's top-level figures (rows/s, tx/s, replication lag, CPU, memory)
are the sync run's; ``detail`` holds both runs' commit latencies and the
p99 sync adds.
"""

from __future__ import annotations

import statistics
from typing import Any

from ringsync.commands.bench.scenarios import Bench, Result, percentile, say
from ringsync.commands.bench.setups import RingsyncSetup, sync_twin
from ringsync.errors import RingsyncError

SYNC_CLIENTS = 40


def commit_summary(times: list[tuple[float, float]]) -> dict[str, float | int | None]:
    """p50/p99/max of the transactions' own ms, and the p99 schedule lag (to µs)."""
    own = [t for t, _ in times]
    lags = [lag for _, lag in times]
    if not own:
        return {"transactions": 0, "p50_ms": None, "p99_ms": None, "max_ms": None,
                "schedule_lag_p99_ms": None}
    return {"transactions": len(own), "p50_ms": round(statistics.median(own), 3),
            "p99_ms": round(percentile(own, 0.99), 3), "max_ms": round(max(own), 3),
            "schedule_lag_p99_ms": round(percentile(lags, 0.99), 3)}


def _measure(bench: Bench, expected: str) -> dict[str, Any]:
    """One stream at the origin with every transaction logged; its commit
    latency, rate and the durability the origin really ran."""
    setup = bench.setup
    if not isinstance(setup, RingsyncSetup):
        raise RingsyncError(f"the sync workload needs a ringsync setup, not {setup.mode}")
    origin = setup.writers[0]
    step = bench.stream_step(bench.scale.sync_rate, bench.scale.step_seconds, [origin],
                             clients=SYNC_CLIENTS, log_latencies=True)
    mode = setup.durability(origin)
    synchronous = mode["standby_sync_state"] == "sync"
    if mode["node_durability"] != expected or synchronous != (expected == "sync"):
        raise RingsyncError(f"the {expected} run's origin {origin} ran {mode}, not {expected}")
    commit = commit_summary(step.pop("transaction_times"))
    step.pop("started")
    say(f"{setup.mode} {expected}: {step['achieved_tps']:,.0f} tx/s, commit p50 "
        f"{commit['p50_ms'] or 0:.1f} ms, p99 {commit['p99_ms'] or 0:.1f} ms")
    return {**commit, "achieved_tps": round(step["achieved_tps"], 2), **mode, "step": step}


def sync(bench: Bench) -> Result:
    """Commit latency at the origin, the hop as it is (async), then a sync twin."""
    asynchronous = _measure(bench, "async")
    say(f"{bench.setup.mode}: setting up a second hop in sync durability")
    twin = sync_twin(bench.setup)
    try:
        twin_bench = Bench(twin, bench.scale)
        try:
            twin_bench.settle()
            synchronous = _measure(twin_bench, "sync")
        finally:
            twin_bench.close()
    finally:
        twin.close()
    s = synchronous.pop("step")
    asynchronous.pop("step")
    a99, s99 = asynchronous["p99_ms"], synchronous["p99_ms"]
    a50, s50 = asynchronous["p50_ms"], synchronous["p50_ms"]
    return Result(bench.setup.mode, "sync", s["rows_per_s"], s["lag_p50_ms"], s["lag_p99_ms"],
                  s["lag_max_ms"], s["cpu_percent"], s["peak_rss_mb"],
                  txn_per_s=s["achieved_tps"], cpu_us_per_row=s["cpu_us_per_row"],
                  cpu_us_per_txn=s["cpu_us_per_txn"], seconds=float(bench.scale.step_seconds),
                  detail={"rate": bench.scale.sync_rate, "clients": SYNC_CLIENTS,
                          "rows": s["rows"], "txns": s["txns"], "cpu_seconds": s["cpu_seconds"],
                          "async": asynchronous, "sync": synchronous,
                          "added_p50_ms": _difference(s50, a50),
                          "added_p99_ms": _difference(s99, a99)})


def _difference(synchronous: float | None, asynchronous: float | None) -> float | None:
    if synchronous is None or asynchronous is None:
        return None
    return round(synchronous - asynchronous, 3)
