"""ringsync: multi-campus, multi-active ring replication.

This package is the library the node and the console share; the commands
sit on top of it in ringsync.commands. Package map:

  ringsync.v1              generated gRPC/protobuf API (from protos/)
  ringsync.config          cluster and node TOML, validated once into frozen dataclasses
  ringsync.addresses       host:port checks shared by every config section
  ringsync.conflict_policy the [conflicts] settings: per-table rules clinicians can defend
  ringsync.dr              disaster recovery both sides agree on: settings, the routing
                           map in etcd, planned moves
  ringsync.client          async mTLS client of the node API (ctl, console, demo)
  ringsync.statustext      one-line status texts shared by ctl and the console
  ringsync.pki             the cluster CA and node/operator/viewer certificates
  ringsync.dsn             DSNs, password files and redaction
  ringsync.names           names the node and the commands must agree on
  ringsync.errors          the exception hierarchy
  ringsync.commands        the `ringsync` command and its subcommands (ctl, demo, bench, drill)

Beside it: node (the campus node service) and console (the operator TUI).
tests/unit/test_layers.py enforces who may import whom.
"""

__version__ = "0.1.0"
