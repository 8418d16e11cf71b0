"""The PostgreSQL campus engine (node.engines.postgres.engine.PostgresEngine).

    engine       the engine: open, install, close; holds one object per role
    connections  PgContext: what the role objects share (settings, connections,
                 shapes and their statements, the capture reader)
    source       the CaptureSource role: the logical slot, commit positions
    apply        the ApplyTarget role: apply sessions on the origin connection
    fence        the Fence role: the database-enforced fence (disaster recovery)
    versions     the ConflictStore role, and row versions, the conflict log and
                 dead letters written by an apply session
    inspection   the Inspection role: health, counts, rows, checksums, snapshots
    capture      the pgoutput reader thread: a logical slot streamed into capture chunks
    pgoutput     CopyBoth framing and the pgoutput protocol, decoded
    values       PostgreSQL text-format values <-> canonical values, by type OID
    stage        COPY into temporary staging tables, then one set-based statement
    sync         synchronous mode: the capture connection as the synchronous standby
    snapshot     initial-load snapshots (the donor side)
    server       what the server must offer, checked read-only (preflight shares it)
"""
