"""What a replication stream handler is built from.

The receiver (node.replication.receiver) and the snapshot donor
(node.replication.snapshot) are created per stream by node.servicers, which
hands them the node's composition root (node.runtime.NodeRuntime); they use
only these three parts of it. A unit test hands them the parts directly.
"""

from __future__ import annotations

from typing import Protocol

from node.replication.resources import NodeResources
from node.replication.state import ReplicationState
from ringsync.config import NodeConfig


class NodeParts(Protocol):
    """The configuration, the resources and the replication state of a node."""

    @property
    def config(self) -> NodeConfig: ...

    @property
    def res(self) -> NodeResources: ...

    @property
    def state(self) -> ReplicationState: ...
