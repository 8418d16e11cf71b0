"""OutsideWatch: when a pending row is taken as changed outside replication."""

from __future__ import annotations

from node.replication.outside import GRACE_SECONDS, OutsideWatch


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_only_after_capture_passed_the_mark_and_everything_journaled_is_recorded() -> None:
    clock = Clock()
    watch = OutsideWatch(clock)
    assert not watch.outside(10, 5, 5)  # no wait began
    watch.began(50)
    assert not watch.outside(49, 5, 5)  # capture not past the commit position yet
    assert not watch.outside(50, 4, 5)  # a journaled local change not recorded yet
    assert not watch.outside(50, 5, 5)  # caught up: the grace period starts now
    clock.now += GRACE_SECONDS - 0.1
    assert not watch.outside(60, 5, 5)
    clock.now += 0.2
    assert watch.outside(60, 5, 5)


def test_falling_behind_again_restarts_the_grace_period() -> None:
    clock = Clock()
    watch = OutsideWatch(clock)
    watch.began(50)
    assert not watch.outside(50, 5, 5)
    clock.now += GRACE_SECONDS
    assert not watch.outside(50, 5, 6)  # a new local change journaled, not recorded
    assert not watch.outside(50, 6, 6)
    clock.now += GRACE_SECONDS
    assert watch.outside(50, 6, 6)
    watch.ended()
    assert not watch.waiting and not watch.outside(99, 9, 9)


def test_local_writes_after_the_wait_began_restart_it() -> None:
    clock = Clock()
    watch = OutsideWatch(clock)
    watch.began(50)
    assert not watch.outside(50, 5, 5)
    clock.now += GRACE_SECONDS
    assert watch.outside(50, 5, 5)
    assert not watch.confirm(55, 60, 5, 5)  # committed since: capture not past it yet
    assert watch.mark == 60 and not watch.outside(60, 5, 5)  # a new grace period
    clock.now += GRACE_SECONDS
    assert watch.outside(61, 6, 6) and watch.confirm(61, 61, 6, 6)
