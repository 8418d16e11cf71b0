"""Choose the engine implementation for a node's [database] config."""

from __future__ import annotations

from node.engines.base import Engine
from ringsync.config import NodeConfig
from ringsync.errors import ConfigError


def make_engine(config: NodeConfig) -> Engine:
    db = config.database
    if db.engine == "sqlite":
        from node.engines.sqlite import SQLiteEngine

        return SQLiteEngine(db.path, config.cluster.tables, config.campus)
    raise ConfigError(f"{config.path}: database.engine {db.engine!r} is not supported")
