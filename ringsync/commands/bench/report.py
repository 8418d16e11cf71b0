"""Turning measurements into what people read: ratios, targets, tables, a lag plot.

Every ratio is taken against the native run of the same workload in the same
invocation, so a noisy machine moves both sides together. Targets are
reported as met or not; nothing here fails a build.
"""

from __future__ import annotations

from typing import Any

from ringsync.commands.bench.scenarios import Result

COLOURS = {"native": "#1f77b4", "hop": "#d62728", "sqlite": "#2ca02c", "ring": "#9467bd"}


def add_ratios(results: list[Result]) -> None:
    native = {r.workload: r for r in results if r.mode == "native"}
    for r in results:
        anchor = native.get(r.workload)
        if anchor is not None and anchor.rows_per_s > 0:
            r.ratio_to_native = r.rows_per_s / anchor.rows_per_s


def _find(results: list[Result], mode: str, workload: str) -> Result | None:
    return next((r for r in results if r.mode == mode and r.workload == workload), None)


def targets(results: list[Result]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(name: str, measured: str, goal: str, met: bool) -> None:
        out.append({"name": name, "measured": measured, "goal": goal, "met": met})

    bulk = _find(results, "hop", "bulk")
    if bulk is not None and bulk.ratio_to_native is not None:
        add("bulk rows/s per hop vs native", f"{bulk.ratio_to_native:.2f}x "
            f"({bulk.rows_per_s:,.0f} rows/s)", ">= 0.7x (aim 1.0x)", bulk.ratio_to_native >= 0.7)
    stream = _find(results, "hop", "stream")
    if stream is not None:
        within = [s for s in stream.detail["steps"]
                  if s["achieved_tps"] >= 0.9 * s["rate"] and s["lag_p99_ms"] is not None
                  and s["lag_p99_ms"] <= 300]
        best = max(within, key=lambda s: s["rate"], default=None)
        measured = (f"{best['achieved_tps']:,.0f} tx/s at p99 {best['lag_p99_ms']:.0f} ms"
                    if best else "no rate tried kept p99 <= 300 ms")
        add("stream: sustained tx/s per hop with p99 lag <= 300 ms", measured,
            ">= 5,000 tx/s", best is not None and best["achieved_tps"] >= 5000)
        peak = max(s["peak_rss_mb"] for s in stream.detail["steps"])
        add("node peak RSS under the stream load", f"{peak:.0f} MB", "<= 200 MB", peak <= 200)
    ring = _find(results, "ring", "ring")
    if ring is not None:
        rate = ring.detail["rate_per_campus"]
        p99 = ring.lag_p99_ms
        add(f"ring: p99 lag to the farthest campus, 3 campuses x {rate} tx/s",
            f"{p99:.0f} ms" if p99 is not None else "no rows arrived", "<= 1,000 ms (at 1,000 "
            "tx/s per campus)", p99 is not None and p99 <= 1000 and rate >= 1000)
    catchup = _find(results, "hop", "catchup")
    if catchup is not None:
        speedup = catchup.detail["speedup"]
        add("catch-up: backlog drained faster than written", f"{speedup:.1f}x", ">= 10x",
            speedup >= 10)
    soak = _find(results, "hop", "soak")
    if soak is not None:
        growth = soak.detail["rss_growth_percent"]
        add(f"node memory bounded in a {soak.seconds / 60:.0f}-minute soak",
            f"{growth:+.0f} % RSS (first to last tenth), peak {soak.peak_rss_mb:.0f} MB",
            "<= +10 % over 10 minutes", growth <= 10 and soak.seconds >= 600)
    return out


def _num(v: float | None, fmt: str = "{:,.0f}") -> str:
    return "-" if v is None else fmt.format(v)


def markdown(results: list[Result], goals: list[dict[str, Any]], command: str) -> str:
    lines = [f"Produced by `{command}`.", "",
             "| mode | workload | rows/s | x native | tx/s | lag p50 ms | lag p99 ms | "
             "lag max ms | CPU % | peak RSS MB |",
             "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for r in results:
        lines.append(
            f"| {r.mode} | {r.workload} | {_num(r.rows_per_s)} | "
            f"{_num(r.ratio_to_native, '{:.2f}')} | {_num(r.txn_per_s)} | "
            f"{_num(r.lag_p50_ms)} | {_num(r.lag_p99_ms)} | {_num(r.lag_max_ms)} | "
            f"{_num(r.cpu_percent)} | {_num(r.peak_rss_mb)} |")
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
    for mode, series in sorted(timelines.items()):
        per_second: dict[int, float] = {}
        for t, lag, _ in series:
            per_second[int(t)] = max(per_second.get(int(t), 0.0), lag)
        if not per_second:
            continue
        span = range(max(per_second) + 1)
        spark = "".join(bars[min(8, round(8 * per_second.get(s, 0.0) / top))] for s in span)
        lines.append(f"{mode:>7} |{spark}| max {max(per_second.values()):,.0f} ms")
    return "\n".join(lines)
