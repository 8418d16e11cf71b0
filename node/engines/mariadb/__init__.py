"""The MariaDB engine: a campus whose database is MariaDB (the legacy system
of a dual-track migration, issue 18).

Capture reads the server's binary log in ROW format (node.engines.mariadb.
binlog); apply sessions write under a GTID domain of ringsync's own, so the
capture knows its own applied transactions and never sends them again.
What the server must offer is checked at start (server); column types map to
canonical values by values, table shapes are read by shapes.

Built in slices: this package holds the server checks, the type layer, the
table shapes and the binlog capture; the engine's apply, fence and version
roles come next (docs/mariadb.md says what works today).
"""
