"""The node's HTTP health endpoint, for load balancers (HAProxy, F5, keepalived).

    GET /serving/<campus>   200 on the node whose database serves that
                            campus's users now, 503 everywhere else
    GET /health             200 while this node's database is healthy
    GET /routes             the routing map as this node sees it (JSON)

Like Patroni's ``/primary``: a load balancer that health-checks every node
with ``/serving/<campus>`` sends the campus's applications to exactly the
node that answers 200, with no ringsync code in the path. Plain HTTP, no
secrets: it tells only who serves whom. A node that cannot prove its etcd
lease answers 503 for every campus.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from node.dr.agent import DRAgent

log = logging.getLogger(__name__)

READ_TIMEOUT_SECONDS = 5.0
REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


class HealthEndpoint:
    def __init__(self, agent: DRAgent, listen: str) -> None:
        self.agent = agent
        self.listen = listen
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        host, _, port = self.listen.rpartition(":")
        self.server = await asyncio.start_server(self._handle, host, int(port))

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    def answer(self, method: str, path: str) -> tuple[int, dict[str, Any]]:
        agent = self.agent
        if method not in ("GET", "HEAD"):
            return 405, {"error": "only GET and HEAD"}
        if path.startswith("/serving/"):
            campus = path.removeprefix("/serving/")
            if campus not in agent.cluster.ring:
                return 404, {"error": f"no campus {campus!r} in this cluster"}
            route = agent.view.routes.get(campus)
            if route is None:
                return 503, {"campus": campus, "node": agent.me, "serving": False,
                             "error": "the routing map has not been read from etcd yet"}
            serving = agent.serving(campus)
            return (200 if serving else 503), {
                "campus": campus, "node": agent.me, "serving": serving,
                "route": route.to_dict(), "dr": agent.settings.enabled,
                "lease_ok": agent.view.lease_ok or not agent.settings.enabled}
        if path == "/health":
            ok = agent.db_healthy()
            return (200 if ok else 503), {"node": agent.me, "database_healthy": ok}
        if path == "/routes":
            return 200, {"node": agent.me, "dr": agent.settings.enabled,
                         "leader": agent.view.leader or None,
                         "routes": {c: r.to_dict() for c, r in agent.view.routes.items()}}
        return 404, {"error": "try /serving/<campus>, /health or /routes"}

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_SECONDS)
            method, path, *_ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            status, body = self.answer(method, path.split("?", 1)[0])
            payload = json.dumps(body).encode() + b"\n"
            writer.write(
                f"HTTP/1.1 {status} {REASONS[status]}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode())
            if method != "HEAD":
                writer.write(payload)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                ConnectionError, ValueError):
            pass
        finally:
            writer.close()
