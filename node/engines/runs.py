"""Group changes into batched writes, the same way for every engine.

Consecutive changes to one table with one operation form a run; each run
becomes at most one batched DELETE (deletes, and updates that move a row's
key) followed by one batched upsert (inserts and updates). Engines only
convert values and execute.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from node.model import Change, Op, TableShape

Row = tuple[Any, ...]


def batched_writes(
    changes: Iterable[Change], shape_of: Callable[[str], TableShape]
) -> Iterator[tuple[TableShape, list[Row], list[Row]]]:
    """Yield (shape, keys to delete, rows to upsert) per run, in order."""
    run: list[Change] = []
    for change in changes:
        if run and (run[0].table != change.table or run[0].op != change.op):
            yield _writes(run, shape_of(run[0].table))
            run = []
        run.append(change)
    if run:
        yield _writes(run, shape_of(run[0].table))


def _writes(run: list[Change], shape: TableShape) -> tuple[TableShape, list[Row], list[Row]]:
    if run[0].op is Op.DELETE:
        return shape, [shape.key_of(c.old or ()) for c in run], []
    moved = [
        shape.key_of(c.old) for c in run
        if c.old is not None and c.new is not None and shape.key_of(c.old) != shape.key_of(c.new)
    ]
    return shape, moved, [c.new or () for c in run]
