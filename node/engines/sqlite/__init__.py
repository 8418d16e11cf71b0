"""The SQLite campus engine (node.engines.sqlite.engine.SQLiteEngine).

    engine       the engine: open, install, close; holds one object per role
    connections  SQLiteContext: what the role objects share (settings, the two
                 connections, shapes and their statements, the recorded position)
    source       the CaptureSource role: capture triggers and the change log
    apply        the ApplyTarget role: apply sessions (BEGIN IMMEDIATE, applying = 1)
    fence        the Fence role: the database-enforced fence (disaster recovery)
    versions     the ConflictStore role, and row versions, the conflict log and
                 dead letters written by an apply session
    inspection   the Inspection role: health, counts, rows, checksums, snapshots
    values       SQLite storage values <-> canonical values, by canonical column kind
    snapshot     initial-load snapshots (the donor side)
"""
