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

import os

# Our processes fork only to exec another program at once (pg_ctl, etcd,
# pgbench, node processes). gRPC's fork handlers are for children that go on
# using gRPC; with them on, a fork while gRPC's threads run can abort the
# child before it execs (seen: pg_ctl killed by SIGABRT in a drill, "epoll_wait
# error: Bad file descriptor"). Read when grpc is first imported, so this is
# set by the packages' __init__ (ringsync, node), which run before any of
# their modules import grpc. An explicit setting in the environment wins.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

__version__ = "0.1.0"
