"""The console with an injected status source, driven by Pilot."""

from __future__ import annotations

import asyncio
from pathlib import Path

from textual.widgets import DataTable

from console.app import RingsyncConsole
from console.messages import StatusRefreshed
from console.widgets.ring_diagram import RingDiagram
from ringsync.client import NodeReply
from ringsync.config import CampusEntry, ClusterConfig
from ringsync.v1 import control_pb2 as cpb

RING = ("chaohui", "wangjiangshan", "yuecheng")
CLUSTER = ClusterConfig(
    path=Path("cluster.toml"), name="t", ring=RING, tables=("patients",),
    campuses=tuple(CampusEntry(c, f"127.0.0.1:{7000 + i}") for i, c in enumerate(RING)),
    client_tls=None,
)


def node(campus: str, rows: int, lag: float = 0.1, link_state: str = "streaming") -> NodeReply:
    nxt = RING[(RING.index(campus) + 1) % len(RING)]
    status = cpb.NodeStatus(
        campus=campus, engine="sqlite", database_healthy=True, journal_transactions=5,
        row_counts={"patients": rows},
        links=[cpb.LinkStatus(to=nxt, state=link_state, lag_transactions=2, lag_seconds=lag,
                              txns_per_second=12.0, successor=True)],
    )
    return NodeReply(campus, "addr", status, None)


class ScriptedSource:
    def __init__(self) -> None:
        self.down: set[str] = set()
        self.calls = 0
        self.closed = False

    async def status_all(self) -> list[NodeReply]:
        self.calls += 1
        return [
            NodeReply(c, "addr", None, "unreachable (connection refused)") if c in self.down
            else node(c, 10) for c in RING
        ]

    async def close(self) -> None:
        self.closed = True


async def test_ring_view_shows_links_nodes_and_agreement() -> None:
    source = ScriptedSource()
    app = RingsyncConsole(source, CLUSTER, poll_seconds=0.05)
    seen: list[StatusRefreshed] = []
    def hook(message: object) -> None:
        if isinstance(message, StatusRefreshed):
            seen.append(message)

    async with app.run_test(size=(160, 60), message_hook=hook) as pilot:
        await pilot.pause(0.3)
        assert seen and len(seen[-1].replies) == 3
        picture = app.screen.query_one(RingDiagram).render_ring().plain
        for campus in RING:
            assert campus in picture
        assert "0.10s 12 tx/s" in picture
        links = app.screen.query_one("#links", DataTable)
        assert links.row_count == 3
        assert "agree" in str(app.screen.query_one("#agreement").render())


async def test_down_node_is_shown_then_reattached() -> None:
    source = ScriptedSource()
    app = RingsyncConsole(source, CLUSTER, poll_seconds=0.05)
    async with app.run_test(size=(160, 60)) as pilot:
        source.down = {"yuecheng"}
        await pilot.pause(0.3)
        picture = app.screen.query_one(RingDiagram).render_ring().plain
        assert "DOWN" in picture and "sender down" in picture
        nodes = app.screen.query_one("#nodes", DataTable)
        states = {nodes.get_row_at(i)[0]: nodes.get_row_at(i)[1] for i in range(nodes.row_count)}
        assert states["yuecheng"] == "DOWN" and states["chaohui"] == "up"
        source.down = set()
        await pilot.pause(0.3)
        picture = app.screen.query_one(RingDiagram).render_ring().plain
        assert "DOWN" not in picture
        await pilot.press("q")
    assert source.closed


class JoiningSource(ScriptedSource):
    """yuecheng is copying its initial load from wangjiangshan."""

    async def status_all(self) -> list[NodeReply]:
        replies = await super().status_all()
        status = replies[2].status
        assert status is not None
        status.join.CopyFrom(cpb.JoinStatus(
            state="copying", donor="wangjiangshan", table="patients", rows_copied=3_000,
            rows_total=12_000, rows_per_second=1_500.0, eta_seconds=6.0))
        return replies


async def test_initial_load_progress_is_a_bar_with_rate_and_time_left() -> None:
    app = RingsyncConsole(JoiningSource(), CLUSTER, poll_seconds=0.05)
    async with app.run_test(size=(160, 60)) as pilot:
        await pilot.pause(0.3)
        joins = str(app.screen.query_one("#joins").render())
        assert "yuecheng" in joins and "█" * 7 + "░" in joins
        assert "3,000/12,000 rows (25%)" in joins and "1,500 rows/s" in joins
        assert "~6s left" in joins and "wangjiangshan" in joins
        picture = app.screen.query_one(RingDiagram).render_ring().plain
        assert "joining: 25%" in picture
        nodes = app.screen.query_one("#nodes", DataTable)
        states = {nodes.get_row_at(i)[0]: nodes.get_row_at(i)[1] for i in range(nodes.row_count)}
        assert states["yuecheng"] == "joining" and states["chaohui"] == "up"


class RoutedSource(ScriptedSource):
    """DR on: every node reports the routing map; chaohui's users may move."""

    def __init__(self, sets: dict[str, str] | None = None) -> None:
        super().__init__()
        self.serving = {c: c for c in RING} | (sets or {})

    async def status_all(self) -> list[NodeReply]:
        replies = await super().status_all()
        for r in replies:
            assert r.status is not None
            r.status.routing.CopyFrom(cpb.RoutingMap(
                dr_enabled=True, node=r.campus, leader="chaohui", lease_ok=True,
                routes=[cpb.Route(campus=c, serving=s, state="active", epoch=1,
                                  reason="initial", writer_epoch=int(c.startswith("set:")))
                        for c, s in self.serving.items()]))
        return replies


def dr_cluster() -> ClusterConfig:
    from ringsync.dr.settings import DRSettings

    return ClusterConfig(path=CLUSTER.path, name="t", ring=RING, tables=("patients",),
                         campuses=CLUSTER.campuses, client_tls=None,
                         dr=DRSettings(etcd=("127.0.0.1:2379",)))


class FakeMover:
    def __init__(self, source: RoutedSource) -> None:
        self.source = source
        self.calls: list[tuple[str, str, str]] = []

    async def move(self, campus, to, kind, say):
        self.calls.append((campus, to, kind))
        say(f"{kind}: {campus} draining")
        self.source.serving[campus] = to
        return {"ok": True, "seconds": 0.42}


async def test_switchover_dialog_moves_a_campus_and_shows_progress() -> None:
    source = RoutedSource()
    mover = FakeMover(source)
    cluster = dr_cluster()
    app = RingsyncConsole(source, cluster, poll_seconds=0.05, mover=mover)
    async with app.run_test(size=(160, 60)) as pilot:
        await pilot.pause(0.3)
        assert "chaohui → chaohui" in str(app.screen.query_one("#routes").render())
        await pilot.press("w")
        await pilot.pause(0.2)
        assert "switchover: chaohui's users from chaohui to wangjiangshan" in str(
            app.screen.query_one("#summary").render())
        await pilot.click("#confirm")
        await pilot.pause(0.4)
        assert mover.calls == [("chaohui", "wangjiangshan", "switchover")]
        assert "switchover done in 0.42s" in str(app.screen.query_one("#moves").render())
        assert "chaohui → wangjiangshan" in str(app.screen.query_one("#routes").render())
        # Back home: the dialog proposes the switchback.
        await pilot.press("w")
        await pilot.pause(0.2)
        await pilot.click("#confirm")
        await pilot.pause(0.4)
        assert mover.calls[-1] == ("chaohui", "chaohui", "switchback")


async def test_a_single_writer_sets_writer_is_shown_and_moved_from_the_dialog() -> None:
    from textual.widgets import Select

    source = RoutedSource(sets={"set:registry": "chaohui"})
    mover = FakeMover(source)
    cluster = dr_cluster()
    app = RingsyncConsole(source, cluster, poll_seconds=0.05, mover=mover)
    async with app.run_test(size=(160, 60)) as pilot:
        await pilot.pause(0.3)
        routes = str(app.screen.query_one("#routes").render())
        assert "set:registry: writer chaohui (epoch 1)" in routes
        await pilot.press("w")
        await pilot.pause(0.2)
        app.screen.query_one("#campus", Select).value = "set:registry"
        await pilot.pause(0.2)
        assert "switchover: set:registry's writer from chaohui to wangjiangshan" in str(
            app.screen.query_one("#summary").render())
        await pilot.click("#confirm")
        await pilot.pause(0.4)
        assert mover.calls == [("set:registry", "wangjiangshan", "switchover")]
        assert "set:registry: writer wangjiangshan" in str(
            app.screen.query_one("#routes").render())


async def test_switchover_is_refused_when_dr_is_off() -> None:
    source = ScriptedSource()
    app = RingsyncConsole(source, CLUSTER, poll_seconds=0.05, mover=None)
    async with app.run_test(size=(160, 60)) as pilot:
        await pilot.pause(0.2)
        await pilot.press("w")
        await pilot.pause(0.2)
        assert not isinstance(app.screen, type(None)) and app.screen.name == "ring"


# -- the verify screen (v) ---------------------------------------------------------

VERIFY_REPORT = {
    "consistent": False, "exit": 1, "settled": True, "in_flight_resolved": 0,
    "vector": {"chaohui": 85, "wangjiangshan": 57},
    "tables": {"patients": {
        "chaohui": {"rows": 120, "digest": "9f3c1a2b3c4d", "mode": "stock"},
        "wangjiangshan": {"rows": 119, "digest": "0a1b2c3d4e5f", "mode": "incremental"}}},
    "mismatched_tables": ["patients"],
    "differences": [
        {"table": "patients", "key": {"patient_id": "P-42"}, "kind": "missing",
         "state": "in_flight", "campuses": {"chaohui": "present", "wangjiangshan": "absent"}},
        {"table": "patients", "key": {"patient_id": "P-17 [sic]"}, "kind": "changed",
         "state": "diverged", "campuses": {"chaohui": "differs", "wangjiangshan": "differs"}},
    ],
    "campuses": {"chaohui": {"applied": {"wangjiangshan": 57}},
                 "wangjiangshan": {"applied": {"chaohui": 85}},
                 "yuecheng": {"error": "unreachable (connection refused)"}},
}


class FakeVerifier:
    """Says two progress lines, waits for ``gate`` if given, then returns the report
    (or raises ``error``)."""

    def __init__(self, gate: asyncio.Event | None = None, error: Exception | None = None):
        self.gate = gate
        self.error = error
        self.calls: list[tuple[list[str], bool]] = []

    async def verify(self, tables, full, say):
        self.calls.append((tables, full))
        say("patients: 2 campuses (1 from kept digests), 120 rows hashed in 0.1 s")
        say("patients: 1 bucket(s) differ; listing their rows")
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        return VERIFY_REPORT


def text_of(app, selector: str) -> str:
    return str(app.screen.query_one(selector).render())


async def open_verify_screen(pilot, app):
    """v from the ring screen, once the app has drawn: the verify screen."""
    from console.screens.verify import VerifyScreen

    await pilot.pause(0.2)
    await pilot.press("v")
    await pilot.pause(0.1)
    assert isinstance(app.screen, VerifyScreen)
    return app.screen


async def until_finished(pilot, screen) -> None:
    for _ in range(200):
        if not screen.running:
            return
        await pilot.pause(0.01)
    raise AssertionError("the verification did not finish")


async def test_verify_screen_runs_a_verification_and_shows_the_report() -> None:
    from textual.widgets import Log

    verifier = FakeVerifier()
    app = RingsyncConsole(ScriptedSource(), CLUSTER, poll_seconds=0.05, verifier=verifier)
    async with app.run_test(size=(160, 60)) as pilot:
        screen = await open_verify_screen(pilot, app)
        assert "Choose the tables" in text_of(app, "#verify-state")
        await pilot.press("enter")  # the start button has the focus
        await until_finished(pilot, screen)
        assert verifier.calls == [(["patients"], False)]
        assert list(screen.query_one(Log).lines) == [
            "verifying patients, default check",
            "patients: 2 campuses (1 from kept digests), 120 rows hashed in 0.1 s",
            "patients: 1 bucket(s) differ; listing their rows",
        ]
        assert "verified patients, default check in" in text_of(app, "#verify-state")
        verdict = text_of(app, "#verify-verdict")
        assert "DIVERGED: 1 row(s) still differ" in verdict
        assert "INCOMPLETE: yuecheng could not answer" in verdict
        assert "1 row(s) in flight" in verdict
        assert ("yuecheng could not answer: unreachable (connection refused)"
                in text_of(app, "#verify-campuses"))
        rows = screen.query_one("#verify-tables", DataTable)
        patients = rows.get_row_at(0)
        assert [str(c) for c in patients] == [
            "patients", "120  9f3c1a2b", "119  0a1b2c3d kept", "did not answer"]
        assert patients[0].style == "red"
        diffs = screen.query_one("#verify-differences", DataTable)
        assert diffs.row_count == 2
        first, second = diffs.get_row_at(0), diffs.get_row_at(1)  # diverged first
        assert [str(c) for c in first] == [
            "DIVERGED", "changed", "patients", '{"patient_id": "P-17 [sic]"}',
            "differs", "differs", "-"]
        assert first[0].style == "bold red" and first[4].style == "bold red"
        assert [str(c) for c in second] == [
            "in flight", "missing", "patients", '{"patient_id": "P-42"}',
            "present", "absent", "-"]
        assert second[0].style == "yellow" and second[4].style == ""
        fix = text_of(app, "#verify-fix")
        assert "ringsync ctl --cluster cluster.toml repair --table patients --dry-run" in fix
        assert """--key '{"patient_id": "P-17 [sic]"}'""" in fix
        assert "Rows in flight need no repair" in fix
        # One table, --full, again.
        from textual.widgets import Select

        screen.query_one("#verify-mode", Select).value = "full"
        screen.query_one("#verify-table", Select).value = "patients"
        await pilot.pause(0.3)  # the button ignores a press during its 0.2 s press effect
        await pilot.click("#verify-start")
        await until_finished(pilot, screen)
        assert verifier.calls[-1] == (["patients"], True)
        assert "verifying patients, --full" in screen.query_one(Log).lines
        await pilot.press("escape")
        await pilot.pause(0.1)
        assert app.screen.name == "ring"


async def test_a_second_start_is_refused_and_leaving_does_not_stop_the_verification() -> None:
    from console.screens.ring import RingScreen

    gate = asyncio.Event()
    verifier = FakeVerifier(gate=gate)
    source = ScriptedSource()
    app = RingsyncConsole(source, CLUSTER, poll_seconds=0.05, verifier=verifier)
    notes: list[str] = []
    async with app.run_test(size=(160, 60)) as pilot:
        app.notify = lambda message, **kw: notes.append(message)  # type: ignore[method-assign]
        screen = await open_verify_screen(pilot, app)
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert screen.running and "verifying patients" in text_of(app, "#verify-state")
        await pilot.press("enter")
        await pilot.pause(0.3)  # the button ignores a press during its 0.2 s press effect
        await pilot.click("#verify-start")
        await pilot.pause(0.1)
        assert len(verifier.calls) == 1
        assert sum("already running" in n for n in notes) == 2
        await pilot.press("escape")  # back to the ring while it runs
        await pilot.pause(0.1)
        assert isinstance(app.screen, RingScreen)
        assert any("keeps running" in n for n in notes)
        polls = source.calls
        await pilot.pause(0.2)
        assert source.calls > polls  # the ring screen keeps refreshing
        gate.set()
        await until_finished(pilot, screen)
        await pilot.pause(0.05)
        assert "verification finished: DIVERGED (v shows it)" in notes
        await pilot.press("v")  # the same screen, with the report
        await pilot.pause(0.1)
        assert app.screen is screen
        assert "DIVERGED" in text_of(app, "#verify-verdict")
        assert screen.query_one("#verify-differences", DataTable).row_count == 2


async def test_a_failed_verification_is_shown_not_raised() -> None:
    verifier = FakeVerifier(error=RuntimeError("unreachable (no route to host)"))
    app = RingsyncConsole(ScriptedSource(), CLUSTER, poll_seconds=0.05, verifier=verifier)
    async with app.run_test(size=(160, 60)) as pilot:
        screen = await open_verify_screen(pilot, app)
        await pilot.press("enter")
        await until_finished(pilot, screen)
        error = screen.query_one("#verify-error")
        assert error.display
        assert "verification failed: unreachable (no route to host)" in text_of(
            app, "#verify-error")
        assert "failed after" in text_of(app, "#verify-state")
        assert not screen.query_one("#verify-result").display
        verifier.error = None  # it can run again, and then shows the report
        await pilot.pause(0.3)  # the button ignores a press during its 0.2 s press effect
        await pilot.press("enter")
        await until_finished(pilot, screen)
        assert not error.display and screen.query_one("#verify-result").display


async def test_verify_is_refused_without_a_verifier() -> None:
    app = RingsyncConsole(ScriptedSource(), CLUSTER, poll_seconds=0.05)
    async with app.run_test(size=(160, 60)) as pilot:
        await pilot.pause(0.1)
        await pilot.press("v")
        await pilot.pause(0.1)
        assert app.screen.name == "ring"


class LeafSource(ScriptedSource):
    """chaohui reports two leaves: one online, one offline for most of its retention."""

    async def status_all(self) -> list[NodeReply]:
        replies = await super().status_all()
        status = replies[0].status
        assert status is not None
        status.leaves.extend([
            cpb.LeafStatus(name="sat-1", parent="chaohui", online=True, retention_hours=72,
                           uploads=True, rows_sent=40, rows_moved_in=2, rows_moved_out=1),
            cpb.LeafStatus(name="clinic", parent="chaohui", online=False, lag_transactions=900,
                           lag_seconds=0.9 * 72 * 3600, retention_hours=72, unjudged=3,
                           error="unreachable")])
        return replies


async def test_leaves_are_shown_under_their_parents_with_lag_and_retention() -> None:
    app = RingsyncConsole(ScriptedSource(), CLUSTER, poll_seconds=0.05)
    async with app.run_test(size=(160, 60)) as pilot:
        await pilot.pause(0.3)
        assert not app.screen.query_one("#leaves", DataTable).display  # none: not shown
    app = RingsyncConsole(LeafSource(), CLUSTER, poll_seconds=0.05)
    async with app.run_test(size=(160, 60)) as pilot:
        await pilot.pause(0.3)
        leaves = app.screen.query_one("#leaves", DataTable)
        assert leaves.display and leaves.row_count == 2
        rows = [[str(c) for c in leaves.get_row_at(i)] for i in range(2)]
        assert rows[0][:3] == ["chaohui └ sat-1", "[green]online[/]", "0"]
        assert "0% of 72h" in rows[0][4] and "2/1 in/out" in rows[0][5]
        assert rows[1][:3] == ["chaohui └ clinic", "[yellow]offline[/]", "900"]
        assert "[red]█████████" in rows[1][4] and "90% of 72h" in rows[1][4]
        assert "3 held back" in rows[1][5] and rows[1][6] == "read-only"
        assert rows[1][7] == "unreachable" and rows[0][6] == ""
