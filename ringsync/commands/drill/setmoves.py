"""The single-writer set's writer moved by the drill, and the wait for its
first write at the new writer.

A drill cycle (ringsync.commands.drill.scenarios) and the dual-track
migration (ringsync.commands.drill.dualtrack) both move the set
``drill_single``'s route the way ``ctl switchover`` does, there and back, and
measure the set's RTO: from the move's start until the new writer's database
acknowledged a set write.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ringsync.commands.drill.checker import SET_ROUTE
from ringsync.commands.drill.common import RECOVERY_TIMEOUT_SECONDS, STEADY_SECONDS, say, wait_for
from ringsync.errors import RingsyncError

if TYPE_CHECKING:
    from ringsync.commands.drill.harness import Drill


def switch_set(drill: Drill, record: dict[str, Any]) -> None:
    """The set's writer to the next campus of the ring and back; set_rto: the
    longer of the two waits from the move's start until the new writer's
    database took a set write."""
    assert drill.cluster is not None
    writer = record["set_writer"]
    ring = [c.name for c in drill.cluster.campuses]
    if writer not in ring:
        raise RingsyncError(f"the set route {SET_ROUTE} names no writer of the ring ({writer})")
    to = ring[(ring.index(writer) + 1) % len(ring)]
    waits, seconds = [], []
    for kind, target in (("switchover", to), ("switchback", writer)):
        started = time.time()
        moved = drill.move(SET_ROUTE, target, kind)
        waits.append(wait_set_ack(drill, started, target, "") - started)
        seconds.append(moved["seconds"])
        say(f"  set {kind} to {target}: route moved in {moved['seconds']:.2f}s, first write "
            f"there {waits[-1]:.2f}s after the move began")
        time.sleep(STEADY_SECONDS)
    record.update(set_to=to, set_switchover_seconds=seconds[0],
                  set_switchback_seconds=seconds[1], set_rto=round(max(waits), 3))


def wait_set_ack(drill: Drill, after: float, campus: str | None, exclude: str) -> float:
    """Wait until a set write is acknowledged after ``after`` at ``campus`` (or
    at any campus but ``exclude``); when it was."""
    where = campus or f"a campus other than {exclude}"
    wait_for(lambda: drill.first_set_ack(after, campus, exclude) is not None,
             RECOVERY_TIMEOUT_SECONDS, f"a set write accepted at {where}")
    found = drill.first_set_ack(after, campus, exclude)
    assert found is not None
    return found[0]
