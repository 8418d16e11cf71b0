"""Snapshot tests of the console: what the operator sees, pinned as SVG screenshots.

Each test drives the real app (RingsyncConsole) with a scripted status source
and compares a screenshot with the accepted one in __snapshots__/ next to
this file (pytest-textual-snapshot, on syrupy).

Determinism: the source plays a fixed list of status frames, then blocks
forever, so the app takes exactly that many samples whatever the machine's
speed; the test waits until the app has drawn the last one. Nothing on the
screen reads the wall clock (no header clock; the lag chart is one sample per
frame). The terminal size is fixed, and NO_COLOR is ignored.

After an intended change to what the console shows, look at the failure
report (snapshot_report.html), then accept the new pictures with

    .venv/bin/python -m pytest tests/unit/console/test_console_snapshots.py --snapshot-update

and commit the changed files in __snapshots__/.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Label

from console.app import RingsyncConsole
from console.screens.switchover import SwitchoverDialog
from console.screens.verify import VerifyScreen
from ringsync.client import NodeReply
from ringsync.config import CampusEntry, ClusterConfig
from ringsync.dr.settings import DRSettings
from ringsync.v1 import control_pb2 as cpb

RING = ("chaohui", "wangjiangshan", "yuecheng")
TERMINAL_SIZE = (160, 50)
FRAMES = 40  # status polls before the screenshot: the lag chart's history


def cluster(dr: bool) -> ClusterConfig:
    return ClusterConfig(
        path=Path("cluster.toml"), name="snapshots", ring=RING, tables=("patients", "visits"),
        campuses=tuple(CampusEntry(c, f"127.0.0.1:{7000 + i}") for i, c in enumerate(RING)),
        client_tls=None, dr=DRSettings(etcd=("127.0.0.1:2379",)) if dr else DRSettings(),
    )


def successor(campus: str) -> str:
    return RING[(RING.index(campus) + 1) % len(RING)]


def lag_at(frame: int, campus: str) -> float:
    """A made-up but fixed lag curve per link: a burst that drains."""
    phase = RING.index(campus)
    return round(0.05 + 1.5 * math.exp(-((frame - 12 - 6 * phase) ** 2) / 30.0), 2)


def streaming(campus: str, frame: int, rows: int = 1_204) -> cpb.NodeStatus:
    return cpb.NodeStatus(
        campus=campus, engine="sqlite", database_healthy=True,
        journal_transactions=318 + 7 * RING.index(campus), journal_bytes=96_512,
        row_counts={"patients": rows, "visits": 5_310},
        links=[cpb.LinkStatus(to=successor(campus), state="streaming", lag_transactions=3,
                              lag_seconds=lag_at(frame, campus), txns_per_second=14.0,
                              rows_per_second=42.0, successor=True)],
    )


def reply(status: cpb.NodeStatus) -> NodeReply:
    return NodeReply(status.campus, "addr", status, None)


def with_routes(replies: list[NodeReply]) -> list[NodeReply]:
    """DR on: every node reports the routing map, every campus served at home."""
    for r in replies:
        assert r.status is not None
        r.status.routing.CopyFrom(cpb.RoutingMap(
            dr_enabled=True, node=r.campus, leader="chaohui", lease_ok=True,
            routes=[cpb.Route(campus=c, serving=c, state="active", epoch=1, reason="initial")
                    for c in RING]))
    return replies


def healthy_ring(frame: int) -> list[NodeReply]:
    return with_routes([reply(streaming(c, frame)) for c in RING])


def yuecheng_down(frame: int) -> list[NodeReply]:
    """yuecheng does not answer; wangjiangshan heals past it to chaohui."""
    wangjiangshan = streaming("wangjiangshan", frame)
    del wangjiangshan.links[:]
    wangjiangshan.links.extend([
        cpb.LinkStatus(to="yuecheng", state="down", lag_transactions=41, successor=True,
                       error="connect: connection refused"),
        cpb.LinkStatus(to="chaohui", state="healing", lag_transactions=2,
                       lag_seconds=lag_at(frame, "wangjiangshan"), txns_per_second=13.0,
                       rows_per_second=39.0, successor=False),
    ])
    return [reply(streaming("chaohui", frame)), reply(wangjiangshan),
            NodeReply("yuecheng", "addr", None, "unreachable (connection refused)")]


def yuecheng_joining(frame: int) -> list[NodeReply]:
    """yuecheng copies its initial load from wangjiangshan, a quarter done."""
    yuecheng = streaming("yuecheng", frame, rows=3_000)
    yuecheng.join.CopyFrom(cpb.JoinStatus(
        state="copying", donor="wangjiangshan", table="patients", rows_copied=3_000,
        rows_total=12_000, rows_per_second=1_500.0, eta_seconds=6.0))
    del yuecheng.links[:]
    return [reply(streaming("chaohui", frame)), reply(streaming("wangjiangshan", frame)),
            reply(yuecheng)]


def diverged_verification(frame: int) -> list[NodeReply]:
    """The last scheduled verification found rows that differ: every node holds
    the report and raises its alert; chaohui's apply also waits."""
    replies = [reply(streaming(c, frame)) for c in RING]
    alert = ("verification at 2026-12-02 02:30 UTC (run by chaohui) found 3 diverged row(s): "
             "ringsync ctl verify lists them, ctl repair fixes them")
    for r in replies:
        assert r.status is not None
        r.status.verify.CopyFrom(cpb.VerifySummary(
            scheduled=True, last_at=1_796_178_600.0, coordinator="chaohui", consistent=False,
            diverged=3, in_flight=1, next_due=1_796_265_000.0))
        r.status.alerts.append(alert)
    assert replies[0].status is not None
    replies[0].status.alerts.append("apply waiting capture for 35s, waiting for capture to "
                                    "journal a local change (patients ['P-1'] [sic])")
    return replies


class ScriptedFrames:
    """Plays one status frame per poll, then blocks: the number of samples is fixed."""

    def __init__(self, frame: Callable[[int], list[NodeReply]], frames: int = FRAMES) -> None:
        self.frames = [frame(i) for i in range(frames)]
        self.played = 0

    async def status_all(self) -> list[NodeReply]:
        if self.played == len(self.frames):
            await asyncio.Event().wait()  # never set: the app cancels this poll on exit
        self.played += 1
        return self.frames[self.played - 1]

    async def close(self) -> None:
        pass


class RefusingMover:
    """The dialog is only looked at, never confirmed."""

    async def move(self, campus: str, to: str, kind: str,
                   say: Callable[[str], None]) -> dict[str, Any]:
        raise AssertionError("a snapshot test moved a campus")


VERIFY_REPORT: dict[str, Any] = {
    "consistent": False, "exit": 1, "settled": True, "in_flight_resolved": 1,
    "vector": {"chaohui": 325, "wangjiangshan": 332},
    "tables": {t: {c: {"rows": rows, "digest": digest, "mode": mode}
                   for c, rows, digest, mode in campuses}
               for t, campuses in (
                   ("patients", [("chaohui", 1_204, "9f3c1a2b77e0", "incremental"),
                                 ("wangjiangshan", 1_203, "41d07c9e0b3a", "incremental")]),
                   ("visits", [("chaohui", 5_310, "c0ffee12ab34", "stock"),
                               ("wangjiangshan", 5_310, "c0ffee12ab34", "stock")]))},
    "mismatched_tables": ["patients"],
    "differences": [
        {"table": "patients", "key": {"patient_id": "P-0042"}, "kind": "missing",
         "state": "in_flight", "campuses": {"chaohui": "present", "wangjiangshan": "absent"}},
        {"table": "patients", "key": {"patient_id": "P-0017"}, "kind": "changed",
         "state": "diverged", "campuses": {"chaohui": "differs", "wangjiangshan": "differs"}},
    ],
    "campuses": {"chaohui": {"applied": {"wangjiangshan": 332}},
                 "wangjiangshan": {"applied": {"chaohui": 325}},
                 "yuecheng": {"error": "unreachable (failed to connect to all addresses)"}},
}


class ScriptedVerifier:
    """Says the progress lines a real run says, returns a fixed report."""

    async def verify(self, tables: list[str], full: bool,
                     say: Callable[[str], None]) -> dict[str, Any]:
        say("patients: 2 campuses (2 from kept digests), 0 rows hashed in 0.0 s (0 rows/s), "
            "32 buckets")
        say("patients: 1 bucket(s) differ; listing their rows")
        say("visits: 2 campuses (0 from kept digests), 10,620 rows hashed in 0.1 s "
            "(106,200 rows/s), 128 buckets")
        say("2 row(s) differ; confirming after the ring has applied what was in flight "
            "(up to 30 s a round)")
        return VERIFY_REPORT


class SteppingClock:
    """A verification that always takes 12.4 s: the start, then 12.4 s later forever."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> float:
        self.calls += 1
        return 1_000.0 if self.calls == 1 else 1_012.4


def console(frame: Callable[[int], list[NodeReply]], dr: bool = False) -> RingsyncConsole:
    return RingsyncConsole(ScriptedFrames(frame), cluster(dr), poll_seconds=0.0,
                           mover=RefusingMover() if dr else None,
                           verifier=ScriptedVerifier(), clock=SteppingClock())


async def all_frames_drawn(pilot: Pilot[None]) -> None:
    app = pilot.app
    assert isinstance(app, RingsyncConsole)
    while app.refreshes < FRAMES:  # each pause lets the app handle what is queued
        await pilot.pause()


async def switchover_dialog_open(pilot: Pilot[None]) -> None:
    await all_frames_drawn(pilot)
    await pilot.press("w")
    while not (isinstance(pilot.app.screen, SwitchoverDialog)
               and pilot.app.screen.query_one("#summary", Label).content):
        await pilot.pause()  # until the dialog has mounted and summarised the choice


async def verification_finished(pilot: Pilot[None]) -> None:
    await all_frames_drawn(pilot)
    await pilot.press("v")
    while not isinstance(pilot.app.screen, VerifyScreen):
        await pilot.pause()
    screen = pilot.app.screen
    await pilot.press("enter")  # the start button has the focus
    start = screen.query_one("#verify-start")
    while screen.running or screen.report is None or start.has_class("-active"):
        await pilot.pause()  # until the report is drawn and the button's press effect is over


SnapCompare = Callable[..., bool]


@pytest.fixture(autouse=True)
def colours_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """NO_COLOR in the runner's environment would turn the app monochrome."""
    monkeypatch.delenv("NO_COLOR", raising=False)


def test_healthy_ring(snap_compare: SnapCompare) -> None:
    assert snap_compare(console(healthy_ring, dr=True), terminal_size=TERMINAL_SIZE,
                        run_before=all_frames_drawn)


def test_a_campus_down(snap_compare: SnapCompare) -> None:
    assert snap_compare(console(yuecheng_down), terminal_size=TERMINAL_SIZE,
                        run_before=all_frames_drawn)


def test_a_campus_joining(snap_compare: SnapCompare) -> None:
    assert snap_compare(console(yuecheng_joining), terminal_size=TERMINAL_SIZE,
                        run_before=all_frames_drawn)


def test_alerts_and_a_diverged_verification(snap_compare: SnapCompare) -> None:
    assert snap_compare(console(diverged_verification), terminal_size=TERMINAL_SIZE,
                        run_before=all_frames_drawn)


def test_switchover_dialog_open(snap_compare: SnapCompare) -> None:
    assert snap_compare(console(healthy_ring, dr=True), terminal_size=TERMINAL_SIZE,
                        run_before=switchover_dialog_open)


def test_verification_report(snap_compare: SnapCompare) -> None:
    assert snap_compare(console(healthy_ring, dr=True), terminal_size=TERMINAL_SIZE,
                        run_before=verification_finished)
