"""The commands: the top layer, above the library, the node and the console.

    cli     the `ringsync` entry point and its subcommand wiring
    ctl     `ringsync ctl`: scripted calls with JSON output
    demo    `ringsync demo`: a local multi-campus cluster and workload
    bench   `ringsync bench`: replication beside PostgreSQL's native anchor
    drill   `ringsync drill`: fault drills measuring RTO, RPO and convergence

Commands may import everything; nothing below imports them
(tests/unit/test_layers.py).
"""
