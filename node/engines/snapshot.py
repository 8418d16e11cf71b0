"""A consistent read of a campus database, for initial load (the donor side).

An engine opens a ReadSnapshot inside a read transaction that sees exactly
the transactions committed before one instant, and says where that instant
lies in two coordinates: ``position``, in the engine's own capture positions
(a local transaction is in the snapshot exactly when its capture position is
at or before it), and ``applied``, the foreign applied vector stored in the
database, read in the same transaction. node.replication.snapshot turns that
into the ring vector a joining campus adopts.

Engines supply three small callables; this class does the batching, the
progress counting and the digests, the same way for both engines.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from node.codec import RowSetDigest
from node.model import TableShape

RowBatches = Callable[[TableShape, int], Iterator[list[tuple[Any, ...]]]]


class ReadSnapshot:
    def __init__(
        self,
        position: int,
        applied: dict[str, int],
        shapes: Mapping[str, TableShape],
        count: Callable[[TableShape], int],
        read: RowBatches,
    ) -> None:
        self.position = position
        self.applied = applied
        self.shapes = shapes
        self._count = count
        self._read = read

    def row_counts(self) -> dict[str, int]:
        return {name: self._count(shape) for name, shape in self.shapes.items()}

    def batches(self, table: str, size: int) -> Iterator[list[tuple[Any, ...]]]:
        """The table's rows as canonical values, ``size`` at a time (streamed)."""
        return self._read(self.shapes[table], size)

    def viewed(self, view: Callable[[str, list[tuple[Any, ...]]], list[tuple[Any, ...]]],
               ) -> ReadSnapshot:
        """The same snapshot with every batch of rows passed through ``view``
        (table, rows) -> rows (node.dictionary: local codes to canonical)."""
        read = self._read

        def viewed_read(shape: TableShape, size: int) -> Iterator[list[tuple[Any, ...]]]:
            for batch in read(shape, size):
                yield view(shape.name, batch)
        return ReadSnapshot(self.position, self.applied, self.shapes, self._count, viewed_read)

    def digest(self, table: str) -> tuple[int, str]:
        """(rows, digest) in ringsync's canonical, engine-neutral form."""
        digest = RowSetDigest()
        for batch in self.batches(table, 5000):
            for row in batch:
                digest.add(row)
        return digest.rows, digest.hexdigest()
