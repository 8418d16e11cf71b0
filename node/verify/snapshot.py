"""One campus's answer about one table, as the engines give it to the node."""

from __future__ import annotations

from dataclasses import dataclass, field

from node.verify.rowhash import Digest, RowHash


@dataclass
class TableVerify:
    """What one read snapshot of one table showed: either its bucket digests
    or the row hashes of some buckets, and the applied vector it reflects."""

    table: str
    bits: int
    applied: dict[str, int]
    buckets: dict[int, Digest] = field(default_factory=dict)
    rows: list[RowHash] = field(default_factory=list)
    mode: str = "stock"   # stock: hashed from the rows; incremental: the kept digests
    # stock, where digests are kept too: they disagreed with the rows (and were
    # rebuilt from them): a write bypassed the triggers
    drift: bool = False
