"""ringsync: multi-campus, multi-active ring replication.

Package map:
  ringsync.v1      generated gRPC/protobuf API (from protos/)
  ringsync.config  cluster and node TOML, validated once into frozen dataclasses
  ringsync.pki     the cluster CA and node/operator/viewer certificates
  ringsync.client  async mTLS client of the node API (ctl, console, demo)
  ringsync.commands.ctl.status     `ringsync ctl`: scripted calls with JSON output
  ringsync.commands.demo    `ringsync demo`: a local multi-campus cluster and workload
  node             the campus node service (capture, journal, ring, apply)
  console          the operator TUI (Textual)
"""

__version__ = "0.1.0"
