"""The verify screen: run a verification from the console, watch it, read its report.

Pushed with ``v`` from the ring screen. The operator picks every table or one,
the default check or ``--full``, and starts it (Enter or the button). The work
is the library's (ringsync.verification through the injected Verifier: the
same code as ``ringsync ctl verify``); it runs in a worker of this screen while
the ring screen keeps refreshing. The app installs this screen once, so
leaving it (Escape) while a verification runs does not stop it: ``v`` shows
its progress again, then its report.

The console only reads: for rows that diverged the screen prints the
``ringsync ctl repair`` commands that fix them (repair needs an operator
certificate).
"""

from __future__ import annotations

import json
import logging
import shlex
from collections.abc import Callable, Mapping
from typing import Any

from rich.markup import escape
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import Button, DataTable, Footer, Header, Label, Log, Select, Static

from console.source import Verifier
from ringsync.config import ClusterConfig

log = logging.getLogger(__name__)

EVERY_TABLE = "*"  # the table choice meaning every replicated table
MAX_DIFFERENCES_SHOWN = 500  # beyond this, ctl verify --json lists them
STATE_LABEL = {"diverged": "DIVERGED", "in_flight": "in flight"}
STATE_STYLE = {"diverged": "bold red", "in_flight": "yellow"}


def _differences(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [d for d in report.get("differences", []) if isinstance(d, dict)]


def failed_campuses(report: Mapping[str, Any]) -> list[str]:
    return [c for c, v in report.get("campuses", {}).items()
            if isinstance(v, dict) and "error" in v]


def verdict_text(report: Mapping[str, Any]) -> str:
    """The headline and what it means, in console markup."""
    diffs = _differences(report)
    diverged = sum(d.get("state") == "diverged" for d in diffs)
    in_flight = len(diffs) - diverged
    failed = failed_campuses(report)
    if report.get("consistent"):
        return (f"[b green]CONSISTENT[/]: [green]every campus holds the same rows "
                f"({len(report.get('tables', {}))} table(s) compared)[/]")
    lines = []
    if diverged:
        lines.append(f"[b red]DIVERGED[/]: [red]{diverged} row(s) still differ after the ring "
                     f"settled: changed where replication did not see it[/]")
    if failed:
        lines.append(f"[b yellow]INCOMPLETE[/]: [yellow]{escape(', '.join(failed))} could not "
                     f"answer; the other campuses were compared[/]")
    if in_flight:
        lines.append(f"[yellow]{in_flight} row(s) in flight: changes still travelling the "
                     f"ring, not damage (verify again to confirm)[/]")
    if not report.get("settled", True):
        lines.append("[yellow]the ring did not catch up within the wait: rows that still "
                     "differ are reported in flight[/]")
    return "\n".join(lines) or "[yellow]not consistent[/]"


def campuses_text(report: Mapping[str, Any]) -> str:
    """Campuses that could not answer, with why, and kept digests that drifted."""
    lines = []
    for campus, state in report.get("campuses", {}).items():
        if not isinstance(state, dict):
            continue
        if "error" in state:
            lines.append(f"[red]{escape(campus)} could not answer: "
                         f"{escape(str(state['error']))}[/]")
        if state.get("drift"):
            lines.append(f"[yellow]{escape(campus)}: kept digests of "
                         f"{escape(', '.join(map(str, state['drift'])))} disagreed with the "
                         f"rows (a write bypassed their triggers); the node rebuilt them[/]")
    resolved = report.get("in_flight_resolved", 0)
    if resolved:
        lines.append(f"[dim]{resolved} more row(s) differed at first, then caught up while "
                     f"verifying (they were in flight; not listed)[/]")
    return "\n".join(lines)


def fix_text(report: Mapping[str, Any], cluster_path: str) -> str:
    """What the operator does next: the repair commands, or verify again."""
    diffs = _differences(report)
    diverged = [d for d in diffs if d.get("state") == "diverged"]
    ctl = f"ringsync ctl --cluster {shlex.quote(cluster_path)}"
    lines = []
    if diverged:
        lines.append("[b]To repair[/] (from a shell with an operator certificate; the console "
                     "only reads):")
        for table in sorted({str(d.get("table")) for d in diverged}):
            repair = f"  {escape(ctl)} repair --table {escape(shlex.quote(table))}"
            lines.append(f"{repair} --dry-run   [dim]# the plan: which copy it keeps and why; "
                         f"changes nothing[/]")
            lines.append(f"{repair}   [dim]# repairs the diverged rows as the plan says[/]")
        key = shlex.quote(json.dumps(diverged[0].get("key"), ensure_ascii=False))
        lines.append(f"  one row only: add --key {escape(key)}; to keep one campus's copy "
                     f"instead: add --from CAMPUS")
        lines.append("Repair verifies first and changes only the rows it confirms diverged "
                     "(docs/verification.md, Repair).")
    if len(diverged) < len(diffs):
        lines.append("Rows in flight need no repair: verify again (Enter) once the ring "
                     "has caught up.")
    if failed_campuses(report):
        lines.append("Campuses that did not answer: check them (ring screen, ringsync ctl "
                     "status), then verify again.")
    return "\n".join(lines)


def _cell(text: str, style: str = "") -> Text:
    return Text(text, style=style)  # plain Text: keys and errors are not markup


class VerifyScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "back", "back to the ring"),
        Binding("enter", "start", "start verification"),
    ]

    def __init__(self, cluster: ClusterConfig, verifier: Verifier,
                 clock: Callable[[], float]) -> None:
        super().__init__(name="verify")
        self.cluster = cluster
        self.verifier = verifier
        self.clock = clock
        self.running = False
        self.what = ""  # what the last verification checked, in words
        self.started_at = 0.0
        self.seconds = 0.0  # how long the last one took
        self.report: dict[str, Any] | None = None
        self.error = ""

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="verify-body"):
            with Horizontal(id="verify-controls"):
                yield Label("tables")
                yield Select([(f"every table ({len(self.cluster.tables)})", EVERY_TABLE),
                              *((t, t) for t in self.cluster.tables)],
                             value=EVERY_TABLE, allow_blank=False, id="verify-table")
                yield Label("check")
                yield Select([("default: kept digests where campuses keep them", "default"),
                              ("--full: hash every row", "full")],
                             value="default", allow_blank=False, id="verify-mode")
                yield Button("start", variant="primary", id="verify-start")
            yield Static("", id="verify-state")
            yield Log(id="verify-log", max_lines=2_000)
            yield Static("", id="verify-error")
            with Vertical(id="verify-result"):
                yield Static("", id="verify-verdict")
                yield DataTable(id="verify-tables", cursor_type="row", zebra_stripes=True)
                yield Static("", id="verify-campuses")
                yield DataTable(id="verify-differences", cursor_type="row", zebra_stripes=True)
                yield Static("", id="verify-fix")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#verify-log", Log).border_title = "progress"
        tables = self.query_one("#verify-tables", DataTable)
        tables.border_title = "rows per campus (digest)"
        tables.add_columns("table", *self.cluster.ring)
        diffs = self.query_one("#verify-differences", DataTable)
        diffs.border_title = "rows that differ"
        diffs.add_columns("state", "kind", "table", "key", *self.cluster.ring)
        self.query_one("#verify-result").display = False
        self.query_one("#verify-error").display = False
        self.query_one("#verify-start", Button).focus()
        self.set_interval(1.0, self._tick)
        self._show_state()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "verify-start":
            self.action_start()

    def action_back(self) -> None:
        if self.running:
            self.notify("the verification keeps running; v shows it again")
        self.app.pop_screen()

    def action_start(self) -> None:
        if self.running:
            self.notify(f"a verification is already running ({self.what}, "
                        f"{self.clock() - self.started_at:.0f} s so far): wait for its "
                        f"report", severity="warning", markup=False)
            return
        table = str(self.query_one("#verify-table", Select).value)
        full = self.query_one("#verify-mode", Select).value == "full"
        tables = list(self.cluster.tables) if table == EVERY_TABLE else [table]
        self.running = True  # now, not in the worker: a second Enter is refused at once
        self.what = f"{', '.join(tables)}, {'--full' if full else 'default check'}"
        self.started_at = self.clock()
        self.report, self.error = None, ""
        self.query_one("#verify-log", Log).clear()
        self.query_one("#verify-result").display = False
        self.query_one("#verify-error").display = False
        self._say(f"verifying {self.what}")
        self._show_state()
        self.verify(tables, full)

    @work(exclusive=True, group="verify")
    async def verify(self, tables: list[str], full: bool) -> None:
        report: dict[str, Any] | None = None
        try:
            report = await self.verifier.verify(tables, full, self._say)
        except Exception as e:  # shown on the screen, in the console log with its traceback
            log.exception("verification failed")
            self.error = str(e) or type(e).__name__
        self.seconds = self.clock() - self.started_at
        self.running = False
        if report is None and not self.error:
            self.error = "the verifier returned no report"
        try:
            if report is None:
                self._show_error()
            else:
                self._show_report(report)
        except NoMatches:  # the app is shutting down
            return
        except Exception as e:  # a report the screen cannot draw: say so, keep the app
            log.exception("verification report not shown")
            self.error = f"the report could not be shown: {e}"
            self.query_one("#verify-result").display = False
            self._show_error()
        self._show_state()
        if not self.is_current:  # the operator went back to the ring meanwhile
            self.notify(f"verification finished: {self._headline()} (v shows it)",
                        severity="information" if self._headline() == "consistent"
                        else "warning", markup=False)

    def _tick(self) -> None:
        if self.running:  # the elapsed time
            self._show_state()

    def _say(self, line: str) -> None:
        try:
            self.query_one("#verify-log", Log).write_line(line.rstrip())
        except NoMatches:
            pass

    def _headline(self) -> str:
        if self.error:
            return "failed"
        if self.report is None:
            return ""
        if self.report.get("consistent"):
            return "consistent"
        if any(d.get("state") == "diverged" for d in _differences(self.report)):
            return "DIVERGED"
        return "incomplete" if failed_campuses(self.report) else "rows in flight"

    def _show_state(self) -> None:
        if self.running:
            text = (f"[cyan]verifying[/] {escape(self.what)}: "
                    f"{self.clock() - self.started_at:.0f} s so far. "
                    f"Escape goes back to the ring; it keeps running.")
        elif self.error:
            text = (f"[red]verification of {escape(self.what)} failed after "
                    f"{self.seconds:.1f} s[/]. Enter tries again.")
        elif self.report is not None:
            text = (f"verified {escape(self.what)} in {self.seconds:.1f} s. "
                    f"Enter verifies again.")
        else:
            text = ("Choose the tables and the check, then Enter (or start). Every campus "
                    "checks its own copy; the ring keeps replicating meanwhile.")
        try:
            self.query_one("#verify-state", Static).update(text)
        except NoMatches:
            pass

    def _show_error(self) -> None:
        error = self.query_one("#verify-error", Static)
        error.update(f"[b red]verification failed:[/] [red]{escape(self.error)}[/]")
        error.display = True

    def _show_report(self, report: dict[str, Any]) -> None:
        self.report = report
        self.query_one("#verify-verdict", Static).update(verdict_text(report))
        tables = self.query_one("#verify-tables", DataTable)
        tables.clear()
        diffs = _differences(report)
        states = {(d.get("table"), d.get("state")) for d in diffs}
        for table, campuses in report.get("tables", {}).items():
            style = ("red" if (table, "diverged") in states else
                     "yellow" if (table, "in_flight") in states else "green")
            cells = []
            for campus in self.cluster.ring:
                got = campuses.get(campus)
                if not isinstance(got, dict):
                    cells.append(_cell("did not answer", "dim"))
                    continue
                kept = " kept" if got.get("mode") == "incremental" else ""
                cells.append(Text.assemble(f"{got.get('rows', 0):,}",
                                           (f"  {str(got.get('digest', ''))[:8]}{kept}", "dim")))
            tables.add_row(_cell(str(table), style), *cells)
        campus_text = campuses_text(report)
        self.query_one("#verify-campuses", Static).update(campus_text)
        self.query_one("#verify-campuses").display = bool(campus_text)
        table = self.query_one("#verify-differences", DataTable)
        table.clear()
        table.display = bool(diffs)
        ordered = sorted(diffs, key=lambda d: d.get("state") != "diverged")  # diverged first
        for d in ordered[:MAX_DIFFERENCES_SHOWN]:
            state = str(d.get("state", ""))
            style = STATE_STYLE.get(state, "")
            marks = d.get("campuses", {})
            table.add_row(
                _cell(STATE_LABEL.get(state, state), style), _cell(str(d.get("kind", ""))),
                _cell(str(d.get("table", ""))),
                _cell(json.dumps(d.get("key"), ensure_ascii=False)),
                *(_cell(str(marks.get(c, "-")), "" if marks.get(c) == "present" else style)
                  for c in self.cluster.ring))
        if len(diffs) > MAX_DIFFERENCES_SHOWN:
            table.border_subtitle = (f"first {MAX_DIFFERENCES_SHOWN} of {len(diffs)}; "
                                     f"ringsync ctl verify --json lists them all")
        else:
            table.border_subtitle = ""
        fix = fix_text(report, str(self.cluster.path))
        self.query_one("#verify-fix", Static).update(fix)
        self.query_one("#verify-fix").display = bool(fix)
        self.query_one("#verify-result").display = True
