"""RingsyncConsole: the operator TUI's App. Short on purpose.

The status source is injected (a ClusterClient in real use, a fake in
tests). A worker polls every node about once a second and posts
StatusRefreshed; the ring screen draws it. The verifier (v) runs on the
verify screen, which is installed once so a verification outlives a visit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

from textual import work
from textual.app import App, ScreenStackError
from textual.binding import Binding

from console.messages import StatusRefreshed
from console.screens.ring import RingScreen
from console.screens.switchover import MoveRequest, SwitchoverDialog
from console.screens.verify import VerifyScreen
from console.source import RouteMover, StatusSource, Verifier
from ringsync.config import ClusterConfig

log = logging.getLogger(__name__)


class RingsyncConsole(App[None]):
    CSS_PATH = "console.tcss"
    TITLE = "ringsync console"
    BINDINGS = [
        Binding("q", "quit", "quit"),
        Binding("s", "save_screenshot", "screenshot (SVG)"),
        Binding("w", "switchover", "switchover"),
        Binding("v", "verify", "verify"),
        Binding("ctrl+c", "quit", "quit", show=False, priority=True),
    ]

    def __init__(
        self,
        source: StatusSource,
        cluster: ClusterConfig,
        poll_seconds: float = 1.0,
        subtitle: str = "",
        mover: RouteMover | None = None,
        verifier: Verifier | None = None,
        clock: Callable[[], float] = time.monotonic,  # the verify screen's elapsed times
    ) -> None:
        super().__init__()
        self.source = source
        self.mover = mover
        self.verifier = verifier
        self.clock = clock
        self.cluster = cluster
        self.poll_seconds = poll_seconds
        self.sub_title = subtitle or f"cluster {cluster.name}"
        self.refreshes = 0

    def on_mount(self) -> None:
        self.push_screen(RingScreen(self.cluster.ring, self.cluster.tables))
        self.poll_status()

    @work(exclusive=True, group="status")
    async def poll_status(self) -> None:
        while True:
            try:
                replies = await self.source.status_all()
            except Exception:  # keep polling; the screen shows nodes as down
                log.exception("status poll failed")
                replies = []
            self.post_message(StatusRefreshed(replies))
            await asyncio.sleep(self.poll_seconds)

    def on_status_refreshed(self, message: StatusRefreshed) -> None:
        self.refreshes += 1
        try:
            screen = self.screen
        except ScreenStackError:  # the app is shutting down
            return
        if isinstance(screen, RingScreen) and message.replies:
            screen.show(message.replies)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """w and v from the ring screen only (hidden from the other screens' footers)."""
        return action not in ("switchover", "verify") or isinstance(self.screen, RingScreen)

    def action_switchover(self) -> None:
        screen = self.screen
        if not isinstance(screen, RingScreen):
            return
        if self.mover is None or not self.cluster.dr.enabled:
            self.notify("disaster recovery is off (no [dr] etcd in the cluster file): "
                        "routes cannot move", severity="error")
            return

        def chosen(request: MoveRequest | None) -> None:
            if request is not None:
                self.run_move(request)

        self.push_screen(SwitchoverDialog(self.cluster.ring, screen.routes), chosen)

    @work(exclusive=True, group="move")
    async def run_move(self, request: MoveRequest) -> None:
        """The move runs while the ring screen keeps refreshing: the lag drains, the
        route moves; its progress lines appear under the routing line."""
        assert self.mover is not None
        ring = self.screen if isinstance(self.screen, RingScreen) else None

        def say(line: str) -> None:
            if ring is not None:
                ring.log_move(line.strip())

        try:
            result = await self.mover.move(request.campus, request.to, request.kind, say)
        except Exception as e:  # a refused or failed move: tell the operator why
            say(f"[red]{request.kind} of {request.campus} failed: {e}[/]")
            self.notify(str(e), severity="error", timeout=10)
            return
        verdict = "done" if result.get("ok") else "NOT done"
        say(f"[b]{request.kind} {verdict} in {result.get('seconds', 0):.2f}s[/b]")
        self.notify(f"{request.kind} of {request.campus} {verdict}")

    def action_verify(self) -> None:
        if not isinstance(self.screen, RingScreen):
            return
        if self.verifier is None:
            self.notify("verification is not available in this console (no verifier)",
                        severity="error")
            return
        if not self.is_screen_installed("verify"):  # kept: its worker outlives a visit
            self.install_screen(VerifyScreen(self.cluster, self.verifier, self.clock), "verify")
        self.push_screen("verify")

    def action_save_screenshot(self) -> None:
        path = self.save_screenshot(path=str(Path.cwd()))
        self.notify(f"saved {path}")

    async def action_quit(self) -> None:
        await self.source.close()
        self.exit()


def run_console(cluster: ClusterConfig, subtitle: str = "") -> int:
    from ringsync.client import ClusterClient

    log_path = Path(cluster.path).parent / "console.log"
    logging.basicConfig(filename=log_path, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    from console.source import ClusterMover, ClusterVerifier

    RingsyncConsole(ClusterClient(cluster), cluster, subtitle=subtitle,
                    mover=ClusterMover(cluster), verifier=ClusterVerifier(cluster)).run()
    return 0
