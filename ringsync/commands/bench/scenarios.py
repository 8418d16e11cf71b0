"""The workloads, run the same way against every setup.

- ``bulk``: one transaction of N lab-result rows; rows/s from the source's
  commit until the last row is visible at the receiver.
- ``stream``: small transactions (1-3 rows) at climbing fixed rates; a rate
  is sustained when the source reached 90 % of it and the receiver's p99
  lag stayed within STREAM_BOUND_MS. The highest sustained rate is the
  result; each step is kept for the report and the lag plot.
- ``catchup``: the receiver is stopped, a backlog is written at a fixed rate,
  the receiver is started; how much faster it drains than it was written.
- ``ring``: every campus writes at a fixed rate at once; lag is measured at
  the campus farthest downstream of each origin.
- ``sync`` (hop only; ringsync.commands.bench.durability): the origin's
  commit latency at a fixed rate, durability async and then sync.

CPU per row and per transaction is the CPU the replication processes used
over a workload's metered window divided by the rows and the transactions
that window carried. Transactions are counted at the source (its
``Source.transactions``): on PostgreSQL the distinct ``xmin`` (the inserting
transaction's id) over the rows each writer committed, so a 1-3-row pgbench
transaction counts once whatever its size; on MariaDB what the writing
procedure counted as it committed. The bulk load is one transaction.
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from ringsync.commands.bench.probe import ArrivalProbe, ProcessMeter, cpu_percent_over
from ringsync.commands.bench.setups import Setup
from ringsync.commands.bench.workload import (
    RUN_SPAN,
    STREAM_CLIENTS,
    TABLE,
    Block,
    IdAllocator,
    Stream,
)

STREAM_BOUND_MS = 1000.0  # beyond this the receiver is not keeping up
SETTLE_IDLE_PERCENT = 15.0  # replication processes this quiet: the last workload is done
SETTLE_TIMEOUT_SECONDS = 120.0
ARRIVAL_TIMEOUT_SECONDS = 600.0


@dataclass(frozen=True)
class Scale:
    bulk_rows: int
    stream_rates: tuple[int, ...]
    step_seconds: int
    catchup_rate: int
    catchup_seconds: int
    ring_rate: int
    ring_seconds: int
    sync_rate: int = 1000  # the sync workload's rate; it runs for step_seconds


FULL = Scale(300_000, (1000, 2000, 3000, 5000, 7500, 10000), 10, 1000, 20, 1000, 20)
QUICK = Scale(30_000, (1000, 2500, 5000), 3, 1000, 4, 500, 4)


@dataclass
class Result:
    mode: str
    workload: str
    rows_per_s: float
    lag_p50_ms: float | None
    lag_p99_ms: float | None
    lag_max_ms: float | None
    cpu_percent: float
    peak_rss_mb: float
    txn_per_s: float | None = None
    cpu_us_per_row: float | None = None
    cpu_us_per_txn: float | None = None  # bulk: the whole load is one transaction
    seconds: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)
    ratio_to_native: float | None = None
    anchor: str | None = None  # the native mode the ratio is taken against

    def as_json(self) -> dict[str, Any]:
        return {k: (round(v, 2) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def say(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def lag_summary(lags: list[float]) -> tuple[float | None, float | None, float | None]:
    if not lags:
        return None, None, None
    return (1000 * statistics.median(lags), 1000 * percentile(lags, 0.99), 1000 * max(lags))


def cpu_us_per(cpu_seconds: float, count: int | None) -> float | None:
    """CPU microseconds per row or transaction; None when there were none."""
    return 1e6 * cpu_seconds / count if count else None


class Bench:
    """Runs the workloads against one setup; owns its probes and meter."""

    def __init__(self, setup: Setup, scale: Scale) -> None:
        self.setup = setup
        self.scale = scale
        self.ids = IdAllocator(setup.writers)
        self.probes: dict[str, ArrivalProbe] = {}
        for origin in setup.writers:
            name, target = setup.far_receiver(origin)
            if name not in self.probes:
                self.probes[name] = ArrivalProbe(target, f"{setup.mode}/{name}")
        self.meter = ProcessMeter(setup.cpu_pids, setup.rss_pids)
        # (seconds since the stream started, max lag ms in that window, rate)
        self.lag_timeline: list[tuple[float, float, int]] = []
        self.steps: list[dict[str, Any]] = []

    def probe_for(self, origin: str) -> ArrivalProbe:
        return self.probes[self.setup.far_receiver(origin)[0]]

    def close(self) -> None:
        for p in self.probes.values():
            p.close()

    def settle(self, vacuum: bool = True) -> None:
        """Start each workload from quiet: what the previous one left (an
        origin still recording its versions, autovacuum of a table that just
        grew) must not be charged to the next. Vacuums and analyzes the table
        on every PostgreSQL, then waits for the replication processes to idle."""
        import psycopg

        for dsn in self.setup.databases() if vacuum else []:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(f"VACUUM ANALYZE {TABLE}")
        deadline = time.monotonic() + SETTLE_TIMEOUT_SECONDS
        while cpu_percent_over(self.setup.cpu_pids, 1.0) > SETTLE_IDLE_PERCENT:
            if time.monotonic() > deadline:
                say(f"{self.setup.mode}: replication still busy after "
                    f"{SETTLE_TIMEOUT_SECONDS:.0f}s; measuring anyway")
                return

    # -- workloads --------------------------------------------------------

    def bulk(self) -> Result:
        origin = self.setup.writers[0]
        rows = self.scale.bulk_rows
        base = self.ids.run_base(origin)
        block = Block(base, base + RUN_SPAN, origin)
        probe = self.probe_for(origin)
        probe.watch([block], lags=False)
        self.meter.start()
        started, committed = self.setup.source(origin).bulk_insert(base, rows)
        arrived = probe.wait_for({block: base + rows}, ARRIVAL_TIMEOUT_SECONDS,
                                 f"the {rows}-row transaction")
        used = self.meter.stop()
        seconds = max(1e-6, arrived - committed)
        lag_ms = 1000 * seconds
        return Result(self.setup.mode, "bulk", rows / seconds, lag_ms, lag_ms, lag_ms,
                      used.cpu_percent, used.peak_rss_mb, txn_per_s=None,
                      cpu_us_per_row=cpu_us_per(used.cpu_seconds, rows),
                      cpu_us_per_txn=cpu_us_per(used.cpu_seconds, 1), seconds=seconds,
                      detail={"rows": rows, "txns": 1, "cpu_seconds": used.cpu_seconds,
                              "source_write_seconds": committed - started})

    def stream_step(self, rate: int, seconds: int, origins: list[str],
                    clients: int = STREAM_CLIENTS, log_latencies: bool = False) -> dict[str, Any]:
        """pgbench at ``rate`` tx/s at each origin for ``seconds``, until every row
        arrived; ``log_latencies``: the step also holds ``transaction_times``,
        every transaction's (own ms, schedule lag ms) at the origins."""
        runs: list[Stream] = []
        try:
            for origin in origins:
                runs.append(self.setup.source(origin).start_stream(
                    self.ids.run_base(origin), origin, rate, seconds, clients, log_latencies))
                self.probe_for(origin).watch(runs[-1].blocks)
            self.meter.start()
            started = time.time()
            achieved = [r.wait() for r in runs]
            ended = time.time()
            times = [t for r in runs for t in r.transaction_times()] if log_latencies else None
        except BaseException:
            for r in runs:
                r.stop()
            raise
        arrived = started
        rows = 0
        lags: list[float] = []
        committed: list[tuple[str, dict[Block, int]]] = []
        for origin, run in zip(origins, runs, strict=True):
            last = self.setup.source(origin).last_ids(run.blocks)
            committed.append((origin, last))
            rows += sum(top - b.lo for b, top in last.items())
            probe = self.probe_for(origin)
            at = probe.wait_for(last, ARRIVAL_TIMEOUT_SECONDS, f"the {rate} tx/s stream")
            arrived = max(arrived, at)
            lags += probe.lags_between(started, at + 1, origin)
        used = self.meter.stop()
        # counted after the window, so the count's own reads are not in it
        txns = sum(self.setup.source(o).transactions(last) for o, last in committed)
        p50, p99, worst = lag_summary(lags)
        logged = {} if times is None else {"transaction_times": times}
        return {**logged, "rate": rate, "achieved_tps": sum(achieved) / len(achieved),
                "rows_per_s": rows / max(1e-6, ended - started), "rows": rows, "txns": txns,
                "lag_p50_ms": p50, "lag_p99_ms": p99, "lag_max_ms": worst,
                "drain_seconds": max(0.0, arrived - ended), "cpu_percent": used.cpu_percent,
                "cpu_seconds": used.cpu_seconds,
                "cpu_us_per_row": cpu_us_per(used.cpu_seconds, rows),
                "cpu_us_per_txn": cpu_us_per(used.cpu_seconds, txns),
                "peak_rss_mb": used.peak_rss_mb, "started": started,
                "sustained": (min(achieved) >= 0.9 * rate and p99 is not None
                              and p99 <= STREAM_BOUND_MS)}

    def stream(self) -> Result:
        origin = self.setup.writers[0]
        probe = self.probe_for(origin)
        best: dict[str, Any] | None = None
        stream_start = time.time()
        for rate in self.scale.stream_rates:
            if self.steps:
                self.settle(vacuum=False)
            step = self.stream_step(rate, self.scale.step_seconds, [origin])
            self.steps.append({k: v for k, v in step.items() if k != "started"})
            self._add_timeline(probe, origin, step["started"], stream_start, rate)
            say(f"{self.setup.mode} stream {rate} tx/s: achieved {step['achieved_tps']:.0f}, "
                f"p99 lag {step['lag_p99_ms'] or 0:.0f} ms"
                + ("" if step["sustained"] else " (not sustained)"))
            if not step["sustained"]:
                break
            best = step
        chosen = best or self.steps[0]
        return Result(self.setup.mode, "stream", chosen["rows_per_s"], chosen["lag_p50_ms"],
                      chosen["lag_p99_ms"], chosen["lag_max_ms"], chosen["cpu_percent"],
                      chosen["peak_rss_mb"], txn_per_s=chosen["achieved_tps"] if best else 0.0,
                      cpu_us_per_row=chosen["cpu_us_per_row"],
                      cpu_us_per_txn=chosen["cpu_us_per_txn"],
                      seconds=float(self.scale.step_seconds),
                      detail={"sustained_rate": best["rate"] if best else 0,
                              "steps": list(self.steps)})

    def _add_timeline(self, probe: ArrivalProbe, origin: str, start: float, zero: float,
                      rate: int, window: float = 0.25) -> None:
        buckets: dict[int, float] = {}
        for t, lag, o in probe.samples_since(start):
            if o == origin:
                k = int((t - zero) / window)
                buckets[k] = max(buckets.get(k, 0.0), lag)
        self.lag_timeline += [(k * window, 1000 * lag, rate) for k, lag in sorted(buckets.items())]

    def catchup(self) -> Result:
        origin = self.setup.writers[0]
        rate, seconds = self.scale.catchup_rate, self.scale.catchup_seconds
        self.setup.stop_receiver()
        source = self.setup.source(origin)
        run = source.start_stream(self.ids.run_base(origin), origin, rate, seconds)
        try:
            started = time.time()
            achieved = run.wait()
            written = time.time() - started
        except BaseException:
            run.stop()
            self.setup.start_receiver()
            raise
        last = source.last_ids(run.blocks)
        rows = sum(top - b.lo for b, top in last.items())
        txns = source.transactions(last)
        probe = self.probe_for(origin)
        probe.watch(run.blocks, lags=False)
        self.meter.start()
        restarted = time.time()
        self.setup.start_receiver()
        answered = self.setup.wait_receiver_answering(ARRIVAL_TIMEOUT_SECONDS)
        first = probe.wait_for({b: min(top, b.lo + 1) for b, top in last.items()},
                               ARRIVAL_TIMEOUT_SECONDS, "the first row of the backlog")
        arrived = probe.wait_for(last, ARRIVAL_TIMEOUT_SECONDS, "the catch-up backlog")
        used = self.meter.stop()
        drain = max(1e-6, arrived - restarted)
        return Result(self.setup.mode, "catchup", rows / drain, None, None, None,
                      used.cpu_percent, used.peak_rss_mb, txn_per_s=txns / drain,
                      cpu_us_per_row=cpu_us_per(used.cpu_seconds, rows),
                      cpu_us_per_txn=cpu_us_per(used.cpu_seconds, txns), seconds=drain,
                      detail={"backlog_rows": rows, "backlog_txns": txns,
                              "backlog_written_seconds": written,
                              "source_achieved_tps": achieved, "cpu_seconds": used.cpu_seconds,
                              "drain_seconds": drain, "speedup": written / drain,
                              # restart to first row: process start, reconnect
                              "first_row_seconds": max(0.0, first - restarted),
                              # restart until the receiver answers (a node's process start)
                              "answered_seconds": max(0.0, answered - restarted),
                              # answering to first row: reconnect, first batch
                              "first_row_after_answer_seconds": max(0.0, first - answered)})

    def ring(self) -> Result:
        step = self.stream_step(self.scale.ring_rate, self.scale.ring_seconds,
                                list(self.setup.writers))
        self.steps.append({k: v for k, v in step.items() if k != "started"})
        return Result(self.setup.mode, "ring", step["rows_per_s"], step["lag_p50_ms"],
                      step["lag_p99_ms"], step["lag_max_ms"], step["cpu_percent"],
                      step["peak_rss_mb"], txn_per_s=step["achieved_tps"] * len(self.setup.writers),
                      cpu_us_per_row=step["cpu_us_per_row"],
                      cpu_us_per_txn=step["cpu_us_per_txn"],
                      seconds=float(self.scale.ring_seconds),
                      detail={"rate_per_campus": self.scale.ring_rate,
                              "rows": step["rows"], "txns": step["txns"],
                              "cpu_seconds": step["cpu_seconds"],
                              "campuses": len(self.setup.writers),
                              "drain_seconds": step["drain_seconds"],
                              "sustained": step["sustained"]})

    def soak(self, rate: int, seconds: int) -> Result:
        """A long stream at a fixed rate: does the nodes' memory stay flat?"""
        origin = self.setup.writers[0]
        step = self.stream_step(rate, seconds, [origin])
        sizes = [mb for _, mb in self.meter.rss_timeline]
        tenth = max(1, len(sizes) // 10)
        first, last = statistics.median(sizes[:tenth]), statistics.median(sizes[-tenth:])
        return Result(self.setup.mode, "soak", step["rows_per_s"], step["lag_p50_ms"],
                      step["lag_p99_ms"], step["lag_max_ms"], step["cpu_percent"],
                      step["peak_rss_mb"], txn_per_s=step["achieved_tps"],
                      cpu_us_per_row=step["cpu_us_per_row"],
                      cpu_us_per_txn=step["cpu_us_per_txn"], seconds=float(seconds),
                      detail={"rate": rate, "rss_first_tenth_mb": first,
                              "rss_last_tenth_mb": last,
                              "rss_growth_percent": 100 * (last - first) / max(first, 1e-6)})


def workloads_for(mode: str) -> tuple[str, ...]:
    """What each setup runs (the sync and verify workloads: the hop only)."""
    if mode == "ring":
        return ("ring",)
    return ("bulk", "stream", "catchup") + (("sync", "verify") if mode == "hop" else ())
