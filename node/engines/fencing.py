"""Fence logic every engine shares (the Fence role, node.engines.base.Fence).

Each engine keeps the campus fence and the single-writer sets' rows in its
own tables and guards them with its own triggers (node.engines.postgres.fence,
node.engines.sqlite.fence); what a fence time may be and how stored set
rows read back are the same everywhere, and said once here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from node.engines.base import SetFence
from ringsync.errors import EngineError


def check_fence_time(writable_until: float) -> float:
    """The time as a float: Unix seconds or inf; NaN is refused."""
    value = float(writable_until)
    if math.isnan(value):
        raise EngineError("a fence time must be a number of Unix seconds or inf, not NaN")
    return value


def set_fences_of(rows: Iterable[Any]) -> dict[str, SetFence]:
    """Stored set rows (name, writable_until, epoch, reconciled), by set name."""
    return {name: SetFence(float(until), int(epoch), int(reconciled))
            for name, until, epoch, reconciled in rows}
