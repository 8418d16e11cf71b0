"""What a parent knows of each leaf hanging from it, and a leaf of its parent.

Written by the Follow streams (node.leaf.serve on a parent, node.leaf.follow
on the leaf), read by status (node.status) and the pruner. No imports from
the rest of the node: the replication state holds these.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from node.leaf.route import RouteCounters
from ringsync.leaves import LeafSettings

# In a leaf's data_dir: the fingerprint of the route its subset was copied with.
ROUTE_FILE = "leaf-route"
# What a parent's ReseedNeeded says (node.leaf.serve), unlike the other
# FAILED_PRECONDITION refusals (a schema mismatch): the leaf re-seeds on it.
RESEED_MARK = "must be re-seeded"


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
    blocked: bool = False       # on a leaf: it does not follow (see route_change)
    route: RouteCounters = field(default_factory=RouteCounters)
    cascades: int = 0           # re-seeds asked for: a followed row moved (node.leaf.parents)
    last_cascade: str = ""

    def seen(self, journal: dict[str, int], applied: dict[str, int]) -> None:
        self.journal, self.applied = journal, applied
        self.last_seen = time.time()


def record_route(data_dir: Path, leaf: LeafSettings) -> None:
    """Say which route this leaf's copy was made with (after a copy, or on
    the first start of a leaf that has none recorded)."""
    path = data_dir / ROUTE_FILE
    path.write_text(leaf.fingerprint + "\n")


def route_change(data_dir: Path, leaf: LeafSettings) -> str:
    """Why this leaf must not follow with its present route ("" if it may):
    its route changed since it copied its subset, so what it holds is not what
    the route selects; following on would leave it silently partial."""
    path = data_dir / ROUTE_FILE
    if not path.exists():
        record_route(data_dir, leaf)
        return ""
    copied = path.read_text().strip()
    if copied == leaf.fingerprint:
        return ""
    return (f"the route of leaf {leaf.name} changed since it copied its subset (route "
            f"{copied}, now {leaf.fingerprint}); it copies its subset again before it "
            f"follows (docs/leaves.md, \"Changing a route\")")
