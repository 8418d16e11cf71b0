"""Leaves in status: each leaf's lag, online state, retention and route counters.

On a parent: every leaf that hangs from it first, and any other that has
followed it since it started. On a leaf: itself, with the parent it follows
and how far it is behind what that parent held when last heard from. The
alerts say what an operator must do: a leaf nearing or past its retention
(re-seed it), rows a route's filter could not judge (fix the rows or the
filter).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from node.leaf.state import LeafLink
from node.replication.state import ReplicationState
from node.replication.vectors import Vector
from ringsync.config import NodeConfig
from ringsync.v1 import control_pb2 as cpb

# Warn once a leaf has lacked a transaction for this share of its retention.
RETENTION_WARN_SHARE = 0.8


def behind(holds: Vector, has: Vector, leaf: str) -> int:
    """Transactions ``holds`` has that ``has`` lacks, the leaf's own aside."""
    return sum(max(0, seq - has.get(o, 0)) for o, seq in holds.items() if o != leaf)


async def leaf_statuses(config: NodeConfig, state: ReplicationState, journal: Vector,
                        oldest_missing: Callable[[Vector], Awaitable[float | None]]
                        ) -> list[cpb.LeafStatus]:
    cluster, now = config.cluster, time.time()
    mine = config.leaf
    if mine is not None:
        link = state.leaves.get(mine.name) or LeafLink(mine.name, mine.parents[0])
        parent_holds = state.known.get(link.parent, {})
        return [_status(link, mine.retention_hours, mine.uploads,
                        behind(parent_holds, journal, mine.name), 0.0)]
    out = []
    for leaf in cluster.leaves:
        heard = state.leaves.get(leaf.name)
        if heard is None and leaf.parents[0] != config.campus:
            continue
        link = heard or LeafLink(leaf.name, config.campus)
        lacks = behind(journal, link.journal, leaf.name) if link.last_seen else 0
        waited = 0.0
        if lacks:
            oldest = await oldest_missing(link.journal)
            waited = max(0.0, now - oldest) if oldest is not None else 0.0
        out.append(_status(link, leaf.retention_hours, leaf.uploads, lacks, waited))
    return out


def _status(link: LeafLink, retention_hours: float, uploads: bool, lacks: int,
            waited: float) -> cpb.LeafStatus:
    r = link.route
    return cpb.LeafStatus(
        name=link.name, parent=link.parent, online=link.online, last_seen=link.last_seen,
        lag_transactions=lacks, lag_seconds=waited, retention_hours=retention_hours,
        past_retention=waited > retention_hours * 3600, rows_sent=r.rows_sent,
        rows_filtered=r.rows_filtered, rows_moved_in=r.rows_moved_in,
        rows_moved_out=r.rows_moved_out, unjudged=r.unjudged, last_unjudged=r.last_unjudged,
        error=link.error, uploads=uploads, blocked=link.blocked, cascades=link.cascades,
        last_cascade=link.last_cascade)


def leaf_alerts(leaves: list[cpb.LeafStatus]) -> list[str]:
    out = []
    for x in leaves:
        if x.blocked:
            out.append(f"leaf {x.name} does not follow its parent: {x.error}")
        if x.past_retention:
            out.append(f"leaf {x.name} has lacked transactions for {x.lag_seconds / 3600:.1f}h, "
                       f"past its {x.retention_hours:g}h retention: parents may have dropped "
                       f"them; re-seed it (stop it, remove its journal, start it: it copies "
                       f"its subset again)")
        elif x.lag_seconds > RETENTION_WARN_SHARE * x.retention_hours * 3600:
            out.append(f"leaf {x.name} has lacked transactions for {x.lag_seconds / 3600:.1f}h "
                       f"of its {x.retention_hours:g}h retention; bring it back online before "
                       f"it must be re-seeded")
        if x.unjudged:
            out.append(f"leaf {x.name}: {x.unjudged} row(s) its route's filter could not judge "
                       f"were not sent (latest: {x.last_unjudged[:200]}); correct the rows or "
                       f"the filter in [leaf.filter]")
    return out
