"""Pure logic of `ringsync bench`: arguments, ratios, targets, the report files."""

from __future__ import annotations

import argparse

import pytest

from ringsync.commands.bench import report
from ringsync.commands.bench.run import _choice, add_arguments
from ringsync.commands.bench.scenarios import Result, percentile
from ringsync.errors import RingsyncError


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(list(argv))


def test_bad_arguments_are_refused_with_what_to_give(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("--rates", "1000,fast")
    assert "'fast' is not a positive whole number" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse("--step-seconds", "0")
    assert parse("--rates", "500, 2000").rates == (500, 2000)
    with pytest.raises(RingsyncError, match="pick from native,hop,ring,sqlite"):
        _choice("hop,warp", ("native", "hop", "ring", "sqlite"), "modes")
    assert _choice("sqlite,native", ("native", "hop", "ring", "sqlite"), "modes") == [
        "native", "sqlite"]  # native first: the ratios need it


def step(rate: int, achieved: float, p99: float, rss: float = 80.0) -> dict:
    return {"rate": rate, "achieved_tps": achieved, "lag_p99_ms": p99, "peak_rss_mb": rss}


def results() -> list[Result]:
    return [
        Result("native", "bulk", 100_000, 10, 10, 10, 50, 20),
        Result("native", "stream", 8_000, 5, 9, 20, 30, 20),
        Result("hop", "bulk", 80_000, 20, 20, 20, 120, 90),
        Result("hop", "stream", 4_000, 100, 250, 300, 110, 95,
               detail={"steps": [step(1000, 1000, 120), step(2000, 1990, 250, 150),
                                 step(5000, 4000, 200, 99)]}),
        Result("hop", "catchup", 30_000, None, None, None, 90, 90, detail={"speedup": 12.5}),
        Result("ring", "ring", 6_000, 200, 1_200, 1_500, 150, 99,
               detail={"rate_per_campus": 1000}),
    ]


def test_ratios_are_taken_against_native_of_the_same_workload() -> None:
    rs = results()
    report.add_ratios(rs)
    by = {(r.mode, r.workload): r.ratio_to_native for r in rs}
    assert by[("native", "bulk")] == 1.0
    assert by[("hop", "bulk")] == pytest.approx(0.8)
    assert by[("hop", "stream")] == pytest.approx(0.5)
    assert by[("hop", "catchup")] is None  # no native catch-up in this run
    assert by[("ring", "ring")] is None


def test_targets_read_the_right_figures_and_say_met_or_not() -> None:
    rs = results()
    report.add_ratios(rs)
    goals = {g["name"].split(":")[0].split(" ")[0]: g for g in report.targets(rs)}
    assert goals["bulk"]["met"] is True and goals["bulk"]["measured"].startswith("0.80x")
    # 5,000 tx/s was offered but only 4,000 reached: the best step within 300 ms is 2,000
    assert goals["stream"]["met"] is False and "1,990 tx/s" in goals["stream"]["measured"]
    assert goals["node"]["met"] is True and goals["node"]["measured"] == "150 MB"
    assert goals["ring"]["met"] is False and goals["ring"]["measured"] == "1200 ms"
    assert goals["catch-up"]["met"] is True
    table = report.markdown(rs, report.targets(rs), "ringsync bench --quick")
    assert "| hop | bulk | 80,000 | 0.80 |" in table and "**no**" in table


def test_percentile_and_the_lag_plot() -> None:
    assert percentile([float(i) for i in range(1, 101)], 0.99) == 100.0
    assert percentile([3.0], 0.5) == 3.0
    svg = report.lag_svg({"hop": [(0.0, 10.0, 1000), (1.0, 30.0, 2000)],
                          "native": [(0.0, 1.0, 1000)]}, "t")
    assert svg.count("<polyline") == 2 and "2000/s" in svg
    assert "no lag samples" in report.lag_svg({}, "t")
    chart = report.terminal_chart({"hop": [(0.2, 10.0, 1000), (1.5, 40.0, 1000)]})
    assert chart.startswith("    hop |") and "max 40 ms" in chart
