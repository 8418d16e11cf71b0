"""Choose the engine implementation for a node's [database] config."""

from __future__ import annotations

from node.engines.base import Engine
from ringsync.config import NodeConfig, connect_dsn
from ringsync.errors import ConfigError


def make_engine(config: NodeConfig) -> Engine:
    """The campus's engine; with [dictionaries], seen through its code maps
    (node.dictionary.coded)."""
    engine = _engine(config)
    if not config.cluster.dictionaries.enabled:
        return engine
    from node.dictionary.coded import CodedEngine
    from node.dictionary.translate import Dictionaries

    return CodedEngine(engine, Dictionaries(config.cluster.dictionaries, config.campus))


def _engine(config: NodeConfig) -> Engine:
    db = config.database
    if db.engine == "sqlite" and db.path is not None:
        from node.engines.sqlite.engine import SQLiteEngine

        return SQLiteEngine(db.path, config.tables, config.campus,
                            sets=config.cluster.set_of_table(),
                            digests=config.cluster.verify.incremental)
    if db.engine == "postgres" and db.dsn is not None:
        from node.engines.postgres.engine import PostgresEngine

        # The DSN with the password_file's password: the engine redacts it
        # wherever it describes itself (see ringsync.dsn).
        return PostgresEngine(connect_dsn(db), config.tables, config.campus,
                              config.replication.frame_max_changes,
                              sync=db.durability == "sync",
                              sets=config.cluster.set_of_table(),
                              digests=config.cluster.verify.incremental)
    if db.engine == "mariadb" and db.dsn is not None:
        from node.engines.mariadb.engine import MariaEngine

        return MariaEngine(connect_dsn(db), config.tables, config.campus,
                           config.replication.frame_max_changes,
                           sets=config.cluster.set_of_table())
    raise ConfigError(f"{config.path}: database.engine {db.engine!r} is not supported")
