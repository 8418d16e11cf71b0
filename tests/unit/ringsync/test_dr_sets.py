"""Single-writer sets: the [[set]] config, how a set's route hands its writer
over (tenures and bases), and the receiver's verdict on stamped changes
(ringsync.dr.settings, ringsync.dr.routes, node.dr.sets)."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.dr.sets import SetGuard, Verdict, judge
from ringsync.dr.routes import (
    ACTIVE,
    DRAINING,
    REVOKE_WAIT_SECONDS,
    REVOKING,
    Member,
    Route,
    complete_drains,
    complete_revokes,
    failbacks,
    failovers,
    writable_for,
)
from ringsync.dr.settings import ReplicationSet, parse_sets
from ringsync.errors import ConfigError

RING = ["a", "b", "c"]
TABLES = ["beds", "orders", "notes"]
KEY = "set:beds"


def live(*names: str, **kw) -> dict[str, Member]:
    return {n: Member(n, db_healthy=True, initialized=True, **kw) for n in names}


# -- config -------------------------------------------------------------------

def test_sets_parse_with_default_standby_in_ring_order_after_the_writer():
    (s,) = parse_sets([{"name": "beds", "tables": ["beds"], "writer": "b"}], TABLES, RING,
                      Path("c.toml"))
    assert s == ReplicationSet("beds", ("beds",), "b", ("c", "a"))
    assert s.route_key == KEY


@pytest.mark.parametrize("entry, message", [
    ({"name": "beds", "tables": ["nope"], "writer": "a"}, "not in cluster.tables"),
    ({"name": "beds", "tables": ["beds"], "writer": "z"}, "writer must name a campus"),
    ({"name": "beds", "tables": ["beds"], "writer": "a", "mode": "multi"}, "mode must be"),
    ({"name": "Beds!", "tables": ["beds"], "writer": "a"}, "name must be"),
    ({"name": "beds", "tables": [], "writer": "a"}, "must list the set's tables"),
    ({"name": "beds", "tables": ["beds"], "writer": "a", "standby": ["q"]}, "standby names"),
    ({"name": "beds", "tables": ["beds"], "writer": "a", "color": 1}, "unknown key"),
])
def test_bad_set_entries_say_what_to_fix(entry, message):
    with pytest.raises(ConfigError, match=message):
        parse_sets([entry], TABLES, RING, Path("c.toml"))


def test_a_table_belongs_to_one_set_at_most():
    with pytest.raises(ConfigError, match="belongs to one set"):
        parse_sets([{"name": "x", "tables": ["beds"], "writer": "a"},
                    {"name": "y", "tables": ["beds"], "writer": "b"}], TABLES, RING,
                   Path("c.toml"))


# -- routes -------------------------------------------------------------------

def set_routes() -> dict[str, Route]:
    routes = {c: Route(c, c, revision=i + 1) for i, c in enumerate(RING)}
    routes[KEY] = Route(KEY, "a", revision=9)
    return routes


def test_a_set_route_opens_no_campus_and_never_fails_back():
    routes = set_routes()
    assert writable_for(routes, "a") == ["a"]
    routes[KEY] = routes[KEY].handed_over("b", 10)
    assert failbacks(routes, live("a", "b", "c"), now=1.0) == []


def test_handed_over_ends_the_tenure_at_its_base_and_starts_a_new_writer_epoch():
    r = Route(KEY, "a", epoch=3, writer_since=1)
    moved = r.handed_over("b", 42, reason="x")
    assert (moved.serving, moved.epoch, moved.writer_since) == ("b", 4, 4)
    assert moved.tenures == ((1, "a", 42),)
    assert Route.decode(moved.encode(), 5) == moved.__class__(**{**moved.__dict__,
                                                                  "revision": 5})


def test_set_failover_revokes_first_then_ends_the_tenure_at_the_most_any_live_campus_holds():
    routes = set_routes()
    members = {"b": Member("b", True, True, journal={"a": 17}),
               "c": Member("c", True, True, journal={"a": 23})}
    moves = failovers(routes, members, {"a": 0.0}, now=20.0, failover_after=10,
                      standby={KEY: ("b", "c"), "a": ("b", "c")})
    by_key = {m.campus: m for m in moves}
    revoking = by_key[KEY]
    assert (revoking.serving, revoking.state, revoking.target) == ("a", REVOKING, "b")
    assert revoking.writer_since == 1 and revoking.tenures == ()
    assert by_key["a"].tenures == ()  # campus routes keep no tenures
    routes[KEY] = revoking
    # Not while a live campus has not reported that it saw the revoke.
    members["c"] = Member("c", True, True, journal={"a": 23}, seen={KEY: revoking.epoch})
    assert complete_revokes(routes, members, now=21.0) == []
    members["b"] = Member("b", True, True, journal={"a": 25}, seen={KEY: revoking.epoch})
    (done,) = complete_revokes(routes, members, now=21.0)
    assert (done.serving, done.state, done.tenures) == ("b", ACTIVE, ((1, "a", 25),))
    assert done.writer_since == done.epoch and "ends at seq 25" in done.reason
    # A campus that never reports is counted by its last report after a while.
    members["b"] = Member("b", True, True, journal={"a": 25})
    assert complete_revokes(routes, members, now=21.0) == []
    assert complete_revokes(routes, members, now=20.0 + REVOKE_WAIT_SECONDS)[0].serving == "b"


def test_a_revoke_whose_target_died_picks_another():
    routes = set_routes()
    routes[KEY] = routes[KEY].moved(state=REVOKING, target="b")
    members = live("c")
    moves = failovers(routes, members, {"a": 0.0}, now=20.0, failover_after=10,
                      standby={KEY: ("b", "c"), "a": ("b", "c")})
    assert {m.campus: m.target for m in moves}[KEY] == "c"


def test_a_live_writer_with_its_set_still_open_is_not_failed_over():
    routes = set_routes()
    members = live("b", "c") | {"a": Member("a", db_healthy=False, initialized=True,
                                            sets_open=[KEY])}
    moves = failovers(routes, members, {"a": 0.0}, now=20.0, failover_after=10,
                      standby={KEY: ("b", "c"), "a": ("b", "c")})
    assert KEY not in {m.campus for m in moves}


def test_set_switchover_completes_with_the_drained_head_as_base():
    routes = set_routes()
    routes[KEY] = routes[KEY].moved(state=DRAINING, target="c")
    members = live("a", "b", "c")
    members["a"] = Member("a", True, True, drained={KEY: [routes[KEY].epoch, 30]})
    members["c"] = Member("c", True, True, applied={"a": 29})
    assert complete_drains(routes, members, now=5.0) == []
    members["c"] = Member("c", True, True, applied={"a": 30})
    (done,) = complete_drains(routes, members, now=5.0)
    assert (done.serving, done.state, done.tenures) == ("c", ACTIVE, ((1, "a", 30),))


# -- the receiver's verdict -----------------------------------------------------

def test_current_writer_accepted_only_on_a_fresh_map():
    r = Route(KEY, "a", epoch=2, writer_since=1)
    assert judge(r, True, "a", 1, 100)[0] is Verdict.ACCEPT
    assert judge(r, False, "a", 1, 100)[0] is Verdict.WAIT
    assert judge(None, True, "a", 1, 100)[0] is Verdict.WAIT


def test_ended_tenure_accepts_through_its_base_and_parks_after_even_on_an_old_map():
    r = Route(KEY, "a").handed_over("b", 50)
    assert judge(r, False, "a", 1, 50)[0] is Verdict.ACCEPT
    verdict, why = judge(r, False, "a", 1, 51)
    assert verdict is Verdict.PARK and "stale epoch 1" in why and "ended at seq 50" in why


def test_a_stamp_that_names_the_wrong_writer_is_parked():
    r = Route(KEY, "a").handed_over("b", 50)
    assert judge(r, True, "c", 1, 3)[0] is Verdict.PARK
    assert judge(r, True, "c", r.writer_since, 3)[0] is Verdict.PARK


def test_the_current_tenure_waits_while_it_is_being_revoked():
    r = Route(KEY, "a", epoch=2, writer_since=1).moved(state=REVOKING, target="b")
    assert judge(r, True, "a", 1, 5)[0] is Verdict.WAIT


def test_a_newer_epoch_than_the_map_waits():
    r = Route(KEY, "a", epoch=4, writer_since=4)
    assert judge(r, True, "b", 7, 1)[0] is Verdict.WAIT


def test_guard_stamps_set_tables_only_and_waits_while_own_stale_tail_is_pending():
    guard = SetGuard((ReplicationSet("beds", ("beds",), "a", ("b",)),), "a")
    guard.epochs["beds"] = 5
    assert guard.stamp(["orders", "beds"]) == {"beds": 5}
    routes = {KEY: Route(KEY, "a", epoch=5, writer_since=5).handed_over("b", 9)}
    guard.update(routes, lambda: True)
    assert [d.epoch for d in guard.own_tenures_pending("beds")] == [5]
    assert guard.undo_due() == []  # not before capture journaled everything
    guard.capture_ready.add("beds")
    assert [(d.set_name, d.epoch, d.base) for d in guard.undo_due()] == [("beds", 5, 9)]
    assert guard.verdict("beds", "b", 6, 1)[0] is Verdict.WAIT
    guard.reconciled["beds"] = 5
    assert guard.verdict("beds", "b", 6, 1)[0] is Verdict.ACCEPT
    assert "writer b, epoch 6" in guard.summary()


def test_own_frames_are_kept_while_the_map_is_stale_or_an_own_tail_is_pending():
    guard = SetGuard((ReplicationSet("beds", ("beds",), "a", ("b",)),), "a")
    fresh = [False]
    guard.update({KEY: Route(KEY, "a")}, lambda: fresh[0])
    assert not guard.own_frames_prunable()
    fresh[0] = True
    assert guard.own_frames_prunable()
    guard.update({KEY: Route(KEY, "a").handed_over("b", 3)}, lambda: True)
    assert not guard.own_frames_prunable()
    guard.reconciled["beds"] = 1
    assert guard.own_frames_prunable()


def test_an_unstamped_change_to_a_set_table_is_judged_as_epoch_zero_and_parked():
    from node.model import Change, Op

    guard = SetGuard((ReplicationSet("beds", ("beds",), "a", ("b",)),), "c")
    guard.update({KEY: Route(KEY, "a", epoch=3, writer_since=3)}, lambda: True)
    stamps = guard.stamps_of([Change("beds", Op.INSERT, ("x",)), Change("notes", Op.INSERT,
                                                                        ("y",))], {})
    assert stamps == {"beds": 0}
    assert guard.verdict("beds", "a", 0, 1)[0] is Verdict.PARK


def test_with_dr_off_only_the_configured_writer_is_accepted():
    guard = SetGuard((ReplicationSet("beds", ("beds",), "a", ("b",)),), "c")
    guard.update({KEY: Route(KEY, "a")}, lambda: True, dynamic=False)
    assert guard.verdict("beds", "a", 7, 1)[0] is Verdict.ACCEPT
    assert guard.verdict("beds", "b", 1, 1)[0] is Verdict.PARK
