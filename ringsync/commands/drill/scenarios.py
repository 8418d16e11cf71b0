"""One cycle of each drill scenario: inject, wait for the users to be served
again, repair, bring the users home. Returns the cycle's record (campus,
where its users went, RTO, and what the scenario measures besides).

The victim is drawn per cycle from the ring by the drill's seeded random
generator, so over many cycles the single-writer set's writer is the victim
in about 1/N of them: the set's writes must then be taken by another campus
(``set_to``, ``set_rto``) before the victim is repaired. A set's writer does
not move back by itself, so the next cycles find it elsewhere. ``switchover``
also moves the set's writer there and back."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from ringsync.commands.demo.cluster import CampusLayout
from ringsync.commands.drill.checker import SET_ROUTE, read_ids
from ringsync.commands.drill.common import RECOVERY_TIMEOUT_SECONDS, STEADY_SECONDS, say, wait_for
from ringsync.commands.drill.harness import Drill
from ringsync.commands.drill.setmoves import switch_set, wait_set_ack
from ringsync.config import load_cluster
from ringsync.errors import RingsyncError

# origin-crash: how long the surviving campuses get to apply what they hold
SURVIVORS_SETTLE_SECONDS = 30.0
NEEDS_POSTGRES = ("db-down", "origin-crash")
# What a running node logs when its etcd lease expired under it, and when its
# campus database fenced itself (node.dr.agent).
LEASE_LOST = "expired; taking a new one"
FENCED = "campus database FENCED"
# Scenarios whose fault is at the victim: only the victim may lose its lease
# or fence; in a switchover the victim fences (its users move away) but keeps
# its lease.
FAULTS_AT_VICTIM = ("node-crash", "db-down", "origin-crash", "campus-isolation")
FENCES_AT_VICTIM = (*FAULTS_AT_VICTIM, "switchover")


def log_marks(drill: Drill, mark: str) -> dict[str, int]:
    """How often each campus's node has logged ``mark`` so far."""
    assert drill.cluster is not None
    out = {}
    for c in drill.cluster.campuses:
        try:
            with c.log.open(errors="replace") as fh:
                out[c.name] = sum(1 for line in fh if mark in line)
        except OSError:
            out[c.name] = 0
    return out


def lease_losses(drill: Drill) -> dict[str, int]:
    """How often each campus's node has logged losing its etcd lease so far."""
    return log_marks(drill, LEASE_LOST)


def run_cycle(drill: Drill, n: int) -> dict[str, Any]:
    assert drill.cluster is not None
    scenario = drill.args.scenario
    candidates = [c for c in drill.cluster.campuses
                  if scenario not in NEEDS_POSTGRES or c.postgres is not None]
    victim = drill.rng.choice(candidates)
    time.sleep(STEADY_SECONDS)
    started = time.time()
    writer = drill.set_writer()
    record: dict[str, Any] = {"cycle": n, "campus": victim.name, "fault": scenario,
                              "set_writer": writer}
    say(f"cycle {n}: {scenario} at {victim.name} (set writer: {writer})")
    leases_before = lease_losses(drill)
    fences_before = log_marks(drill, FENCED)
    fault_at = time.time()
    if scenario == "switchover":
        _switchover(drill, victim, fault_at, record)
    elif scenario in ("wan-soak", "etcd-member-loss"):
        _hold(drill, fault_at, record)
    else:
        _fail_and_recover(drill, victim, fault_at, record)
    # A campus the fault did not touch must keep its lease (and so its fence):
    # in sync mode a dead successor once made its predecessor lose both.
    def untouched(after: dict[str, int], before: dict[str, int],
                  at_victim: tuple[str, ...]) -> dict[str, int]:
        return {c: k - before.get(c, 0) for c, k in after.items() if k > before.get(c, 0)
                and not (scenario in at_victim and c == victim.name)}

    lost = untouched(lease_losses(drill), leases_before, FAULTS_AT_VICTIM)
    fenced = untouched(log_marks(drill, FENCED), fences_before, FENCES_AT_VICTIM)
    record.update(healthy_lease_lost=lost, healthy_fenced=fenced)
    if lost or fenced:
        say(f"  a campus the fault did not touch lost its etcd lease {lost} or fenced its "
            f"database {fenced}")
    after = drill.set_writer()
    assert drill.history is not None
    record.update(set_writer_after=after,
                  set_moved=after != writer or drill.history.set_writer_moved(
                      SET_ROUTE, started, time.time()))
    say(f"  cycle {n}: RTO {record['rto']:.2f}s"
        + (f"; set writer {writer} -> {after}" if record["set_moved"] else ""))
    return record


def _switchover(drill: Drill, victim: CampusLayout, fault_at: float,
                record: dict[str, Any]) -> None:
    assert drill.cluster is not None
    standby = load_cluster(drill.cluster.cluster_file).entry(victim.name).standby
    there = drill.move(victim.name, standby[0], "switchover")
    time.sleep(STEADY_SECONDS)
    back_at = time.time()
    back = drill.move(victim.name, victim.name, "switchback")
    time.sleep(STEADY_SECONDS)
    client = drill.clients[victim.name]
    record.update(to=standby[0], switchover_seconds=there["seconds"],
                  switchback_seconds=back["seconds"],
                  rto=max(client.recovery_seconds(fault_at, back_at),
                          client.recovery_seconds(back_at, time.time())))
    switch_set(drill, record)


def _hold(drill: Drill, fault_at: float, record: dict[str, Any]) -> None:
    """A fault nothing may fail over for: the routes must not move."""
    before = drill.route_servers()
    if drill.args.scenario == "wan-soak":
        assert drill.net is not None
        drill.net.shape(latency=0.2, stall=0.01)
        say(f"  every link: 200 ms latency, 1% of chunks stalled 600 ms; holding "
            f"{drill.args.soak_seconds:.0f}s")
        time.sleep(drill.args.soak_seconds)
        after = drill.route_servers()
        drill.net.shape(latency=0.0, stall=0.0)
    else:
        assert drill.etcd is not None
        member = drill.etcd.members[0].name
        drill.etcd.stop_member(member)
        say(f"  etcd member {member} stopped; holding {drill.args.failover_after * 2:.0f}s")
        time.sleep(drill.args.failover_after * 2)
        after = drill.route_servers()
        drill.etcd.start_member(member)
        record["member"] = member
    record.update(spurious_failover=before != after,
                  rto=max(c.recovery_seconds(fault_at, time.time())
                          for c in drill.clients.values()))


def _inject(drill: Drill, victim: CampusLayout, links: list[str]) -> None:
    assert drill.cluster is not None
    scenario = drill.args.scenario
    if scenario in ("node-crash", "origin-crash"):
        drill.cluster.kill(victim.name)
    if scenario == "origin-crash":
        assert victim.postgres is not None
        pid = victim.postgres.pid()
        if pid is None or not victim.postgres.running():
            raise RingsyncError(f"{victim.name}'s PostgreSQL is not running before the fault")
        os.kill(pid, signal.SIGKILL)  # the postmaster; its backends follow
    elif scenario == "campus-isolation":
        assert drill.net is not None
        drill.net.cut(links)
    elif scenario == "db-down":
        assert victim.postgres is not None
        victim.postgres.stop("immediate")


def _repair(drill: Drill, victim: CampusLayout, links: list[str]) -> None:
    assert drill.cluster is not None
    scenario = drill.args.scenario
    if scenario in ("db-down", "origin-crash"):
        assert victim.postgres is not None
        victim.postgres.start()  # crash recovery from its own WAL
    if scenario in ("node-crash", "origin-crash"):
        drill.cluster.start(victim.name)
    elif scenario == "campus-isolation":
        assert drill.net is not None
        drill.net.heal(links)


def _missing_without(drill: Drill, victim: CampusLayout) -> int:
    """Acknowledged writes of the victim's users that no surviving campus holds
    yet, after the survivors had time to apply what their journals hold."""
    assert drill.cluster is not None
    acked = {i for i, node in drill.clients[victim.name].acked.items() if node == victim.name}
    survivors = [c for c in drill.cluster.campuses if c is not victim]
    deadline = time.monotonic() + SURVIVORS_SETTLE_SECONDS
    while True:
        missing: set[str] = set()
        for c in survivors:
            missing |= acked - read_ids(c)
        if not missing or time.monotonic() > deadline:
            return len(missing)
        time.sleep(1.0)


def _fail_and_recover(drill: Drill, victim: CampusLayout, fault_at: float,
                      record: dict[str, Any]) -> None:
    links = [n for n in (drill.net.links if drill.net is not None else {})
             if victim.name in n.split(">")]
    _inject(drill, victim, links)
    client = drill.clients[victim.name]
    wait_for(lambda: any(a.ok and a.node != victim.name and a.at > fault_at
                         for a in list(client.attempts)),
             RECOVERY_TIMEOUT_SECONDS, f"{victim.name}'s users served elsewhere")
    served_at = time.time()
    target = next(a.node for a in client.attempts if a.ok and a.at > fault_at
                  and a.node != victim.name)
    record.update(to=target, rto=client.recovery_seconds(fault_at, served_at + 1.0))
    if record["set_writer"] == victim.name:  # the set must fail over before the repair
        acked_at = wait_set_ack(drill, fault_at, None, victim.name)
        found = drill.first_set_ack(fault_at, None, victim.name)
        record.update(set_to=found[1] if found else None,
                      set_rto=round(acked_at - fault_at, 3))
        say(f"  set writes taken by {record['set_to']} {record['set_rto']:.2f}s after the "
            f"fault")
    if drill.args.scenario == "origin-crash":
        record["lost_without_campus"] = _missing_without(drill, victim)
        say(f"  acknowledged writes of {victim.name} missing at every other campus while it "
            f"is down: {record['lost_without_campus']}")
    say(f"  {victim.name}'s users now at {target}; repairing {victim.name}")
    time.sleep(STEADY_SECONDS)
    _repair(drill, victim, links)
    back = drill.move(victim.name, victim.name, "failback")
    record.update(failback_seconds=back["seconds"])
    wait_for(lambda: drill.committed_at(victim.name, victim.name, time.time() - 0.5),
             RECOVERY_TIMEOUT_SECONDS, f"{victim.name}'s users back home")
