"""Joining the ring: initial load under continuous writes, and pre-filled campuses.

Rows written before any node ran exist in no journal, so the only way a
joining campus can hold them is the copy; writes that continue during the
join can only arrive through the ring. Convergence is judged by comparing
every row of every campus (across engines), and exactly-once by comparing
each campus's applied vector with what every origin captured.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from ringsync.client import ClusterClient
from ringsync.commands.demo.cluster import LocalCluster
from ringsync.commands.demo.lis import LisWorkload
from ringsync.config import load_cluster
from tests.helpers import campus_rows, preload_patients, wait_until
from tests.integration.test_ring import assert_exactly_once

LEGACY_ROWS = 3000


def join_states(cluster: LocalCluster) -> dict[str, object]:
    async def fetch() -> dict[str, object]:
        client = ClusterClient(load_cluster(cluster.cluster_file, need_client_tls=True))
        try:
            return {r.campus: (r.status.join if r.status is not None else None)
                    for r in await client.status_all()}
        finally:
            await client.close()

    return asyncio.run(fetch())


def in_ring(cluster: LocalCluster, *names: str) -> Callable[[], bool]:
    def check() -> bool:
        cluster.check_alive()
        states = join_states(cluster)
        return all(getattr(states.get(n), "state", "") == "in-ring" for n in names)
    return check


def converged(cluster: LocalCluster) -> Callable[[], bool]:
    def check() -> bool:
        snaps = [campus_rows(c.target) for c in cluster.campuses]
        return all(s == snaps[0] for s in snaps[1:])
    return check


def exactly_once(cluster: LocalCluster) -> Callable[[], bool]:
    def check() -> bool:
        try:
            assert_exactly_once(cluster)
            return True
        except AssertionError:
            return False
    return check


def join_late_under_writes(cluster: LocalCluster) -> list[str]:
    """Start all but the last campus, write everywhere that runs, then start the
    last one with an empty database in the middle of it. Returns the join
    states the late campus reported while joining."""
    *early, late = cluster.campuses
    preload_patients(early[0].target, early[0].name, LEGACY_ROWS)
    for c in early:
        cluster.start(c.name)
    wait_until(in_ring(cluster, *(c.name for c in early)), 60, "the early campuses to join")
    workloads = [LisWorkload(c.name, c.target, 25.0, seed=i + 1) for i, c in enumerate(early)]
    for w in workloads:
        w.start()
    seen: list[str] = []
    try:
        time.sleep(1.5)
        cluster.start(late.name)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            state = join_states(cluster).get(late.name)
            if state is not None:
                seen.append(f"{state.state}:{state.rows_copied}/{state.rows_total}")
                if state.state == "in-ring":
                    break
            cluster.check_alive()
            time.sleep(0.1)
        time.sleep(1.5)  # and the writes go on after the hand-off
    finally:
        for w in workloads:
            w.stop()
    assert all(w.transactions > 0 for w in workloads)
    wait_until(converged(cluster), 90, "every campus to hold identical rows", 0.5)
    wait_until(exactly_once(cluster), 30, "applied vectors to match what each origin captured")
    rows = campus_rows(late.target)
    legacy = [r for r in rows["patients"] if r[0].startswith("legacy-")]
    assert len(legacy) == LEGACY_ROWS
    homes = {r[5] for r in rows["patients"] if not r[0].startswith("legacy-")}
    assert homes == {c.name for c in early}
    log = late.log.read_text()
    assert "copying" in log and "joined the ring from" in log
    return seen


def test_empty_campus_joins_under_continuous_writes(make_cluster) -> None:
    cluster = make_cluster(3)
    seen = join_late_under_writes(cluster)
    assert seen and seen[-1].startswith("in-ring")
    # whatever the copy reported, it counted the donor's rows, not more
    totals = [int(s.split("/")[1]) for s in seen if s.startswith("copying")]
    assert all(t >= LEGACY_ROWS for t in totals)


def test_empty_postgres_campus_joins_a_mixed_ring_under_writes(make_cluster) -> None:
    cluster = make_cluster(3, engines=["postgres", "sqlite", "postgres"])
    try:
        join_late_under_writes(cluster)
    finally:
        cluster.stop_all()
        cluster.stop_databases()


def add_join_config(cluster: LocalCluster, name: str, text: str) -> None:
    config = cluster.campus(name).config
    config.write_text(config.read_text() + f"\n[join]\n{text}\n")


def test_prefilled_campus_that_differs_is_refused_then_takes_the_donor(make_cluster) -> None:
    cluster = make_cluster(2)
    a, b = cluster.campuses
    preload_patients(a.target, a.name, 200)
    preload_patients(b.target, b.name, 150)
    preload_patients(b.target, b.name, 5, prefix="stray")
    cluster.start(a.name)
    wait_until(in_ring(cluster, a.name), 30, f"{a.name} to seed the ring")
    proc = cluster.start(b.name)
    assert proc.wait(timeout=60) == 2, "a campus whose data differs must stop"
    log = b.log.read_text()
    assert "differs from" in log and "patients" in log and "take-donor" in log
    assert "keep-local" in log
    assert len(campus_rows(b.target)["patients"]) == 155, "the refused campus kept its rows"

    add_join_config(cluster, b.name, 'on_mismatch = "take-donor"')
    cluster.start(b.name)
    wait_until(in_ring(cluster, b.name), 60, f"{b.name} to join by taking {a.name}'s copy")
    wait_until(converged(cluster), 30, "both campuses to hold identical rows")
    assert not any(r[0].startswith("stray") for r in campus_rows(b.target)["patients"])


def test_prefilled_campus_keeps_its_data_when_the_operator_says_so(make_cluster) -> None:
    cluster = make_cluster(3, engines=["sqlite", "postgres", "sqlite"])
    try:
        a, b, c = cluster.campuses
        preload_patients(a.target, a.name, 200)          # b: 0-149 differ, 150-199 missing
        preload_patients(b.target, b.name, 150)
        preload_patients(b.target, b.name, 5, prefix="stray")  # and 5 that a lacks
        before = campus_rows(b.target)
        add_join_config(cluster, b.name, 'on_mismatch = "keep-local"\ndonor = "' + a.name + '"')
        # c copies from b, so its copy holds b's difference while a may still
        # lack it: c must take b's journal frames along to serve them to a
        add_join_config(cluster, c.name, 'donor = "' + b.name + '"')
        cluster.start_all()
        wait_until(in_ring(cluster, a.name, b.name, c.name), 60, "every campus to join")
        wait_until(converged(cluster), 60, "every campus to hold the kept campus's rows")
        assert campus_rows(a.target) == before
        assert "keep-local: 205 changes" in b.log.read_text()
        wait_until(exactly_once(cluster), 30, "applied vectors to match captures")
    finally:
        cluster.stop_all()
        cluster.stop_databases()


def test_prefilled_campus_with_equal_data_joins_without_a_copy(make_cluster) -> None:
    cluster = make_cluster(2)
    a, b = cluster.campuses
    for c in (a, b):
        preload_patients(c.target, a.name, 100)
    cluster.start_all()
    wait_until(in_ring(cluster, a.name, b.name), 60, "both campuses to be in the ring")
    assert "joining without a copy" in b.log.read_text()
    workload = LisWorkload(b.name, b.target, 50.0, seed=3)
    workload.start()
    time.sleep(1.0)
    workload.stop()
    assert workload.transactions > 0
    wait_until(converged(cluster), 30, "both campuses to hold identical rows")


@pytest.mark.parametrize("bad", ['on_mismatch = "keep-both"', 'donor = "nowhere"'])
def test_bad_join_config_is_a_clear_error(make_cluster, bad: str) -> None:
    cluster = make_cluster(2)
    add_join_config(cluster, cluster.campuses[1].name, bad)
    proc = cluster.start(cluster.campuses[1].name)
    assert proc.wait(timeout=30) == 2
    assert "join." in cluster.campuses[1].log.read_text()


def replication_health(cluster: LocalCluster, campus: str) -> int:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from ringsync.client import Credentials

    config = load_cluster(cluster.cluster_file, need_client_tls=True)
    assert config.client_tls is not None

    async def check() -> int:
        channel = Credentials(config.client_tls).channel(config.address_of(campus), campus)
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="ringsync.v1.Replication"), timeout=5)
            return int(reply.status)
        finally:
            await channel.close()

    return asyncio.run(check())


def test_campus_waiting_for_a_donor_says_why_and_takes_no_replication(make_cluster) -> None:
    from grpc_health.v1 import health_pb2

    cluster = make_cluster(2)
    a, b = cluster.campuses
    cluster.start(b.name)  # not the seed, and no campus is initialized yet

    def waiting() -> bool:
        state = join_states(cluster).get(b.name)
        return state is not None and state.state == "waiting" and a.name in state.detail

    wait_until(waiting, 30, f"{b.name} to say it waits for {a.name}")
    # predecessors must see it as not serving, so the ring heals around it
    assert replication_health(cluster, b.name) == health_pb2.HealthCheckResponse.NOT_SERVING
    cluster.start(a.name)
    wait_until(in_ring(cluster, a.name, b.name), 60, "both campuses to join")
    wait_until(lambda: replication_health(cluster, b.name)
               == health_pb2.HealthCheckResponse.SERVING, 10, "replication to be served")
