"""`ringsync demo --satellites N`: SQLite satellites hanging from the demo's ring.

Satellite i hangs from ring campus i (round the ring), with the next campus
as its standby parent. Its route takes everything (``all``, the default: it
runs the workload like a campus, and its writes go up), or (``subset``) the
patients and lab orders of its parent and itself, by CEL filters; a subset
satellite is a read-mostly clinic and writes nothing in the demo (the
workload would write specimens and results outside its route).

``leaves_converged`` is the demo's check that the leaves hold what they
should: every leaf has applied every other campus's transactions, every
ring campus every leaf's, and each leaf's rows are its parent's, by digest
(a whole route) or counted by the same condition in SQL at the parent (a
subset route), both read from the databases.
"""

from __future__ import annotations

from typing import Any

from ringsync.client import ClusterClient
from ringsync.commands.demo.cluster import LocalCluster
from ringsync.commands.demo.counts import row_counts

ROUTES = ("all", "subset")
SUBSET_TABLES = {"patients": "home_campus", "lab_orders": "ordering_campus"}


def satellite_leaves(members: list[str], count: int, route: str) -> list[dict[str, Any]]:
    """The [[leaf]] entries of ``count`` satellites."""
    out = []
    for i in range(count):
        name = f"sat-{i + 1}"
        parent = members[i % len(members)]
        entry: dict[str, Any] = {
            "name": name, "parents": [parent, members[(i + 1) % len(members)]]}
        if route == "subset":
            entry["tables"] = list(SUBSET_TABLES)
            entry["filter"] = {t: f'{column} in ["{parent}", "{name}"]'
                               for t, column in SUBSET_TABLES.items()}
        out.append(entry)
    return out


def subset_sql(leaf: dict[str, Any]) -> dict[str, str]:
    """The SQL condition of each filtered table of ``leaf`` (what its CEL says)."""
    if "filter" not in leaf:
        return {}
    names = ", ".join(f"'{n}'" for n in (leaf["parents"][0], leaf["name"]))
    return {t: f"{column} IN ({names})" for t, column in SUBSET_TABLES.items()}


async def leaves_converged(cluster: LocalCluster, client: ClusterClient) -> bool:
    members = await client.status_all()
    leaves = [await client.status_of(x.name) for x in cluster.leaves]
    if any(r.status is None for r in [*members, *leaves]):
        return False
    heads = {r.campus: r.status.journal.seqs.get(r.campus, 0)  # type: ignore[union-attr]
             for r in [*members, *leaves]}
    for r in [*members, *leaves]:
        applied = r.status.applied.seqs  # type: ignore[union-attr]
        if any(applied.get(o, 0) < seq for o, seq in heads.items() if o != r.campus):
            return False
    for layout in cluster.leaves:
        route = cluster.routes[layout.name]
        parent = cluster.campus(route["parents"][0])
        tables = tuple(route.get("tables", cluster.tables))
        if "filter" in route:
            if row_counts(layout.target, tables) != row_counts(parent.target, tables,
                                                                subset_sql(route)):
                return False
            continue
        mine = {t.table: t.sha256 for t in (await client.checksum(layout.name)).tables}
        theirs = {t.table: t.sha256 for t in (await client.checksum(parent.name)).tables}
        if any(mine.get(t) != theirs.get(t) for t in tables):
            return False
    return True
