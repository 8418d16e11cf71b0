"""ctl repair's choice of the copy to keep (ringsync.repair_choice): the
conflict policy's pick among copies with standing, else the majority's."""

from __future__ import annotations

from ringsync.repair_choice import Choice, Copy, by_majority, by_policy, from_campus

A, B = b"a" * 32, b"b" * 32


def test_latest_keeps_the_newest_recorded_copy_even_against_the_majority() -> None:
    copies = [Copy("x", A, True, 0, 900, "x"), Copy("y", B, True, 0, 500, "y"),
              Copy("z", B, True, 0, 500, "y")]
    got = by_policy("latest", copies)
    assert isinstance(got, Choice) and (got.action, got.at) == ("reassert", "x")
    assert "x wrote at" in got.reason


def test_a_winning_recorded_delete_is_a_delete_where_the_row_is() -> None:
    copies = [Copy("x", None, True, 0, 900, "y"), Copy("y", A, True, 0, 400, "x"),
              Copy("z", A, True, 0, 400, "x")]
    got = by_policy("latest", copies)
    assert isinstance(got, Choice) and (got.action, got.at) == ("delete", "y")


def test_copies_without_standing_or_tied_leave_it_to_the_majority() -> None:
    edited_behind = [Copy("x", A, True, 0, 500, "x"), Copy("y", B, True, 0, 500, "x")]
    assert by_policy("latest", edited_behind) is None
    unrecorded = [Copy("x", A), Copy("y", None)]
    assert by_policy("latest", unrecorded) is None
    # a copy edited behind replication has no standing, so the recorded one wins
    deleted_behind = [Copy("x", A, True, 0, 500, "x"), Copy("y", None, False, 0, 500, "x")]
    got = by_policy("latest", deleted_behind)
    assert isinstance(got, Choice) and (got.action, got.at) == ("reassert", "x")


def test_rank_and_priority_decide_before_the_stamp() -> None:
    copies = [Copy("x", A, True, 1, 900, "x"), Copy("y", B, True, 2, 100, "y")]
    for rule in ("rank", "campus-priority"):
        got = by_policy(rule, copies)
        assert isinstance(got, Choice) and got.at == "y"


def test_manual_and_merge_never_choose_by_policy() -> None:
    copies = [Copy("x", A, True, 0, 900, "x"), Copy("y", B, True, 0, 100, "y")]
    assert by_policy("manual", copies) is None and by_policy("merge", copies) is None


def test_majority_and_from_campus() -> None:
    marks = {"x": "present", "y": "differs", "z": "present"}
    assert by_majority(marks, "changed") == Choice("reassert", "x", "the copy most campuses hold")
    assert isinstance(by_majority({"x": "differs", "y": "differs"}, "changed"), str)
    extra = {"x": "absent", "y": "present", "z": "absent"}
    assert by_majority(extra, "extra").action == "delete"  # type: ignore[union-attr]
    assert from_campus(extra, "x") == Choice("delete", "y", "--from x: it does not hold the row")
    assert from_campus(extra, "y").action == "reassert"  # type: ignore[union-attr]
    assert isinstance(from_campus(extra, "w"), str)
