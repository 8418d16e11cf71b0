"""Turning measurements into what people read: ratios, targets, tables, a lag plot.

Every ratio is taken against the native run of the same workload in the same
invocation, so a noisy machine moves both sides together: PostgreSQL's own
replication (``native``) for the PostgreSQL and SQLite modes, MariaDB's own
(``mariadb-native``) for the hops to and from MariaDB; each result names its
``anchor``. Targets (issue 16:
throughput, stream lag at native's best rate, catch-up, ring lag, memory,
CPU per row and per transaction, the commit latency sync durability adds)
are reported as met or not; nothing here fails a build.
"""

from __future__ import annotations

from typing import Any

from ringsync.commands.bench.scenarios import Result
from ringsync.commands.bench.setups import MARIADB_MODES

COLOURS = {"native": "#1f77b4", "hop": "#d62728", "sqlite": "#2ca02c", "ring": "#9467bd",
           "mariadb-native": "#17becf", "pg-mariadb": "#ff7f0e", "mariadb-pg": "#8c564b"}
NATIVE_MODES = ("native", "mariadb-native")
# The anchor of each mode whose anchor is not PostgreSQL's own replication.
ANCHORS = dict.fromkeys(MARIADB_MODES, "mariadb-native")


def anchor_of(mode: str) -> str:
    return ANCHORS.get(mode, "native")


def add_ratios(results: list[Result]) -> None:
    natives = {(r.mode, r.workload): r for r in results if r.mode in NATIVE_MODES}
    for r in results:
        r.anchor = anchor_of(r.mode)
        anchor = natives.get((r.anchor, r.workload))
        if anchor is not None and anchor.rows_per_s > 0:
            r.ratio_to_native = r.rows_per_s / anchor.rows_per_s


def _find(results: list[Result], mode: str, workload: str) -> Result | None:
    return next((r for r in results if r.mode == mode and r.workload == workload), None)


Target = dict[str, Any]

SUSTAINED_SHARE = 0.9  # of an offered rate the source must reach for it to count
STREAM_P99_GOAL_MS = 300.0
RING_P99_GOAL_MS = 1000.0
RSS_GOAL_MB = 200.0
SYNC_ADDED_P99_GOAL_MS = 50.0
SYNC_GOAL_RATE = 1000  # tx/s the sync target is stated at


def _target(name: str, measured: str, goal: str, met: bool) -> Target:
    return {"name": name, "measured": measured, "goal": goal, "met": bool(met)}


def _ms(v: float | None) -> str:
    return "no lag samples" if v is None else f"{v:,.0f} ms"


def _rate_vs_native(results: list[Result], mode: str, workload: str, name: str,
                    floor: float, goal: str) -> Target | None:
    r, native = _find(results, mode, workload), _find(results, "native", workload)
    if r is None or native is None or r.ratio_to_native is None:
        return None
    return _target(name, f"{r.ratio_to_native:.2f}x ({r.rows_per_s:,.0f} vs "
                   f"{native.rows_per_s:,.0f} rows/s)", goal, r.ratio_to_native >= floor)


def _stream_at_natives_best(results: list[Result]) -> Target | None:
    """Does the hop sustain, at p99 <= 300 ms, the highest rate native sustained?"""
    hop, native = _find(results, "hop", "stream"), _find(results, "native", "stream")
    if hop is None or native is None or not hop.detail.get("steps"):
        return None
    name = "stream: hop at native's highest sustained rate, p99 lag <= 300 ms"
    goal = f"{SUSTAINED_SHARE:.0%} of native's best rate reached at p99 <= 300 ms"
    rate = native.detail.get("sustained_rate", 0)
    if not rate:
        return _target(name, "native sustained none of the rates tried", goal, False)
    step = next((s for s in hop.detail["steps"] if s["rate"] == rate), None)
    if step is None:
        last = hop.detail["steps"][-1]
        return _target(name, f"native {rate:,} tx/s; the hop stopped at {last['rate']:,} tx/s "
                       f"({last['achieved_tps']:,.0f} tx/s, p99 {_ms(last['lag_p99_ms'])})",
                       goal, False)
    p99 = step["lag_p99_ms"]
    return _target(name, f"native {rate:,} tx/s; the hop at it: {step['achieved_tps']:,.0f} "
                   f"tx/s, p99 {_ms(p99)}", goal,
                   step["achieved_tps"] >= SUSTAINED_SHARE * rate and p99 is not None
                   and p99 <= STREAM_P99_GOAL_MS)


def _ring(results: list[Result]) -> Target | None:
    ring = _find(results, "ring", "ring")
    if ring is None:
        return None
    rate, campuses = ring.detail["rate_per_campus"], ring.detail["campuses"]
    offered, reached, p99 = rate * campuses, ring.txn_per_s or 0.0, ring.lag_p99_ms
    return _target(f"ring: p99 lag to the farthest campus, {campuses} campuses x {rate:,} tx/s",
                   f"{_ms(p99)} ({reached:,.0f} of {offered:,} tx/s reached)",
                   "<= 1,000 ms at 3 campuses x 1,000 tx/s",
                   p99 is not None and p99 <= RING_P99_GOAL_MS and campuses >= 3
                   and rate >= 1000 and reached >= SUSTAINED_SHARE * offered)


def _first_row_after_answer(results: list[Result]) -> Target | None:
    catchup = _find(results, "hop", "catchup")
    if catchup is None or "first_row_after_answer_seconds" not in catchup.detail:
        return None
    d = catchup.detail
    after = d["first_row_after_answer_seconds"]
    return _target("catch-up: first row after the receiver answers again",
                   f"{after:.2f} s (the node answered {d['answered_seconds']:.2f} s after its "
                   f"start)", "<= 0.5 s", after <= 0.5)


def _cpu_vs_native(name: str, unit: str, hop: float | None, native: float | None,
                   ceiling: float, where: str = "") -> Target | None:
    if hop is None or native is None:
        return None
    goal = f"<= {ceiling:g}x native's CPU per {unit}"
    if native <= 0:  # /proc counts CPU in clock ticks (10 ms)
        return _target(name, f"hop {hop:,.1f} µs/{unit}{where}; native's CPU was below "
                       "/proc's resolution", goal, False)
    ratio = hop / native
    return _target(name, f"{ratio:.1f}x (hop {hop:,.1f} vs native {native:,.1f} "
                   f"µs/{unit}{where})", goal, ratio <= ceiling)


def _stream_cpu(results: list[Result]) -> Target | None:
    """CPU per transaction of the stream, both modes at the same offered rate: the
    highest rate the hop sustained that native ran too (or the first rate)."""
    hop, native = _find(results, "hop", "stream"), _find(results, "native", "stream")
    if hop is None or native is None:
        return None
    natives = {s["rate"]: s for s in native.detail.get("steps", [])}
    both = [s for s in hop.detail.get("steps", []) if s["rate"] in natives]
    if not both:
        return None
    sustained = [s for s in both if s.get("sustained")]
    step = max(sustained, key=lambda s: s["rate"]) if sustained else both[0]
    return _cpu_vs_native("CPU per transaction, stream, hop vs native", "txn",
                          step["cpu_us_per_txn"], natives[step["rate"]]["cpu_us_per_txn"], 2,
                          f" at {step['rate']:,} tx/s")


def _sync_commit(results: list[Result]) -> Target | None:
    """The p99 commit latency sync durability adds at the origin, both runs at
    the same offered rate, which must be 1,000 tx/s and reached."""
    r = _find(results, "hop", "sync")
    if r is None:
        return None
    d = r.detail
    rate, added, sync, base = d["rate"], d["added_p99_ms"], d["sync"], d["async"]
    if added is None:
        measured = "no transactions logged"
    else:
        measured = (f"{added:+,.1f} ms (p99 sync {sync['p99_ms']:,.1f} vs async "
                    f"{base['p99_ms']:,.1f} ms; {sync['achieved_tps']:,.0f} of {rate:,} tx/s "
                    f"reached)")
    reached = min(sync["achieved_tps"], base["achieved_tps"]) >= SUSTAINED_SHARE * rate
    return _target(f"sync mode: commit latency added at {rate:,} tx/s, p99", measured,
                   f"<= {SYNC_ADDED_P99_GOAL_MS:g} ms at {SYNC_GOAL_RATE:,} tx/s",
                   added is not None and added <= SYNC_ADDED_P99_GOAL_MS
                   and rate >= SYNC_GOAL_RATE and reached)


def targets(results: list[Result]) -> list[Target]:
    """The goals of issues 16 (speed) and 17 (verification), each read from this run's results."""
    hop_bulk, native_bulk = _find(results, "hop", "bulk"), _find(results, "native", "bulk")
    found = [
        _rate_vs_native(results, "hop", "bulk", "bulk rows/s per hop vs native", 0.7,
                        ">= 0.7x (aim 1.0x)"),
        _rate_vs_native(results, "sqlite", "bulk", "bulk rows/s PostgreSQL -> SQLite vs native",
                        0.5, ">= 0.5x"),
        _stream_at_natives_best(results),
        _rate_vs_native(results, "hop", "catchup", "catch-up: drain rate per hop vs native",
                        0.5, ">= 0.5x (restart to last row)"),
        _first_row_after_answer(results),
        _ring(results),
        _cpu_vs_native("CPU per row, bulk, hop vs native", "row",
                       hop_bulk.cpu_us_per_row if hop_bulk else None,
                       native_bulk.cpu_us_per_row if native_bulk else None, 3),
        _stream_cpu(results),
        _sync_commit(results),
    ]
    out = [t for t in found if t is not None]
    stream = _find(results, "hop", "stream")
    if stream is not None and stream.detail.get("steps"):
        peak = max(s["peak_rss_mb"] for s in stream.detail["steps"])
        out.append(_target("node peak RSS under the stream load", f"{peak:.0f} MB",
                           "<= 200 MB", peak <= RSS_GOAL_MB))
    nodes = [r for r in results if r.mode not in NATIVE_MODES]
    if nodes:
        top = max(nodes, key=lambda r: r.peak_rss_mb)
        out.append(_target("node peak RSS over every workload",
                           f"{top.peak_rss_mb:.0f} MB ({top.mode} {top.workload})", "<= 200 MB",
                           top.peak_rss_mb <= RSS_GOAL_MB))
    check = _find(results, "hop", "verify")
    if check is not None:  # issue 17
        ratio = check.detail["ratio_to_copy"]
        out.append(_target("stock verification: rows hashed per second per campus",
                           f"{check.rows_per_s:,.0f} rows/s ({ratio:.2f}x COPY TO STDOUT, "
                           f"{check.detail['rows']:,} rows)", ">= 500,000 rows/s and >= 0.5x",
                           check.rows_per_s >= 500_000 and ratio >= 0.5))
        for run in check.detail.get("incremental", []):
            out.append(_target(f"incremental check after {run['changes']:,} changes, "
                               f"{run['rows']:,} rows", f"{run['check_seconds']:.2f} s",
                               "< 2 s", run["check_seconds"] < 2.0))
    soak = _find(results, "hop", "soak")
    if soak is not None:
        growth = soak.detail["rss_growth_percent"]
        out.append(_target(f"node memory bounded in a {soak.seconds / 60:.0f}-minute soak",
                           f"{growth:+.0f} % RSS (first to last tenth), peak "
                           f"{soak.peak_rss_mb:.0f} MB", "<= +10 % over 10 minutes",
                           growth <= 10 and soak.seconds >= 600))
    return out


def _num(v: float | None, fmt: str = "{:,.0f}") -> str:
    return "-" if v is None else fmt.format(v)


def _commit_latency_table(results: list[Result]) -> list[str]:
    """The sync workload's commit latency at the origin, async beside sync."""
    r = _find(results, "hop", "sync")
    if r is None:
        return []
    d = r.detail
    lines = ["", f"Commit latency at the origin, hop, {d['rate']:,} tx/s offered "
             f"({d['clients']} pgbench clients):", "",
             "| durability | tx/s | commit p50 ms | commit p99 ms | commit max ms |",
             "|---|--:|--:|--:|--:|"]
    for name in ("async", "sync"):
        run = d[name]
        lines.append(f"| {name} | {_num(run['achieved_tps'])} | {_num(run['p50_ms'], '{:,.1f}')} | "
                     f"{_num(run['p99_ms'], '{:,.1f}')} | {_num(run['max_ms'], '{:,.1f}')} |")
    lines.append(f"| sync adds | | {_num(d.get('added_p50_ms'), '{:+,.1f}')} | "
                 f"{_num(d['added_p99_ms'], '{:+,.1f}')} | |")
    return lines


def markdown(results: list[Result], goals: list[dict[str, Any]], command: str) -> str:
    lines = [f"Produced by `{command}`.", "",
             "| mode | workload | rows/s | x native | tx/s | lag p50 ms | lag p99 ms | "
             "lag max ms | CPU % | CPU µs/row | CPU µs/txn | peak RSS MB |",
             "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for r in results:
        lines.append(
            f"| {r.mode} | {r.workload} | {_num(r.rows_per_s)} | "
            f"{_num(r.ratio_to_native, '{:.2f}')} | {_num(r.txn_per_s)} | "
            f"{_num(r.lag_p50_ms)} | {_num(r.lag_p99_ms)} | {_num(r.lag_max_ms)} | "
            f"{_num(r.cpu_percent)} | {_num(r.cpu_us_per_row, '{:,.1f}')} | "
            f"{_num(r.cpu_us_per_txn)} | {_num(r.peak_rss_mb)} |")
    if any(anchor_of(r.mode) != "native" for r in results):
        lines += ["", "x native: against mariadb-native (MariaDB's own replication) for "
                  f"{', '.join(MARIADB_MODES)}; against native (PostgreSQL's own) for the "
                  "others."]
    lines += _commit_latency_table(results)
    lines += ["", "| target | measured | goal | met |", "|---|---|---|---|"]
    for g in goals:
        lines.append(f"| {g['name']} | {g['measured']} | {g['goal']} | "
                     f"{'yes' if g['met'] else '**no**'} |")
    return "\n".join(lines) + "\n"


def lag_svg(timelines: dict[str, list[tuple[float, float, int]]], title: str) -> str:
    """Max lag per 250 ms window over the stream workload, one line per mode."""
    width, height, left, bottom, top, right = 760, 320, 60, 40, 30, 110
    points = [p for series in timelines.values() for p in series]
    if not points:
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="60">'
                '<text x="10" y="30">no lag samples</text></svg>')
    t_max = max(p[0] for p in points) or 1.0
    lag_max = max(max(p[1] for p in points), 1.0)
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(t: float) -> float:
        return left + plot_w * t / t_max

    def y(lag: float) -> float:
        return top + plot_h * (1 - lag / lag_max)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             'font-family="sans-serif" font-size="11">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<text x="{left}" y="18" font-size="13">{title}</text>',
             f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
             'stroke="black"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="black"/>',
             f'<text x="{left + plot_w / 2 - 60}" y="{height - 8}">seconds into the stream</text>',
             f'<text x="8" y="{top + 10}">lag ms</text>']
    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<text x="{left - 6}" y="{y(frac * lag_max) + 4:.1f}" '
                     f'text-anchor="end">{frac * lag_max:,.0f}</text>')
        parts.append(f'<text x="{x(frac * t_max):.1f}" y="{top + plot_h + 14}" '
                     f'text-anchor="middle">{frac * t_max:.0f}</text>')
    for i, (mode, series) in enumerate(sorted(timelines.items())):
        colour = COLOURS.get(mode, "#333333")
        path = " ".join(f"{x(t):.1f},{y(lag):.1f}" for t, lag, _ in series)
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" '
                     f'points="{path}"/>')
        parts.append(f'<text x="{left + plot_w + 10}" y="{top + 14 + 16 * i}" '
                     f'fill="{colour}">{mode}</text>')
        last_rate = None
        for t, _lag, rate in series:  # where this mode's offered rate steps up
            if rate != last_rate:
                parts.append(f'<line x1="{x(t):.1f}" y1="{top}" x2="{x(t):.1f}" '
                             f'y2="{top + plot_h}" stroke="{colour}" stroke-opacity="0.35" '
                             'stroke-dasharray="3,3"/>')
                parts.append(f'<text x="{x(t) + 2:.1f}" y="{top + 10 + 11 * i}" '
                             f'fill="{colour}" font-size="9">{rate}/s</text>')
            last_rate = rate
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def terminal_chart(timelines: dict[str, list[tuple[float, float, int]]]) -> str:
    """One sparkline per mode: max lag per second of the stream workload."""
    bars = " ▁▂▃▄▅▆▇█"
    lines = []
    top = max((lag for series in timelines.values() for _, lag, _ in series), default=1.0)
    width = max([7, *(len(mode) for mode in timelines)])
    for mode, series in sorted(timelines.items()):
        per_second: dict[int, float] = {}
        for t, lag, _ in series:
            per_second[int(t)] = max(per_second.get(int(t), 0.0), lag)
        if not per_second:
            continue
        span = range(max(per_second) + 1)
        spark = "".join(bars[min(8, round(8 * per_second.get(s, 0.0) / top))] for s in span)
        lines.append(f"{mode:>{width}} |{spark}| max {max(per_second.values()):,.0f} ms")
    return "\n".join(lines)
