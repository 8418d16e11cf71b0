"""Scheduled verification ([verify] in cluster.toml): one node runs it, all keep it.

Every node runs ``VerifyScheduler.run``. When a verification is due (by the
last report this node holds: ringsync.verify_schedule.VerifySchedule
.next_due), a node asks every campus's status; the first campus in ring
order whose node answers is the coordinator. Only the coordinator verifies
(ringsync.verification, with this node's own certificate as the client); it
stores the report and sends it to every other node (Control
.RecordVerification), so each one's next due time moves on too. A node that
is not the coordinator waits a while and looks again; if the coordinator
dies mid-run, the next campus in ring order takes over on a later look.

A report that found diverged rows is an alert in status until a later
report finds none.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Any

import grpc

from node.verify.reports import ReportStore, summarize, trimmed
from ringsync.client import ClusterClient, describe_rpc_error
from ringsync.config import NodeConfig
from ringsync.verification import Verification

log = logging.getLogger(__name__)

START_DELAY_SECONDS = 60.0  # let the ring come up before the first check
LOOK_AGAIN_SECONDS = 60.0   # a non-coordinator's wait before it looks again


class VerifyScheduler:
    def __init__(self, config: NodeConfig, reports: ReportStore,
                 start_delay: float = START_DELAY_SECONDS) -> None:
        self.config = config
        self.schedule = config.cluster.verify
        self.reports = reports
        self.start_delay = start_delay
        self.running = False
        self.last_error = ""

    def next_due(self, now: float) -> float | None:
        latest = self.reports.latest()
        return self.schedule.next_due(latest.get("at") if latest else None, now)

    def _client(self) -> ClusterClient:
        cluster = dataclasses.replace(self.config.cluster, client_tls=self.config.tls)
        return ClusterClient(cluster)

    async def run(self) -> None:
        if not self.schedule.enabled:
            return
        await asyncio.sleep(self.start_delay)
        while True:
            due = self.next_due(time.time())
            if due is None:
                return
            await asyncio.sleep(max(0.0, due - time.time()))
            try:
                ran = await self.once()
            except Exception as e:  # never let the schedule die
                self.last_error = f"{type(e).__name__}: {e}"
                log.exception("scheduled verification failed")
                ran = False
            if not ran:
                await asyncio.sleep(LOOK_AGAIN_SECONDS)

    async def once(self) -> bool:
        """Verify now if this node is the coordinator; True if it ran."""
        client = self._client()
        try:
            replies = await client.status_all()
            up = [r.campus for r in replies if r.status is not None]
            if not up or up[0] != self.config.campus:
                return False
            tables = list(self.schedule.tables or self.config.cluster.tables)
            started = time.time()
            full = self.schedule.wants_full(await asyncio.to_thread(self.reports.history),
                                            started)
            log.info("scheduled %sverification of %s starting (this campus coordinates)",
                     "full (stock) " if full else "", ", ".join(tables))
            self.running = True
            try:
                report = await Verification(client, tables, settle=self.schedule.settle_seconds,
                                            full=full,
                                            progress=lambda line: log.info("verify: %s", line)
                                            ).run()
            finally:
                self.running = False
            report = trimmed({**report, "at": started, "coordinator": self.config.campus,
                              "seconds": time.time() - started})
            await asyncio.to_thread(self.reports.add, report)
            await self._send(client, report, [c for c in self.config.cluster.ring
                                              if c != self.config.campus])
            summary = summarize(report)
            (log.error if summary["diverged"] else log.info)(
                "scheduled verification done in %.1f s: %s", summary["seconds"],
                "consistent" if summary["consistent"] else
                f"{summary['diverged']} diverged row(s), {summary['in_flight']} in flight, "
                f"campuses not answering: {summary['campuses_failed'] or 'none'}")
            self.last_error = ""
            return True
        finally:
            await client.close()

    async def _send(self, client: ClusterClient, report: dict[str, Any],
                    campuses: list[str]) -> None:
        for campus in campuses:
            try:
                await client.record_verification(campus, report)
            except grpc.aio.AioRpcError as e:
                log.warning("could not hand the verification report to %s: %s", campus,
                            describe_rpc_error(e))
