"""LeafRoute: what a parent sends a leaf of each frame (pure logic over real frames)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from node.codec import build_frame, decode_changes
from node.leaf.route import LeafRoute
from node.model import Change, Op, TableShape
from ringsync.errors import ConfigError
from ringsync.leaves import LeafSettings
from ringsync.masking import ColumnMask

PATIENTS = TableShape("patients", ("patient_id", "home", "n"), (0,), ("text", "text", "int"))
ORDERS = TableShape("lab_orders", ("order_id", "patient_id"), (0,), ("text", "text"))
SHAPES = {"patients": PATIENTS, "lab_orders": ORDERS}
NOW = dt.datetime(2026, 12, 3, tzinfo=dt.UTC)


def route(**kw) -> LeafRoute:
    leaf = LeafSettings("sat", "127.0.0.1:1", ("a",), kw.pop("tables", ("patients",)),
                        filters=kw.pop("filters", {"patients": 'home == "fy"'}), **kw)
    return LeafRoute(leaf, SHAPES)


def frame(*changes: Change, seq: int = 7):
    f = build_frame("a", seq, 0, True, 1.5, changes, SHAPES, hlc=99, deps={"b": 3})
    f.set_epochs["s"] = 2
    return f


def test_an_update_moving_a_row_in_arrives_whole_as_an_insert_and_out_as_a_delete():
    r = route()
    out = r.frame(frame(
        Change("patients", Op.UPDATE, new=("p1", "fy", 1), old=("p1", "hz", 1)),   # moves in
        Change("patients", Op.UPDATE, new=("p2", "hz", 1), old=("p2", "fy", 1)),   # moves out
        Change("patients", Op.UPDATE, new=("p3", "fy", 2), old=("p3", "fy", 1)),   # stays in
        Change("patients", Op.UPDATE, new=("p4", "hz", 2), old=("p4", "hz", 1)),   # never in
        Change("patients", Op.INSERT, new=("p5", "hz", 1)),
        Change("patients", Op.DELETE, old=("p6", "fy", 1)),
        Change("lab_orders", Op.INSERT, new=("o1", "p1"))), NOW)
    _, changes = decode_changes(out)
    assert [(c.op, c.new, c.old) for c in changes] == [
        (Op.INSERT, ("p1", "fy", 1), None),
        (Op.DELETE, None, ("p2", "fy", 1)),
        (Op.UPDATE, ("p3", "fy", 2), ("p3", "fy", 1)),
        (Op.DELETE, None, ("p6", "fy", 1)),
    ]
    # The transaction keeps its identity and stamps: the leaf's journal stays gapless.
    assert (out.origin, out.seq, out.chunk, out.final, out.hlc) == ("a", 7, 0, True, 99)
    assert dict(out.deps) == {"b": 3} and dict(out.set_epochs) == {"s": 2}
    c = r.counters
    assert (c.rows_sent, c.rows_filtered, c.rows_moved_in, c.rows_moved_out) == (4, 2, 1, 1)


def test_a_frame_of_other_tables_becomes_an_empty_frame_with_the_same_identity():
    out = route().frame(frame(Change("lab_orders", Op.INSERT, new=("o1", "p1")), seq=9), NOW)
    assert (out.origin, out.seq, out.final, len(out.changes), len(out.tables)) == (
        "a", 9, True, 0, 0)


def test_unfiltered_tables_pass_the_frame_itself_and_a_whole_route_passes_everything():
    f = frame(Change("lab_orders", Op.INSERT, new=("o1", "p1")))
    r = route(tables=("patients", "lab_orders"))
    assert r.frame(f, NOW) is f and not r.passes_whole
    assert route(tables=("patients", "lab_orders"), filters={}).passes_whole


def test_a_row_the_filter_cannot_judge_is_held_back_counted_and_named():
    r = route(filters={"patients": "n > 3"})
    out = r.frame(frame(Change("patients", Op.INSERT, new=("p1", "fy", None)),
                        Change("patients", Op.INSERT, new=("p2", "fy", 5))), NOW)
    _, changes = decode_changes(out)
    assert [c.new for c in changes] == [("p2", "fy", 5)]
    assert r.counters.unjudged == 1 and "p1" in r.counters.last_unjudged


def test_an_initial_load_batch_is_selected_by_the_same_filter():
    r = route()
    rows = [("p1", "fy", 1), ("p2", "hz", 1), ("p3", "fy", 2)]
    assert r.initial_rows("patients", PATIENTS.columns, rows, NOW) == [rows[0], rows[2]]


def masked(tmp_path: Path, **kw) -> LeafRoute:
    key = tmp_path / "env.key"
    key.write_text("k" * 32 + "\n")
    return route(tables=("patients", "lab_orders"), filters={}, uploads=False,
                 masking={"patients": (ColumnMask("patient_id", "pseudonym"),),
                          "lab_orders": (ColumnMask("patient_id", "pseudonym"),)},
                 masking_key_file=key, **kw)


def test_masking_happens_before_the_frame_is_built_and_keys_still_join(tmp_path):
    r = masked(tmp_path)
    assert not r.passes_whole
    out = r.frame(frame(Change("patients", Op.INSERT, new=("p1", "fy", 1)),
                        Change("lab_orders", Op.INSERT, new=("o1", "p1")),
                        Change("patients", Op.DELETE, old=("p1", "fy", 1))), NOW)
    assert b"p1" not in out.SerializeToString()  # on the wire: no real key
    _, changes = decode_changes(out)
    pseudonym = changes[0].new[0]
    assert pseudonym.startswith("P-") and changes[1].new == ("o1", pseudonym)
    assert changes[2].old[0] == pseudonym  # the delete finds the masked row
    again = masked(tmp_path).initial_rows("patients", PATIENTS.columns, [("p1", "fy", 1)], NOW)
    assert again == [(pseudonym, "fy", 1)]  # a second load lines up


def test_projection_cuts_columns_and_keeps_the_key(tmp_path):
    r = route(filters={}, uploads=False, columns={"patients": ("patient_id", "home")})
    assert r.shapes["patients"].columns == ("patient_id", "home")
    _, changes = decode_changes(r.frame(frame(
        Change("patients", Op.UPDATE, new=("p1", "fy", 2), old=("p1", "fy", 1))), NOW))
    assert [(c.new, c.old) for c in changes] == [(("p1", "fy"), ("p1", "fy"))]
    with pytest.raises(ConfigError, match="leaves out its key"):
        route(filters={}, uploads=False, columns={"patients": ("home",)})


def test_a_mask_that_writes_text_into_a_number_or_a_missing_key_is_refused(tmp_path):
    key = tmp_path / "env.key"
    key.write_text("k" * 32)
    with pytest.raises(ConfigError, match="writes text"):
        route(filters={}, masking={"patients": (ColumnMask("n", "name"),)},
              masking_key_file=key)
    with pytest.raises(ConfigError, match="cannot read its masking key"):
        route(filters={}, masking={"patients": (ColumnMask("home", "name"),)},
              masking_key_file=tmp_path / "absent.key")
