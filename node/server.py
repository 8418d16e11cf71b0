"""NodeService: assemble and run one campus node.

Start-up checks everything it can without writing first (node.preflight:
certificates, the listening ports, data_dir, the database's version,
settings, privileges and tables), then holds the port, and only then creates
the journal and installs into the database; so a bad config or a port in use
gives one clear error and leaves nothing behind. Then it serves the
Replication, Control, health and reflection services on one mTLS port and
runs the capture, apply, ring-sender, prune and monitor loops.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Coroutine
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from node.atrest import make_private
from node.audit import AuditTrail, open_trail
from node.auth import AuthInterceptor
from node.conflicts.driver import Resolver
from node.dr.agent import DRAgent
from node.dr.http import HealthEndpoint
from node.engines.factory import make_engine
from node.leaf.follow import LeafFollower
from node.preflight import check_all, check_node_identity
from node.reflection import enable_reflection
from node.replication.applier import Applier
from node.replication.capture import capture_loop, start_capture
from node.replication.join import Joiner
from node.replication.journal import Journal
from node.replication.pruner import prune_loop
from node.replication.sender import RingSender
from node.replication.syncrep import syncrep_loop
from node.revocations import refresh_loop
from node.runtime import NodeRuntime
from node.servicers import ControlServicer, ReplicationServicer, add_replication_service
from node.status import StatusCache, monitor_loop
from node.verify.folding import fold_loop
from ringsync.client import KEEPALIVE_OPTIONS, Credentials
from ringsync.config import NodeConfig
from ringsync.errors import ConfigError
from ringsync.revocation import RevocationWatch
from ringsync.v1 import control_pb2, control_pb2_grpc, replication_pb2

log = logging.getLogger(__name__)

REPLICATION_SERVICE = replication_pb2.DESCRIPTOR.services_by_name["Replication"].full_name
CONTROL_SERVICE = control_pb2.DESCRIPTOR.services_by_name["Control"].full_name


async def after_join(initialized: asyncio.Event, loop: Coroutine[Any, Any, None]) -> None:
    """Run a replication loop once the journal is initialized (see node.replication.join)."""
    try:
        await initialized.wait()
    except asyncio.CancelledError:
        loop.close()
        raise
    await loop


class NodeService:
    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.rt: NodeRuntime | None = None
        self.server: grpc.aio.Server | None = None
        self.health = health.aio.HealthServicer()
        self.cache = StatusCache()
        self.tasks: list[asyncio.Task[Any]] = []
        self.port = 0
        self.http: HealthEndpoint | None = None

    def _credentials(self) -> tuple[Credentials, grpc.ServerCredentials]:
        """This node's certificate, for its server and its channels. Both take
        a renewed certificate without a restart: the server at its next
        handshake (gRPC asks ``fetch`` on every new connection), channels as
        they are made (``Credentials.refresh``)."""
        config = self.config
        creds = Credentials(config.tls, check=functools.partial(check_node_identity, config))
        served = [creds.generation]

        def configuration() -> grpc.ServerCertificateConfiguration:
            return grpc.ssl_server_certificate_configuration(
                [(creds.key, creds.cert)], root_certificates=creds.ca)

        def fetch() -> grpc.ServerCertificateConfiguration | None:
            creds.refresh()
            if creds.generation == served[0]:
                return None
            served[0] = creds.generation
            log.info("serving the renewed certificate %s", config.tls.cert)
            return configuration()

        server_creds = grpc.dynamic_ssl_server_credentials(
            configuration(), fetch, require_client_authentication=True)
        return creds, server_creds

    async def start(self) -> None:
        config = self.config
        # Everything that can be checked without writing, before anything is
        # written: certificates, ports, data_dir, the database (node.preflight).
        await asyncio.to_thread(check_all, config)
        await asyncio.to_thread(make_private, config.data_dir)  # node.atrest
        client_creds, server_creds = self._credentials()
        revocations = RevocationWatch(config.tls.crl, client_creds.ca)
        await asyncio.to_thread(revocations.refresh)
        server = grpc.aio.server(
            interceptors=[AuthInterceptor(config.cluster.origins, client_creds.ca,
                                          revocations, config.cluster.scopes, config.campus)],
            options=[
                ("grpc.so_reuseport", 0),
                ("grpc.max_receive_message_length", config.replication.max_message_bytes),
                ("grpc.max_send_message_length", config.replication.max_message_bytes),
                ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
                *KEEPALIVE_OPTIONS,
            ],
        )
        # Hold the port from here on (the preflight bind test released it).
        try:
            self.port = server.add_secure_port(config.listen, server_creds)
            if not self.port:
                raise RuntimeError("no port bound")
            engine = make_engine(config)
        except BaseException as e:
            await server.stop(None)
            if isinstance(e, RuntimeError):
                raise ConfigError(
                    f"cannot listen on {config.listen}: the port is in use or the address is "
                    f"not local; stop what holds it or change `listen` in {config.path}"
                ) from e
            raise
        journal = Journal(config.data_dir / "journal.db", config.campus)
        rt = NodeRuntime(config, engine, journal)
        rt.revocations, rt.credentials = revocations, client_creds
        rt.audit = AuditTrail(config.data_dir, config.campus, client_creds)
        try:
            await asyncio.to_thread(open_trail, rt.audit)
            await rt.in_engine(engine.open)
            rt.resolver = Resolver(engine.shapes(), config.cluster.conflicts, rt.clock,
                                   fast=config.replication.fast_apply)
            await rt.in_journal(journal.open)
            if rt.sets.enabled:  # capture stamps with the epochs stored in the database
                rt.sets.load(await rt.in_engine(engine.fence.set_fence_states))
            agent = DRAgent(rt, lambda: self.cache.healthy and not rt.database_error)
            await start_capture(rt.res)
            add_replication_service(ReplicationServicer(rt), server)  # raw bytes: clean errors
            control_pb2_grpc.add_ControlServicer_to_server(
                ControlServicer(rt, self.cache, agent), server)
            health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
            enable_reflection((REPLICATION_SERVICE, CONTROL_SERVICE, health.SERVICE_NAME),
                              server)
            if config.health_listen:
                self.http = HealthEndpoint(agent, config.health_listen)
                try:
                    await self.http.start()
                except OSError as e:
                    raise ConfigError(
                        f"cannot serve the HTTP health endpoint on {config.health_listen} ({e}); "
                        f"stop what holds the port or change `health` for {config.campus} in "
                        f"{config.cluster.path} (or `health_listen` in {config.path})"
                    ) from e
            await server.start()
        except BaseException:
            await server.stop(None)
            if self.http is not None:
                await self.http.stop()
            await rt.in_engine(engine.close)
            await rt.in_journal(journal.close)
            rt.shutdown_threads()
            raise
        self.rt, self.server = rt, server
        # Each loop gets the parts it uses (node.runtime); status and DR read them all.
        res, state, joined = rt.res, rt.state, rt.state.initialized
        sender = RingSender(config, res, state, client_creds)
        applier = Applier(res, state, rt.sets, rt.resolver)
        loops: list[tuple[str, Coroutine[Any, Any, None]]] = []
        if config.leaf is None or config.leaf.uploads:
            loops.append(("send", after_join(joined, sender.run())))
        if config.leaf is not None:  # it follows its parent; the ring's DR and checks are theirs
            follower = LeafFollower(config, res, state, client_creds)
            loops.append(("follow", after_join(joined, follower.run())))
        else:
            loops += [("dr", agent.run()), ("verify", after_join(joined, rt.verifier.run()))]
        for name, coro in (
            *loops,
            ("join", Joiner(config, res, state, rt.clock, client_creds).run()),
            ("capture", after_join(joined, capture_loop(config, res, state, rt.sets, rt.clock))),
            ("apply", after_join(joined, applier.run())),
            ("prune", after_join(joined, prune_loop(config, res, state, rt.sets))),
            ("monitor", monitor_loop(rt, self.cache)),
            ("health", self._health_loop()),
            ("syncrep", after_join(joined, syncrep_loop(config, res, state))),
            ("fold", after_join(joined, fold_loop(engine.verifier))),
            ("revocations", refresh_loop(revocations)),
        ):
            self.tasks.append(asyncio.create_task(coro, name=name))
        log.info(
            "campus %s serving on %s (engine %s at %s)",
            config.campus, config.listen, engine.name, engine.description,
        )

    async def _health_loop(self) -> None:
        serving = health_pb2.HealthCheckResponse.SERVING
        not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
        while True:
            # A joining campus takes no replication: predecessors heal around it.
            joined = self.rt is not None and self.rt.initialized.is_set()
            status = serving if self.cache.healthy and joined else not_serving
            await self.health.set("", serving)
            await self.health.set(REPLICATION_SERVICE, status)
            await self.health.set(CONTROL_SERVICE, serving)
            await asyncio.sleep(0.5)

    async def wait(self) -> None:
        """Run until a loop dies (a bug) or the service is stopped."""
        done, _ = await asyncio.wait(self.tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            error = None if task.cancelled() else task.exception()
            if error is not None:
                # the node stops: say which loop, with its traceback, for the report
                log.error("the %s loop stopped on an error; the node stops", task.get_name(),
                          exc_info=error)
                raise error

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.http is not None:
            await self.http.stop()
        if self.server is not None:
            await self.server.stop(grace=1.0)
        if self.rt is not None:
            await self.rt.in_engine(self.rt.engine.close)
            await self.rt.in_journal(self.rt.journal.close)
            self.rt.shutdown_threads()
