"""The ring as a picture: campus boxes joined by arrows labelled with lag.

Layout, clockwise: the first half of the ring left to right on the top row,
the rest right to left on the bottom row, so every arrow runs from a campus
to its ring successor. Green is healthy, yellow lagging or degraded, red
down. A healing bypass (a node streaming past a dead successor) is listed
under the picture.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import Static

from ringsync.client import NodeReply

BOX_W = 19
BOX_H = 4
GAP = 22
ROW_GAP = 4  # text rows between the two rows of boxes
LAG_WARN_SECONDS = 2.0
LEFT_MARGIN = 20  # room for the label of the upward link


class Canvas:
    def __init__(self, width: int, height: int) -> None:
        self.width = width
        self.cells = [[(" ", "")] * width for _ in range(height)]

    def put(self, x: int, y: int, text: str, style: str = "") -> None:
        row = self.cells[y]
        for i, ch in enumerate(text):
            if 0 <= x + i < self.width:
                row[x + i] = (ch, style)

    def render(self) -> Text:
        out = Text()
        for row in self.cells:
            for ch, style in row:
                out.append(ch, style)
            out.append("\n")
        out.rstrip()
        out.append("\n")
        return out


def link_label(reply: NodeReply | None, to: str) -> tuple[str, str]:
    """(label, style) for the link from reply's campus to ``to``."""
    if reply is None or reply.status is None:
        return "sender down", "red"
    for link in reply.status.links:
        if link.to == to:
            if link.state in ("streaming", "healing"):
                style = "green" if link.lag_seconds < LAG_WARN_SECONDS else "yellow"
                return f"{link.lag_seconds:.2f}s {link.txns_per_second:.0f} tx/s", style
            return link.state, "red" if link.state == "down" else "yellow"
    return "?", "yellow"


def node_box(reply: NodeReply | None, name: str) -> tuple[list[str], str]:
    up = reply is not None and reply.status is not None
    healthy = up and reply.status.database_healthy  # type: ignore[union-attr]
    mark = "●" if healthy else "▲" if up else "✕"
    state = "up" if healthy else "db error" if up else "DOWN"
    style = "bold green" if healthy else "bold yellow" if up else "bold red"
    inner = BOX_W - 2
    journal = ""
    if up:
        journal = f" j={reply.status.journal_transactions}"  # type: ignore[union-attr]
        join = reply.status.join  # type: ignore[union-attr]
        if join.state not in ("", "in-ring"):
            pct = (f" {100 * join.rows_copied // join.rows_total}%"
                   if join.state == "copying" and join.rows_total else "")
            state, journal, style = f"joining:{pct or ' ' + join.state}", "", "bold yellow"
            mark = "◐"
            return _box(inner, mark, name, state, journal), style
    return _box(inner, mark, name, state, journal), style


def _box(inner: int, mark: str, name: str, state: str, journal: str) -> list[str]:
    return [
        "┌" + "─" * inner + "┐",
        "│" + f" {mark} {name}"[:inner].ljust(inner) + "│",
        "│" + f"   {state}{journal}"[:inner].ljust(inner) + "│",
        "└" + "─" * inner + "┘",
    ]


class RingDiagram(Static):
    DEFAULT_CSS = """
    RingDiagram { height: auto; padding: 0 1; }
    """

    def __init__(self, ring: Sequence[str], **kwargs: object) -> None:
        super().__init__("", **kwargs)  # type: ignore[arg-type]
        self.ring = list(ring)
        self.replies: dict[str, NodeReply] = {}

    def show(self, replies: Sequence[NodeReply]) -> None:
        self.replies = {r.campus: r for r in replies}
        self.update(self.render_ring())

    def render_ring(self) -> Text:
        ring, n = self.ring, len(self.ring)
        top_n = (n + 1) // 2
        width = LEFT_MARGIN + top_n * BOX_W + (top_n - 1) * GAP + 24
        bottom_y = BOX_H + ROW_GAP
        canvas = Canvas(width, bottom_y + BOX_H)

        def col_x(col: int) -> int:
            return LEFT_MARGIN + col * (BOX_W + GAP)

        where: dict[str, tuple[int, int]] = {}
        for i, campus in enumerate(ring):
            col, y = (i, 0) if i < top_n else (top_n - 1 - (i - top_n), bottom_y)
            where[campus] = (col_x(col), y)
            lines, style = node_box(self.replies.get(campus), campus)
            for dy, line in enumerate(lines):
                canvas.put(col_x(col), y + dy, line, style)

        for i, src in enumerate(ring):
            dst = ring[(i + 1) % n]
            label, style = link_label(self.replies.get(src), dst)
            (sx, sy), (dx, dy_) = where[src], where[dst]
            if sy == dy_:  # same row: horizontal arrow in the gap
                left, right = min(sx, dx) + BOX_W, max(sx, dx) - 1
                arrow = ("─" * (right - left) + "▶") if dx > sx else ("◀" + "─" * (right - left))
                canvas.put(left, sy + 1, arrow, style)
                canvas.put(left + 1, sy + 2, label[: right - left].center(right - left), style)
            elif sy < dy_:  # top row down to bottom row, on the right
                x = sx + BOX_W // 2 + 3
                for y in range(BOX_H, bottom_y - 1):
                    canvas.put(x, y, "│", style)
                canvas.put(x, bottom_y - 1, "▼", style)
                canvas.put(x + 2, BOX_H + ROW_GAP // 2 - 1, label, style)
            else:  # bottom row back up to the top row, on the left
                x = dx + BOX_W // 2 - 3
                if sx != dx:  # odd ring: run left along the bottom boxes' middle row
                    canvas.put(x, sy + 1, "└" + "─" * (sx - x - 1), style)
                    for y in range(BOX_H + 1, sy + 1):
                        canvas.put(x, y, "│", style)
                else:
                    for y in range(BOX_H + 1, bottom_y):
                        canvas.put(x, y, "│", style)
                canvas.put(x, BOX_H, "▲", style)
                canvas.put(max(0, x - len(label) - 1), BOX_H + ROW_GAP // 2 - 1, label, style)

        text = canvas.render()
        for campus in ring:
            reply = self.replies.get(campus)
            if reply is None or reply.status is None:
                continue
            for link in reply.status.links:
                if not link.successor and link.state == "healing":
                    text.append(
                        f"  healing: {campus} ⇢ {link.to} (its successor is unreachable)\n",
                        "bold yellow",
                    )
        return text
