"""The switchover dialog: pick a campus and the campus to serve it, confirm.

It only collects the operator's choice; the app runs the move
(ringsync.dr.moves.move, through the injected RouteMover) and the ring
screen shows its progress, the lag draining and the route moving.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Select


@dataclass(frozen=True)
class MoveRequest:
    campus: str
    to: str
    kind: str  # switchover | switchback | failback


def kind_of(campus: str, to: str, serving: str, reason: str) -> str:
    if to != campus or campus.startswith("set:"):
        return "switchover"
    return "failback" if reason.startswith("failover") else "switchback"


class SwitchoverDialog(ModalScreen[MoveRequest | None]):
    """``routes``: campus -> (serving node, reason) as the nodes report it."""

    DEFAULT_CSS = """
    SwitchoverDialog { align: center middle; }
    #dialog { width: 72; height: auto; border: thick $warning; background: $panel;
              padding: 1 2; }
    #dialog Select { margin: 0 0 1 0; }
    #buttons { height: auto; align-horizontal: right; }
    #buttons Button { margin: 0 0 0 2; }
    """
    BINDINGS = [("escape", "cancel", "cancel")]

    def __init__(self, ring: Sequence[str], routes: Mapping[str, tuple[str, str]]) -> None:
        super().__init__()
        self.ring = list(ring)
        self.routes = dict(routes)

    def _default_target(self, campus: str) -> str:
        serving = self.routes.get(campus, (campus, ""))[0]
        if campus.startswith("set:"):  # a set's writer: the next campus after it
            return next(c for c in self.ring[self.ring.index(serving) + 1:] + self.ring
                        if c != serving) if serving in self.ring else self.ring[0]
        if serving != campus:
            return campus  # served elsewhere: bring its users home
        return next(c for c in self.ring if c != campus)

    def compose(self) -> ComposeResult:
        first = self.ring[0]
        with Vertical(id="dialog"):
            yield Label("[b]Move a campus's users[/b] (lossless: fence, drain, move)")
            yield Label("campus whose users move (or a single-writer set's writer)")
            sets = sorted(k for k in self.routes if k.startswith("set:"))
            yield Select([(c, c) for c in [*self.ring, *sets]], value=first,
                         allow_blank=False, id="campus")
            yield Label("campus that will serve them")
            yield Select([(c, c) for c in self.ring], value=self._default_target(first),
                         allow_blank=False, id="to")
            yield Label("", id="summary")
            with Horizontal(id="buttons"):
                yield Button("cancel", id="cancel")
                yield Button("move", variant="warning", id="confirm")

    def on_mount(self) -> None:
        self._summarize()

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "campus":
            self.query_one("#to", Select).value = self._default_target(str(event.value))
        self._summarize()

    def _choice(self) -> MoveRequest:
        campus = str(self.query_one("#campus", Select).value)
        to = str(self.query_one("#to", Select).value)
        serving, reason = self.routes.get(campus, (campus, ""))
        return MoveRequest(campus, to, kind_of(campus, to, serving, reason))

    def _summarize(self) -> None:
        choice = self._choice()
        serving = self.routes.get(choice.campus, (choice.campus, ""))[0]
        what = (f"{choice.campus}'s writer" if choice.campus.startswith("set:")
                else f"{choice.campus}'s users")
        text = (f"nothing to do: {choice.to} already serves {choice.campus}"
                if serving == choice.to else
                f"{choice.kind}: {what} from {serving} to {choice.to}")
        self.query_one("#summary", Label).update(text)
        self.query_one("#confirm", Button).disabled = serving == choice.to

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(self._choice() if event.button.id == "confirm" else None)

    def action_cancel(self) -> None:
        self.dismiss(None)
