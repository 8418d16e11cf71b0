"""`ringsync node --config FILE`: run one campus node until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from pathlib import Path

from node.server import NodeService
from ringsync.config import load_node
from ringsync.dsn import dsn_has_password, redact_dsn
from ringsync.errors import RingsyncError

log = logging.getLogger("node")


class StructuredFormatter(logging.Formatter):
    """One line per event: ts=... level=... campus=... logger=... msg="...".

    Every line is passed through ``redact_dsn``: whatever a module logs, a
    PostgreSQL password never reaches the log."""

    def __init__(self, campus: str) -> None:
        super().__init__()
        self.campus = campus

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        msg = record.getMessage().replace('"', "'")
        line = (
            f'ts={ts}.{int(record.msecs):03d}Z level={record.levelname} campus={self.campus} '
            f'logger={record.name} msg="{msg}"'
        )
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redact_dsn(line)


def setup_logging(campus: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(StructuredFormatter(campus))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


async def serve(config_path: Path) -> None:
    config = load_node(config_path)
    setup_logging(config.campus)
    if config.database.dsn is not None and dsn_has_password(config.database.dsn):
        log.warning("database.dsn in %s carries a password: anyone who can read the file "
                    "reads it; move it to database.password_file or a libpq passfile "
                    "(docs/operations.md, \"Database password\")", config.path)
    service = NodeService(config)
    await service.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    waiter = asyncio.create_task(service.wait())
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if waiter.done():
            waiter.result()
    finally:
        log.info("stopping")
        stopper.cancel()
        waiter.cancel()
        await service.stop()


def run(config_path: Path) -> int:
    try:
        asyncio.run(serve(config_path))
    except RingsyncError as e:
        print(f"ringsync node: {redact_dsn(str(e))}", file=sys.stderr)
        return 2
    return 0
