"""`ringsync drill dual-track`: a migration from the old system and back.

The story of the source account: a campus's data lives in MariaDB (the old
system) and its users keep writing there; a PostgreSQL campus (the new
system) joins the ring by initial load *from* it (a heterogeneous snapshot,
taken while the writes go on: no gap, no duplicate); both stay live, each
with its own users; the old system's users are switched over to the new
system, then rolled back to the old one (the moves ``ctl switchover`` makes,
there and back), with nothing lost; then the single-writer set's writer likewise, from the
old system's fence to the new one's and back.

The harness (ringsync.commands.drill.harness) builds the two campuses, loads
the old system's history (ringsync.commands.drill.oldsystem: rows no
journal holds, so only the copy can carry them) and starts the old system
alone with its users, its stale application and its single-writer set
writer. ``run_dual_track`` then drives the join
and the two moves and returns the drill's one cycle record: when each move
started, how long it took and the users' recovery time (RTO) after each;
the verdict (every acknowledged write and every history row at both
campuses, the digests equal, no second writer) is the harness's, as for the
other drills.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from ringsync.client import ClusterClient
from ringsync.commands.demo.cluster import CampusLayout
from ringsync.commands.drill.common import STEADY_SECONDS, say, wait_for
from ringsync.commands.drill.setmoves import switch_set
from ringsync.config import load_cluster
from ringsync.errors import RingsyncError

if TYPE_CHECKING:
    from ringsync.commands.drill.harness import Drill

JOIN_TIMEOUT_SECONDS = 300.0
MOVE_TIMEOUT_SECONDS = 90.0


def join_state(drill: Drill, campus: str) -> Any:
    """The campus's join status as its node reports it (None: no answer)."""
    assert drill.cluster is not None
    cluster = load_cluster(drill.cluster.cluster_file, need_client_tls=True)

    async def fetch() -> Any:
        client = ClusterClient(cluster)
        try:
            return {r.campus: (r.status.join if r.status is not None else None)
                    for r in await client.status_all()}.get(campus)
        finally:
            await client.close()

    return asyncio.run(fetch())


def _join(drill: Drill, new: CampusLayout, donor: CampusLayout) -> dict[str, Any]:
    assert drill.cluster is not None
    started = time.time()
    drill.cluster.start(new.name)
    seen: dict[str, Any] = {"rows_copied": 0}

    def joined() -> bool:
        drill.cluster.check_alive()  # type: ignore[union-attr]
        state = join_state(drill, new.name)
        if state is None:
            return False
        seen["rows_copied"] = max(seen["rows_copied"], int(state.rows_copied))
        return str(state.state) == "in-ring"

    wait_for(joined, JOIN_TIMEOUT_SECONDS, f"{new.name} joining the ring from {donor.name}")
    seconds = round(time.time() - started, 3)
    say(f"  {new.name} ({new.engine}) joined from {donor.name} ({donor.engine}) in "
        f"{seconds:.2f}s, {seen['rows_copied']} rows copied")
    return {"move": "join", "campus": new.name, "from": donor.name, "started_at": started,
            "seconds": seconds, "rows_copied": seen["rows_copied"]}


def _move(drill: Drill, campus: str, to: str, kind: str) -> dict[str, Any]:
    """Move ``campus``'s users to ``to``'s database; the move's record, with
    the users' RTO: from the move's start until their writes commit again."""
    started = time.time()
    result = drill.move(campus, to, kind)
    wait_for(lambda: drill.committed_at(campus, to, started), MOVE_TIMEOUT_SECONDS,
             f"{campus}'s users writing at {to} after the {kind}")
    time.sleep(STEADY_SECONDS)
    rto = drill.clients[campus].recovery_seconds(started, time.time())
    say(f"  {kind}: {campus}'s users to {to} in {result['seconds']:.2f}s (RTO {rto:.2f}s)")
    return {"move": kind, "campus": campus, "to": to, "started_at": started,
            "seconds": round(float(result["seconds"]), 3), "rto_seconds": round(rto, 3)}


def _users_home(drill: Drill, campus: str) -> list[dict[str, Any]]:
    """Wait until ``campus``'s own users write at its database. A campus whose
    node held no lease before it ran has its users failed over (to the old
    system), and the leader may publish that only after the join: whenever
    the route points elsewhere they are failed back; the failback's record."""
    moves: list[dict[str, Any]] = []
    deadline = time.monotonic() + MOVE_TIMEOUT_SECONDS
    while not drill.committed_at(campus, campus, time.time() - 1.0):
        if drill.route_servers().get(campus) != campus and not moves:
            moves.append(_move(drill, campus, campus, "failback"))
            continue
        if time.monotonic() > deadline:
            raise RingsyncError(f"drill: {campus}'s own users did not write there within "
                                f"{MOVE_TIMEOUT_SECONDS:.0f}s of its join")
        time.sleep(0.2)
    return moves


def run_dual_track(drill: Drill) -> dict[str, Any]:
    """The join and the moves there and back; the drill's cycle record."""
    assert drill.cluster is not None
    old_system, new_system = drill.cluster.campuses
    time.sleep(STEADY_SECONDS)  # the old system's users are writing
    say(f"dual-track: {new_system.name} joins from {old_system.name} while its users write")
    moves = [_join(drill, new_system, old_system)]
    drill.add_workers(new_system)  # both systems live, each with its own users
    moves += _users_home(drill, new_system.name)
    time.sleep(STEADY_SECONDS)
    there = _move(drill, old_system.name, new_system.name, "switchover")
    back = _move(drill, old_system.name, old_system.name, "switchback")
    moves += [there, back]
    writer = drill.set_writer()
    record = {"cycle": 1, "campus": old_system.name, "fault": "dual-track",
              "to": new_system.name, "set_writer": writer,
              "join_seconds": moves[0]["seconds"], "rows_copied": moves[0]["rows_copied"],
              "switchover_seconds": there["seconds"], "switchback_seconds": back["seconds"],
              "rto": max(there["rto_seconds"], back["rto_seconds"]), "moves": moves}
    # The single-writer set's writer too: from the old system's fence to the
    # new one's and back, one writer per epoch across the two engines.
    switch_set(drill, record)
    record.update(set_writer_after=drill.set_writer(), set_moved=True)
    return record
