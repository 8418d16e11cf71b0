"""The MariaDB engine: a campus whose database is MariaDB (the legacy system
of a dual-track migration, issue 18).

Capture reads the server's binary log in ROW format (binlog); apply
sessions write under a GTID domain of ringsync's own, so the capture knows
its own applied transactions and never sends them again. What the server
must offer is checked at start (server); column types map to canonical
values by values, table shapes are read by shapes; row stamps (stamps)
tell apply a local change capture has not recorded yet; the roles are
source, apply, fence, versions (the conflict store), inspection and
verifying, composed by engine. docs/mariadb.md is the operator's page.
"""
