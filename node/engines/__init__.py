"""Campus database engines behind one Protocol (node.engines.base.Engine).

    base         the Engine and role Protocols (CaptureSource, ApplyTarget, Fence,
                 ConflictStore, Inspection), SetFence, the fence messages
    factory      the engine a node's [database] config names
    postgres/    the PostgreSQL engine, one module per role
    sqlite/      the SQLite engine, one module per role
    dialect      each engine's spelling of the statements both make alike
    sessionbase  the half of an apply session both engines share
    fencing      fence-time checks and set-fence rows, for both engines' fences
    runs         changes grouped into batched writes
    snapshot     ReadSnapshot, a joining campus's consistent read (the donor side)
    canonical    canonical values both engines produce and consume alike
"""
