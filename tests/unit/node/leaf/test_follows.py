"""[leaf.follows]: child rows judged by their parent row (pure logic over real frames)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from node.codec import build_frame, decode_changes
from node.leaf.parents import ParentMoved
from node.leaf.route import LeafRoute
from node.model import Change, Op, TableShape
from ringsync.errors import ConfigError
from ringsync.follows import Follow, parents_first, parse_follows
from ringsync.leaves import LeafSettings

PATIENTS = TableShape("patients", ("patient_id", "home"), (0,), ("text", "text"))
ORDERS = TableShape("lab_orders", ("order_id", "patient_id", "priority"), (0,),
                    ("text", "text", "text"))
SPECIMENS = TableShape("specimens", ("specimen_id", "order_id"), (0,), ("text", "text"))
SHAPES = {"specimens": SPECIMENS, "lab_orders": ORDERS, "patients": PATIENTS}
NOW = dt.datetime(2026, 12, 4, tzinfo=dt.UTC)
FOLLOWS = {"lab_orders": Follow("patients", ("patient_id",)),
           "specimens": Follow("lab_orders", ("order_id",))}


def route(follows=FOLLOWS, filters=None) -> LeafRoute:
    leaf = LeafSettings("sat", "127.0.0.1:1", ("a",), tuple(SHAPES),
                        filters=filters or {"patients": 'home == "fy"'}, follows=follows)
    return LeafRoute(leaf, SHAPES)


def frame(*changes: Change):
    return build_frame("a", 5, 0, True, 1.0, changes, SHAPES, hlc=9)


class Db:
    """The parent campus's database, as the lookup reads it (and how often)."""

    def __init__(self, **tables: list[tuple]) -> None:
        self.rows = {(t, (r[0],)): r for t, rows in tables.items() for r in rows}
        self.reads = 0

    def __call__(self, table: str, key: tuple) -> tuple | None:
        self.reads += 1
        return self.rows.get((table, key))


def sent(r: LeafRoute, db: Db, *changes: Change) -> list[tuple]:
    _, out = decode_changes(r.frame(frame(*changes), NOW, db))
    return [(c.table, c.op, c.new or c.old) for c in out]


def test_parsing_checks_tables_the_key_shape_and_circles():
    where, path = "leaf 'sat'", Path("cluster.toml")
    ok = parse_follows({"follows": {"lab_orders": {"parent": "patients", "by": "patient_id"}}},
                       ["patients", "lab_orders"], path, where)
    assert ok == {"lab_orders": Follow("patients", ("patient_id",))}
    with pytest.raises(ConfigError, match="parent 'visits' must be one of the leaf's tables"):
        parse_follows({"follows": {"lab_orders": {"parent": "visits", "by": "v"}}},
                      ["lab_orders"], path, where)
    with pytest.raises(ConfigError, match="go round in a circle"):
        parse_follows({"follows": {"a": {"parent": "b", "by": "x"},
                                   "b": {"parent": "a", "by": "y"}}}, ["a", "b"], path, where)
    with pytest.raises(ConfigError, match="must be"):
        parse_follows({"follows": {"a": {"parent": "b"}}}, ["a", "b"], path, where)
    with pytest.raises(ConfigError, match="key of patients has 1"):
        route({"lab_orders": Follow("patients", ("patient_id", "priority"))})
    with pytest.raises(ConfigError, match="not a column of it"):
        route({"lab_orders": Follow("patients", ("patient",))})


def test_parents_come_first_and_the_route_fingerprint_covers_follows():
    assert parents_first(SHAPES, FOLLOWS) == ("patients", "lab_orders", "specimens")
    assert list(route().shapes) == ["patients", "lab_orders", "specimens"]
    with_follows = route().leaf.fingerprint
    assert with_follows != route(follows={}).leaf.fingerprint
    assert with_follows != route({"lab_orders": Follow("patients", ("patient_id",))}
                                 ).leaf.fingerprint


def test_an_initial_load_takes_children_of_the_parents_it_took_down_the_chain():
    r = route()
    assert r.initial_rows("patients", PATIENTS.columns,
                          [("p1", "fy"), ("p2", "hz")], NOW) == [("p1", "fy")]
    assert r.initial_rows("lab_orders", ORDERS.columns,
                          [("o1", "p1", "STAT"), ("o2", "p2", "STAT"), ("o3", None, "STAT"),
                           ("o4", "p9", "STAT")], NOW) == [("o1", "p1", "STAT")]
    assert r.initial_rows("specimens", SPECIMENS.columns,
                          [("s1", "o1"), ("s2", "o2"), ("s3", "o4")], NOW) == [("s1", "o1")]
    assert r.ancestors("specimens") == ["patients", "lab_orders"]


def test_a_child_own_filter_and_its_parent_both_decide():
    r = route(filters={"patients": 'home == "fy"', "lab_orders": 'priority == "STAT"'})
    db = Db(patients=[("p1", "fy")])
    assert sent(r, db, Change("lab_orders", Op.INSERT, new=("o1", "p1", "STAT")),
                Change("lab_orders", Op.INSERT, new=("o2", "p1", "routine"))) == [
        ("lab_orders", Op.INSERT, ("o1", "p1", "STAT"))]


def test_a_stream_judges_children_by_the_frame_else_the_database_read_once_per_parent():
    r = route()
    db = Db(patients=[("p1", "fy"), ("p2", "hz")], lab_orders=[("o1", "p1", "STAT")])
    assert sent(r, db,
                Change("patients", Op.INSERT, new=("p3", "fy")),           # in this frame
                Change("lab_orders", Op.INSERT, new=("o3", "p3", "STAT")),
                Change("lab_orders", Op.INSERT, new=("o4", "p1", "STAT")),  # p1 in the db
                Change("lab_orders", Op.INSERT, new=("o5", "p1", "STAT")),
                Change("lab_orders", Op.INSERT, new=("o6", "p2", "STAT")),  # p2 is out
                Change("lab_orders", Op.INSERT, new=("o7", None, "STAT")),  # follows nobody
                Change("specimens", Op.INSERT, new=("s1", "o1")),           # o1 -> p1
                Change("specimens", Op.INSERT, new=("s3", "o3"))) == [      # o3 in this frame
        ("patients", Op.INSERT, ("p3", "fy")),
        ("lab_orders", Op.INSERT, ("o3", "p3", "STAT")),
        ("lab_orders", Op.INSERT, ("o4", "p1", "STAT")),
        ("lab_orders", Op.INSERT, ("o5", "p1", "STAT")),
        ("specimens", Op.INSERT, ("s1", "o1")),
        ("specimens", Op.INSERT, ("s3", "o3")),
    ]
    assert db.reads == 3  # p1, p2, o1: each parent row read once per frame


def test_a_child_moving_to_another_parent_moves_with_it_and_orphans_are_deleted():
    r = route(follows={"lab_orders": Follow("patients", ("patient_id",))})
    db = Db(patients=[("p1", "fy"), ("p2", "hz")])
    assert sent(r, db,
                Change("lab_orders", Op.UPDATE, new=("o1", "p2", "STAT"),
                       old=("o1", "p1", "STAT")),                        # out, with its patient
                Change("lab_orders", Op.UPDATE, new=("o2", "p1", "STAT"),
                       old=("o2", "p2", "STAT")),                        # in
                Change("lab_orders", Op.DELETE, old=("o3", "p9", "STAT")),  # patient gone: sent
                Change("lab_orders", Op.DELETE, old=("o4", "p2", "STAT"))) == [  # never in
        ("lab_orders", Op.DELETE, ("o1", "p1", "STAT")),
        ("lab_orders", Op.INSERT, ("o2", "p1", "STAT")),
        ("lab_orders", Op.DELETE, ("o3", "p9", "STAT")),
    ]
    assert (r.counters.rows_moved_in, r.counters.rows_moved_out) == (1, 1)


def test_a_followed_row_moving_in_or_out_asks_for_a_new_copy_staying_or_going_does_not():
    r = route()
    db = Db()
    for old, new in ((("p1", "hz"), ("p1", "fy")), (("p1", "fy"), ("p1", "hz"))):
        with pytest.raises(ParentMoved, match="patients .*'patient_id': 'p1'.* leaf sat"):
            sent(r, db, Change("patients", Op.UPDATE, new=new, old=old))
    with pytest.raises(ParentMoved, match="lab_orders"):  # an order changing patient
        sent(r, Db(patients=[("p1", "fy"), ("p2", "hz")]),
             Change("lab_orders", Op.UPDATE, new=("o1", "p2", "S"), old=("o1", "p1", "S")))
    assert sent(r, db, Change("patients", Op.UPDATE, new=("p1", "fy"), old=("p1", "fy")),
                Change("patients", Op.DELETE, old=("p2", "fy")),
                Change("patients", Op.INSERT, new=("p3", "fy"))) == [
        ("patients", Op.UPDATE, ("p1", "fy")), ("patients", Op.DELETE, ("p2", "fy")),
        ("patients", Op.INSERT, ("p3", "fy"))]


def test_a_route_with_follows_needs_a_lookup_for_frames():
    with pytest.raises(ValueError, match="lookup"):
        route().frame(frame(Change("lab_orders", Op.INSERT, new=("o1", "p1", "S"))), NOW)
