"""The ring screen: the ring picture, alerts, the last verification, lag over
time, links and nodes tables, and the leaves under their parents."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from rich.markup import escape
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from console.widgets.lag_chart import LagChart
from console.widgets.ring_diagram import RingDiagram
from ringsync.client import NodeReply
from ringsync.statustext import join_text

BAR_WIDTH = 30


def join_bar(campus: str, join: Any) -> str:
    """A campus's initial load as a progress bar and the figures behind it."""
    text = join_text({
        "state": join.state, "donor": join.donor, "table": join.table,
        "rows_copied": join.rows_copied, "rows_total": join.rows_total,
        "rows_per_second": join.rows_per_second, "eta_seconds": join.eta_seconds,
        "detail": join.detail,
    })
    if join.state != "copying" or not join.rows_total:
        return f"[yellow]{campus}[/] {text}"
    filled = min(BAR_WIDTH, BAR_WIDTH * join.rows_copied // join.rows_total)
    bar = "█" * filled + "░" * (BAR_WIDTH - filled)
    return f"[yellow]{campus}[/] [green]{bar}[/] {text}"


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}"
        n //= 1024
    return f"{n} TiB"


def conflict_cell(counts: Any, dead: Any = None) -> str:
    """Conflicts this campus logged; what needs an operator in red: parked
    conflicts and dead letters (changes it could not apply)."""
    text = str(counts.logged)
    if counts.parked:
        text += f" [bold red]{counts.parked} parked[/]"
    if counts.flagged:
        text += f" [yellow]{counts.flagged} skew[/]"
    if counts.delta_merged:  # certain (only delta columns concurrent): counted, not logged
        text += f" [dim]+{counts.delta_merged} delta[/]"
    if dead is not None and dead.parked:
        text += f" [bold red]{dead.parked} dead letters[/]"
    return text


def alerts_text(replies: Sequence[NodeReply]) -> str:
    """Every node's alerts, each text once with the campuses that raise it."""
    raised: dict[str, list[str]] = {}
    for r in replies:
        if r.status is not None:
            for alert in r.status.alerts:
                raised.setdefault(alert, []).append(r.campus)
    return "\n".join(f"[bold red]ALERT[/] [red]{', '.join(campuses)}: {escape(alert)}[/]"
                     for alert, campuses in raised.items())


def verify_text(replies: Sequence[NodeReply]) -> str:
    """The newest scheduled verification any node holds ([verify])."""
    summaries = [r.status.verify for r in replies
                 if r.status is not None and r.status.verify.scheduled]
    if not summaries:
        return ""
    v = max(summaries, key=lambda s: s.last_at)
    running = " [cyan](running now)[/]" if any(s.running for s in summaries) else ""
    if not v.last_at:
        return f"[dim]verification: none yet{running}[/]"
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(v.last_at))
    if v.consistent:
        verdict = "[green]every campus holds the same rows[/]"
    elif v.diverged:
        verdict = f"[bold red]{v.diverged} diverged row(s)[/] (v: verify; ctl repair)"
    else:
        verdict = (f"[yellow]{v.in_flight} row(s) in flight, "
                   f"{len(v.campuses_failed)} campus(es) not answering[/]")
    return f"verification {when} by {v.coordinator}: {verdict}{running}"


RETENTION_BAR = 10


def retention_cell(leaf: Any) -> str:
    """How much of a leaf's retention the oldest transaction it lacks has used,
    as a bar: green, yellow past half, red past 80% or beyond (re-seed)."""
    keep = leaf.retention_hours * 3600
    used = min(1.0, leaf.lag_seconds / keep) if keep > 0 else 0.0
    filled = round(used * RETENTION_BAR)
    colour = "red" if leaf.past_retention or used > 0.8 else "yellow" if used > 0.5 else "green"
    bar = f"[{colour}]{'█' * filled}[/][dim]{'░' * (RETENTION_BAR - filled)}[/]"
    note = " [bold red]RE-SEED[/]" if leaf.past_retention else ""
    return f"{bar} {used:.0%} of {leaf.retention_hours:g}h{note}"


def leaf_rows(replies: Sequence[NodeReply]) -> list[Sequence[str]]:
    """Each leaf under the ring campus it hangs from (as that campus reports it)."""
    rows: list[Sequence[str]] = []
    for r in replies:
        if r.status is None:
            continue
        for x in r.status.leaves:
            state = ("[green]online[/]" if x.online else
                     "[bold red]past retention[/]" if x.past_retention else "[yellow]offline[/]")
            route = (f"{x.rows_sent} sent, {x.rows_moved_in}/{x.rows_moved_out} in/out"
                     + (f", [red]{x.unjudged} held back[/]" if x.unjudged else ""))
            rows.append((f"{r.campus} └ {x.name}", state, str(x.lag_transactions),
                         f"{x.lag_seconds:.1f}", retention_cell(x), route,
                         "" if x.uploads else "read-only", escape(x.error[:60])))
    return rows


class RingScreen(Screen[None]):
    def __init__(self, ring: Sequence[str], tables: Sequence[str]) -> None:
        super().__init__(name="ring")
        self.ring = list(ring)
        self.tables = list(tables)
        self.routes: dict[str, tuple[str, str]] = {}  # campus -> (serving node, reason)
        self.move_log: list[str] = []

    def log_move(self, line: str) -> None:
        """A line of a running switchover's progress (the last few are shown)."""
        self.move_log = [*self.move_log, line][-6:]
        try:
            self.query_one("#moves", Static).update("\n".join(self.move_log))
        except NoMatches:
            pass

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll():
            yield RingDiagram(self.ring, id="ring")
            yield Static("", id="alerts", classes="hidden-when-empty")
            yield Static("", id="verify", classes="hidden-when-empty")
            yield Static("", id="joins")
            yield Static("", id="routes")
            yield Static("", id="moves")
            yield LagChart(self.ring, id="lag")
            yield DataTable(id="links", cursor_type="row", zebra_stripes=True)
            yield DataTable(id="nodes", cursor_type="row", zebra_stripes=True)
            yield DataTable(id="leaves", cursor_type="row", zebra_stripes=True)
            yield Static("", id="agreement")
        yield Footer()

    def on_mount(self) -> None:
        links = self.query_one("#links", DataTable)
        links.border_title = "links"
        links.add_columns("link", "state", "lag tx", "lag s", "tx/s", "rows/s", "error")
        nodes = self.query_one("#nodes", DataTable)
        nodes.border_title = "campuses"
        nodes.add_columns("campus", "state", "engine", "journal", "journal size",
                          *self.tables, "conflicts", "error")
        leaves = self.query_one("#leaves", DataTable)
        leaves.border_title = "leaves (under their parents)"
        leaves.add_columns("parent └ leaf", "state", "lag tx", "lag s", "retention used",
                           "route", "writes", "error")
        leaves.display = False  # until a campus reports a leaf

    def show(self, replies: Sequence[NodeReply]) -> None:
        try:
            self._show(replies)
        except NoMatches:  # a refresh that arrives before compose or during teardown
            pass

    def _routes_text(self, replies: Sequence[NodeReply]) -> str:
        """Who serves each campus's users, as the DR leader (or any node) sees it."""
        views = [r.status.routing for r in replies if r.status is not None
                 and r.status.routing.routes]
        if not views:
            dr_off = any(r.status is not None and not r.status.routing.dr_enabled
                         for r in replies)
            return ("[dim]routing: every campus serves its own users; automatic failover is "
                    "OFF (no etcd)[/]" if dr_off else "")
        view = next((v for v in views if v.node == v.leader), views[0])
        self.routes = {r.campus: (r.serving, r.reason) for r in view.routes}
        parts = []
        for r in view.routes:
            if r.campus.startswith("set:"):
                moving = f" ⇢ {r.target} ({r.state})" if r.state != "active" else ""
                parts.append(f"[cyan]{r.campus}: writer {r.serving}{moving} "
                             f"(epoch {r.writer_epoch})[/]")
            elif r.state == "draining":
                parts.append(f"[yellow]{r.campus} → {r.serving} ⇢ {r.target} (draining)[/]")
            elif r.serving != r.campus:
                parts.append(f"[bold red]{r.campus} → {r.serving}[/]")
            else:
                parts.append(f"[green]{r.campus} → {r.serving}[/]")
        return (f"routing (leader {view.leader or '?'}; w: switchover): " + "   ".join(parts))

    def _show(self, replies: Sequence[NodeReply]) -> None:
        self.query_one(RingDiagram).show(replies)
        for name, text in (("#alerts", alerts_text(replies)), ("#verify", verify_text(replies))):
            line = self.query_one(name, Static)
            line.update(text)
            line.display = bool(text)  # no blank line when there is nothing to say
        bars = [join_bar(r.campus, r.status.join) for r in replies
                if r.status is not None and r.status.join.state not in ("", "in-ring")]
        self.query_one("#joins", Static).update("\n".join(bars))
        self.query_one("#routes", Static).update(self._routes_text(replies))
        self.query_one(LagChart).add_sample(replies)
        links = self.query_one("#links", DataTable)
        links.clear()
        for r in replies:
            if r.status is None:
                continue
            for link in r.status.links:
                if link.state == "standby":
                    continue
                links.add_row(
                    f"{r.campus} → {link.to}", link.state, str(link.lag_transactions),
                    f"{link.lag_seconds:.2f}", f"{link.txns_per_second:.1f}",
                    f"{link.rows_per_second:.1f}", link.error[:60],
                )
        nodes = self.query_one("#nodes", DataTable)
        nodes.clear()
        counts = []
        for r in replies:
            s = r.status
            if s is None:
                nodes.add_row(r.campus, "DOWN", "-", "-", "-", *("-" for _ in self.tables),
                              "-", (r.error or "")[:60])
                continue
            row_counts = [s.row_counts.get(t, 0) for t in self.tables]
            counts.append(tuple(row_counts))
            nodes.add_row(
                r.campus,
                "joining" if s.join.state not in ("", "in-ring")
                else "up" if s.database_healthy else "db error",
                s.engine,
                str(s.journal_transactions), _size(s.journal_bytes),
                *(str(c) for c in row_counts), conflict_cell(s.conflicts, s.dead_letters),
                s.database_error[:60],
            )
        leaves = self.query_one("#leaves", DataTable)
        leaves.clear()
        for row in leaf_rows(replies):
            leaves.add_row(*row)
        leaves.display = leaves.row_count > 0
        agreement = self.query_one("#agreement", Static)
        if len(counts) == len(replies) and len(set(counts)) == 1:
            agreement.update("[green]row counts agree on every campus[/]")
        elif len(counts) < len(replies):
            agreement.update("[red]some campuses are unreachable[/]")
        else:
            agreement.update("[yellow]row counts differ (changes in flight)[/]")
