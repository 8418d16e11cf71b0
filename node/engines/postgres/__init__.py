"""The PostgreSQL campus engine (node.engines.postgres.engine.PostgresEngine).

    engine     the engine: connections, apply, status; composed of the parts below
    capture    the pgoutput reader thread: a logical slot streamed into capture chunks
    pgoutput   CopyBoth framing and the pgoutput protocol, decoded
    values     PostgreSQL text-format values <-> canonical values, by type OID
    stage      COPY into temporary staging tables, then one set-based statement
    versions   row versions, the conflict log and dead letters in the database
    fence      the database-enforced fence (disaster recovery)
    sync       synchronous mode: the capture connection as the synchronous standby
    snapshot   initial-load snapshots (the donor side)
    server     what the server must offer, checked read-only (preflight shares it)
"""
