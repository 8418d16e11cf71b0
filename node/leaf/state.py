"""What a parent knows of each leaf hanging from it, and a leaf of its parent.

Written by the Follow streams (node.leaf.serve on a parent, node.leaf.follow
on the leaf), read by status (node.status) and the pruner. No imports from
the rest of the node: the replication state holds these.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from node.leaf.route import RouteCounters


@dataclass
class LeafLink:
    """One leaf as a parent sees it (or, on a leaf, its link up)."""

    name: str
    parent: str
    online: bool = False
    connected_at: float = 0.0   # Unix s the current (or last) stream opened
    last_seen: float = 0.0      # Unix s of its last Ack; 0: never
    journal: dict[str, int] = field(default_factory=dict)  # what its journal holds
    applied: dict[str, int] = field(default_factory=dict)  # what its database holds
    error: str = ""
    route: RouteCounters = field(default_factory=RouteCounters)

    def seen(self, journal: dict[str, int], applied: dict[str, int]) -> None:
        self.journal, self.applied = journal, applied
        self.last_seen = time.time()
