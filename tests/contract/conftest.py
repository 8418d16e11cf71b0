"""One real PostgreSQL server (initdb/pg_ctl on a free port) for every role contract."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ringsync.commands.demo.cluster import free_port
from ringsync.commands.demo.postgres import LocalPostgres


@pytest.fixture(scope="session")
def pg_server() -> Iterator[LocalPostgres]:
    pg = LocalPostgres.create(None, free_port())
    pg.start()
    yield pg
    pg.remove()
