"""A TCP fault proxy on every inter-campus link, controlled by the drill.

Each Link listens on a free local port and forwards to one upstream (a
peer's node port, or an etcd member). The drill points a node at links
instead of the real addresses (node.toml ``[peers]`` and ``[dr] etcd``), so
the network between campuses is the drill's to break, not a flag in our
code:

* ``cut()``: a partition. Bytes stop flowing both ways and new connections
  are accepted but never answered, as when packets are dropped; nothing is
  reset, so each side must notice by its own timeouts.
* ``heal()``: held connections are closed and new ones flow again.
* ``latency`` and ``stall``: every chunk is delayed by ``latency`` seconds;
  with probability ``stall`` a chunk is held three times longer, as a lost
  TCP segment waits for its retransmission.

All links run on one asyncio loop in a background thread.
"""

from __future__ import annotations

import asyncio
import random
import threading
from dataclasses import dataclass, field

from ringsync.commands.demo.cluster import free_port


@dataclass
class Link:
    name: str
    upstream: str  # host:port
    port: int = field(default_factory=free_port)
    latency: float = 0.0
    stall: float = 0.0
    cut_off: bool = False
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _rng: random.Random = field(default_factory=lambda: random.Random(7))

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        up_writer = None
        try:
            if self.cut_off:
                await reader.read()  # hold it, answer nothing
                return
            host, _, port = self.upstream.rpartition(":")
            try:
                up_reader, up_writer = await asyncio.open_connection(host, int(port))
            except OSError:
                return
            self._writers.add(up_writer)
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                if w is not None:
                    self._writers.discard(w)
                    w.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if self.cut_off:
                    continue  # dropped on the floor
                delay = self.latency * (3 if self.stall and self._rng.random() < self.stall
                                        else 1)
                if delay:
                    await asyncio.sleep(delay)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            if not self.cut_off:
                writer.close()

    def drop_all(self) -> None:
        for w in list(self._writers):
            w.close()


class FaultNetwork:
    """The drill's links, served from one background event loop."""

    def __init__(self) -> None:
        self.links: dict[str, Link] = {}
        self._loop = asyncio.new_event_loop()
        self._servers: list[asyncio.Server] = []
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="fault-proxy")
        self._thread.start()

    def add(self, name: str, upstream: str) -> Link:
        link = Link(name, upstream)

        async def serve() -> asyncio.Server:
            return await asyncio.start_server(link.handle, "127.0.0.1", link.port)

        self._servers.append(asyncio.run_coroutine_threadsafe(serve(), self._loop).result(10))
        self.links[name] = link
        return link

    def _call(self, fn: object) -> None:
        done = threading.Event()

        def run() -> None:
            try:
                fn()  # type: ignore[operator]
            finally:
                done.set()

        self._loop.call_soon_threadsafe(run)
        done.wait(10)

    def cut(self, names: list[str]) -> None:
        def apply() -> None:
            for n in names:
                self.links[n].cut_off = True

        self._call(apply)

    def heal(self, names: list[str]) -> None:
        def apply() -> None:
            for n in names:
                self.links[n].cut_off = False
                self.links[n].drop_all()

        self._call(apply)

    def shape(self, latency: float, stall: float) -> None:
        def apply() -> None:
            for link in self.links.values():
                link.latency, link.stall = latency, stall

        self._call(apply)

    def close(self) -> None:
        def apply() -> None:
            for server in self._servers:
                server.close()
            for link in self.links.values():
                link.drop_all()

        self._call(apply)

        async def closed() -> None:
            for server in self._servers:
                await server.wait_closed()

        try:
            asyncio.run_coroutine_threadsafe(closed(), self._loop).result(10)
        except TimeoutError:
            pass  # a connection still held: the loop's close below drops it
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()
