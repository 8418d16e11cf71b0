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
