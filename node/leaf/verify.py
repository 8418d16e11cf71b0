"""A parent's answer to Control.Verify for a leaf's route: the rows as the leaf holds them.

``ctl verify`` compares a leaf with its parent (ringsync.leafcheck). The leaf
hashes its own rows like any campus; the parent reads its table from one
read snapshot, passes every row through the leaf's route exactly as an
initial load would (node.leaf.route: the filter, then masking, then the
projection), and hashes what comes out with the reference row hash
(node.verify.rowhash), so both sides hash the same canonical text. This is
Python over every row of the table: a route view costs a full read of the
table at the parent, where the ring's own verification hashes in SQL.
"""

from __future__ import annotations

import datetime as dt

from node.engines.base import Engine
from node.leaf.route import LeafRoute
from node.verify.rowhash import Digest, hash_row
from node.verify.snapshot import TableVerify
from ringsync.errors import PeerRejected, ProtocolError
from ringsync.leaves import LeafSettings

BATCH_ROWS = 2000


def route_view(engine: Engine, campus: str, leaf: LeafSettings | None, table: str, bits: int,
               buckets: list[int]) -> TableVerify:
    """Bucket digests (no ``buckets``) or the row hashes of ``buckets`` of
    ``table`` as ``leaf``'s route makes it (worker thread)."""
    if leaf is None:
        raise ProtocolError("Verify names a route that is no [[leaf]] of the cluster file")
    if campus not in leaf.parents:
        raise PeerRejected(f"leaf {leaf.name} hangs from {', '.join(leaf.parents)}, not from "
                           f"{campus}: ask one of its parents for its route's rows")
    if table not in leaf.tables:
        raise ProtocolError(f"table {table!r} is not in leaf {leaf.name}'s route "
                            f"({', '.join(leaf.tables)})")
    shapes = engine.shapes()
    route = LeafRoute(leaf, {t: s for t, s in shapes.items() if t in leaf.tables})
    held = route.shapes[table]
    columns = shapes[table].columns
    wanted = set(buckets)
    now = dt.datetime.now(dt.UTC)
    with engine.inspect.snapshot() as snap:
        result = TableVerify(table, bits, dict(snap.applied), mode="route")
        for parent in route.ancestors(table):  # [leaf.follows]: their kept keys first
            for batch in snap.batches(parent, BATCH_ROWS):
                route.initial_rows(parent, shapes[parent].columns, batch, now)
        for batch in snap.batches(table, BATCH_ROWS):
            for row in route.initial_rows(table, columns, batch, now):
                hashed = hash_row(held.kinds, held.key_indexes, row, bits)
                if wanted:
                    if hashed.bucket in wanted:
                        result.rows.append(hashed)
                else:
                    result.buckets.setdefault(hashed.bucket, Digest()).add(hashed.digest)
    if route.counters.unjudged:
        result.drift = True  # rows the route could not judge: the leaf lacks them
    return result
