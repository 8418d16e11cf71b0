"""`ringsync drill dual-track`: a migration from the old system and back.

The story of the source account: a campus's data lives in MariaDB (the old
system) and its users keep writing there; a PostgreSQL campus (the new
system) joins the ring by initial load *from* it (a heterogeneous snapshot,
taken while the writes go on: no gap, no duplicate); both stay live, each
with its own users; the old system's users are switched over to the new
system, then rolled back to the old one (the moves ``ctl switchover`` makes,
there and back), with nothing lost; then the single-writer set's writer
likewise, from the old system's fence to the new one's and back.

The harness (ringsync.commands.drill.harness) builds the two campuses, loads
the old system's history (ringsync.commands.drill.oldsystem: rows no
journal holds, so only the copy can carry them) and starts the old system
alone with its users, its stale application and its single-writer set
writer. ``run_dual_track`` then drives the join and the two moves and
returns the drill's one cycle record: when each move
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
from ringsync.commands.drill.checker import SET_ROUTE
from ringsync.commands.drill.common import RECOVERY_TIMEOUT_SECONDS, STEADY_SECONDS, say, wait_for
from ringsync.commands.drill.setmoves import switch_set
from ringsync.config import load_cluster
from ringsync.errors import RingsyncError

if TYPE_CHECKING:
    from ringsync.commands.drill.harness import Drill

JOIN_TIMEOUT_SECONDS = 300.0
JOIN_POLL_SECONDS = 0.1


def _join(drill: Drill, new: CampusLayout, donor: CampusLayout) -> dict[str, Any]:
    """Start ``new``'s node and watch its join (one client, its status asked
    until it is in the ring); the join's record, with the rows it copied."""
    cluster = drill.cluster
    assert cluster is not None
    started = time.time()
    cluster.start(new.name)

    async def watch() -> int:
        client = ClusterClient(load_cluster(cluster.cluster_file, need_client_tls=True))
        copied, deadline = 0, time.monotonic() + JOIN_TIMEOUT_SECONDS
        try:
            while True:
                cluster.check_alive()
                reply = await client.status_of(new.name)
                join = reply.status.join if reply.status is not None else None
                if join is not None:
                    copied = max(copied, int(join.rows_copied))
                    if str(join.state) == "in-ring":
                        return copied
                if time.monotonic() > deadline:
                    raise RingsyncError(f"drill: {new.name} joining the ring from {donor.name} "
                                        f"did not happen within {JOIN_TIMEOUT_SECONDS:.0f}s")
                await asyncio.sleep(JOIN_POLL_SECONDS)
        finally:
            await client.close()

    copied = asyncio.run(watch())
    seconds = round(time.time() - started, 3)
    say(f"  {new.name} ({new.engine}) joined from {donor.name} ({donor.engine}) in "
        f"{seconds:.2f}s, {copied} rows copied")
    return {"move": "join", "campus": new.name, "from": donor.name, "started_at": started,
            "seconds": seconds, "rows_copied": copied}


def _move(drill: Drill, campus: str, to: str, kind: str) -> dict[str, Any]:
    """Move ``campus``'s users to ``to``'s database; the move's record, with
    the users' RTO: from the move's start until their writes commit again."""
    started = time.time()
    result = drill.move(campus, to, kind)
    wait_for(lambda: drill.committed_at(campus, to, started), RECOVERY_TIMEOUT_SECONDS,
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
    deadline = time.monotonic() + RECOVERY_TIMEOUT_SECONDS
    while not drill.committed_at(campus, campus, time.time() - 1.0):
        if drill.route_servers().get(campus) != campus and not moves:
            moves.append(_move(drill, campus, campus, "failback"))
            continue
        if time.monotonic() > deadline:
            raise RingsyncError(f"drill: {campus}'s own users did not write there within "
                                f"{RECOVERY_TIMEOUT_SECONDS:.0f}s of its join")
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
    set_started = time.time()
    switch_set(drill, record)
    after = drill.set_writer()
    assert drill.history is not None
    moved = after != writer or drill.history.set_writer_moved(SET_ROUTE, set_started,
                                                              time.time())
    record.update(set_writer_after=after, set_moved=moved)
    return record
