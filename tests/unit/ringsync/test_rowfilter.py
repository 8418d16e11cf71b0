"""Row filters for leaves' routes (issue 19's building block): CEL over a
row's canonical values, names checked against the table's columns when
compiled, one clock per batch, and a row it cannot be judged over refused
with the row named, never silently in or out."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from ringsync.rowfilter import RowFilter, RowFilterError, transition

COLUMNS = ("specimen_id", "campus_code", "collected_at", "value_num", "kind")
NOW = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)


def row(campus: str = "FY-02", days_ago: float = 1, value: object = 4.2,
        kind: str | None = "serum") -> dict[str, object]:
    return {"specimen_id": "S1", "campus_code": campus,
            "collected_at": NOW - dt.timedelta(days=days_ago), "value_num": value, "kind": kind}


def test_a_campus_and_a_window_select_exactly_their_rows() -> None:
    f = RowFilter("specimens", 'campus_code == "FY-02" && collected_at >= now() - days(90)',
                  COLUMNS)
    rows = [row(), row(campus="CH-01"), row(days_ago=89.9), row(days_ago=90.1)]
    assert f.select(rows, NOW) == [True, False, True, False]
    # the clock is the batch's: a row 89 days old today is out 2 days later
    assert f.select([row(days_ago=89)], NOW + dt.timedelta(days=2)) == [False]


def test_values_of_every_canonical_kind_compare() -> None:
    f = RowFilter("specimens", "value_num > 4.0 && kind.startsWith('se') && "
                  "collected_at < timestamp('2026-12-03T00:00:00Z')", COLUMNS)
    day = dt.date(2026, 12, 1)  # a date is midnight UTC
    assert f.select([row(value=Decimal("4.5"), days_ago=3), {**row(), "collected_at": day},
                     row(value=3.9, days_ago=3)], NOW) == [True, True, False]
    assert RowFilter("specimens", "kind == null", COLUMNS).select([row(kind=None)]) == [True]


def test_bad_filters_are_refused_when_compiled_naming_what_to_fix() -> None:
    with pytest.raises(RowFilterError, match="does not parse.*CEL"):
        RowFilter("specimens", 'campus_code == ', COLUMNS)
    with pytest.raises(RowFilterError, match="names campus, not a column of specimens"):
        RowFilter("specimens", 'campus == "FY-02"', COLUMNS)


def test_a_row_the_filter_cannot_judge_is_refused_with_the_row_named() -> None:
    f = RowFilter("specimens", "value_num > 4.0", COLUMNS)
    with pytest.raises(RowFilterError, match="cannot be evaluated over the row.*value_num='high'"):
        f.select([row(value="high")])
    with pytest.raises(RowFilterError, match="not a true or false"):
        RowFilter("specimens", "value_num + 1.0", COLUMNS).select([row()])


def test_a_change_moving_a_row_into_or_out_of_the_subset_becomes_an_insert_or_a_delete() -> None:
    f = RowFilter("specimens", 'campus_code == "FY-02"', COLUMNS)
    fy, ch = row(), row(campus="CH-01")
    assert transition(f, None, fy, NOW) == "insert"  # a new row in the subset
    assert transition(f, None, ch, NOW) is None  # never seen
    assert transition(f, fy, {**fy, "kind": "plasma"}, NOW) == "update"
    assert transition(f, ch, fy, NOW) == "insert"  # moved in: it arrives whole
    assert transition(f, fy, ch, NOW) == "delete"  # moved out: removed at the leaf
    assert transition(f, ch, {**ch, "kind": "plasma"}, NOW) is None
    assert transition(f, fy, None, NOW) == "delete" and transition(f, ch, None, NOW) is None
