"""The SQLite campus engine (node.engines.sqlite.engine.SQLiteEngine).

    engine     the engine: trigger capture into a change log, batched apply, status
    values     SQLite storage values <-> canonical values, by canonical column kind
    versions   row versions, the conflict log and dead letters in the database
    fence      the database-enforced fence (disaster recovery)
    snapshot   initial-load snapshots (the donor side)
"""
