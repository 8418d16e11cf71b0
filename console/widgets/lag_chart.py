"""Lag over time: one sparkline per ring link, newest on the right."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, Sparkline

from ringsync.client import NodeReply

HISTORY = 120  # samples, about two minutes at one per second


class LinkLagRow(Horizontal):
    DEFAULT_CSS = """
    LinkLagRow { height: 1; }
    LinkLagRow > .link-name { width: 32; }
    LinkLagRow > Sparkline { width: 1fr; }
    LinkLagRow > .link-now { width: 12; text-align: right; }
    """

    def __init__(self, src: str, dst: str) -> None:
        super().__init__(id=f"lag-{src}-{dst}")
        self.src, self.dst = src, dst
        self.samples: deque[float] = deque([0.0] * HISTORY, maxlen=HISTORY)

    def compose(self) -> ComposeResult:
        yield Label(f"{self.src} → {self.dst}", classes="link-name")
        yield Sparkline(list(self.samples), summary_function=max)
        yield Label("", classes="link-now")

    def add(self, lag_seconds: float | None) -> None:
        self.samples.append(lag_seconds if lag_seconds is not None else 0.0)
        self.query_one(Sparkline).data = list(self.samples)
        now = self.query_one(".link-now", Label)
        now.update("down" if lag_seconds is None else f"{lag_seconds:7.2f}s")


class LagChart(Vertical):
    """Lag in seconds of every ring link, over the last couple of minutes."""

    DEFAULT_CSS = """
    LagChart { height: auto; border: round $primary; padding: 0 1; }
    """

    def __init__(self, ring: Sequence[str], **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.ring = list(ring)
        self.border_title = "lag over time (s), per ring link"

    def compose(self) -> ComposeResult:
        for i, src in enumerate(self.ring):
            yield LinkLagRow(src, self.ring[(i + 1) % len(self.ring)])

    def add_sample(self, replies: Sequence[NodeReply]) -> None:
        by_campus = {r.campus: r for r in replies}
        for row in self.query(LinkLagRow):
            reply = by_campus.get(row.src)
            lag = None
            if reply is not None and reply.status is not None:
                for link in reply.status.links:
                    if link.to == row.dst and link.state in ("streaming", "healing"):
                        lag = link.lag_seconds
            row.add(lag)
