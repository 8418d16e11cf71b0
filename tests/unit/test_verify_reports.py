"""The reports a node keeps: newest last, trimmed, torn lines skipped, and
what status and the history show of one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from node.verify.reports import MAX_DIFFERENCES_KEPT, ReportStore, parse_report, trimmed
from ringsync.errors import ProtocolError
from ringsync.verification import summarize


def report(at: float, diverged: int = 0, in_flight: int = 0) -> dict:
    diffs = ([{"state": "diverged"}] * diverged) + ([{"state": "in_flight"}] * in_flight)
    return {"at": at, "coordinator": "a", "consistent": not diffs, "differences": diffs,
            "campuses": {"a": {"applied": {}}, "c": {"error": "down"}}, "tables": {"t": {}}}


def test_the_newest_are_kept_and_survive_a_torn_line(tmp_path: Path) -> None:
    store = ReportStore(tmp_path / "r.jsonl", keep=3)
    assert store.latest() is None and store.history() == []
    for i in range(5):
        store.add(report(float(i)))
    assert [r["at"] for r in store.history()] == [2.0, 3.0, 4.0]
    with (tmp_path / "r.jsonl").open("a") as f:
        f.write('{"at": 9, "torn')
    again = ReportStore(tmp_path / "r.jsonl", keep=3)
    assert again.latest()["at"] == 4.0 and again.skipped == 1


def test_a_big_report_is_trimmed_and_its_diverged_rows_still_counted() -> None:
    big = report(1.0, diverged=MAX_DIFFERENCES_KEPT + 5, in_flight=2)
    small = trimmed(big)
    assert len(small["differences"]) == MAX_DIFFERENCES_KEPT
    s = summarize(small)
    assert s["diverged"] == MAX_DIFFERENCES_KEPT + 5 and s["campuses_failed"] == ["c"]


def test_a_report_from_a_peer_is_checked() -> None:
    assert parse_report(json.dumps(report(1.0)))["at"] == 1.0
    for bad in ("nope", "[]", '{"differences": []}', '{"at": 1, "differences": 3}'):
        with pytest.raises(ProtocolError):
            parse_report(bad)
