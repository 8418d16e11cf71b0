"""Where a campus's copy of a row stands under its table's policy (the
``inspect`` of Control.RepairRow): the winning version's stamp and rank, and
whether the copy is what its recorded versions say."""

from __future__ import annotations

from node.conflicts.metacodec import encode_meta, encode_meta_general
from node.conflicts.resolve import RowRules, Version
from node.model import Op, TableShape
from node.verify.repair import standing
from ringsync.conflict_policy import TablePolicy

SHAPE = TableShape("orders", ("id", "priority", "note"), (0,), ("int", "text", "text"))
ROW = (1, "routine", "a")


def written(rules: RowRules, *versions: Version) -> tuple[tuple | None, str]:
    row, meta = None, None
    for v in versions:
        out = rules.resolve(row, meta, v)
        row, meta = out.row, out.meta
    return row, encode_meta(meta, row)


def test_a_copy_as_its_versions_say_stands_on_its_winning_version() -> None:
    rules = RowRules(SHAPE, TablePolicy())
    row, meta = written(rules, Version("north", 1, 500, {}, Op.INSERT, ROW, None),
                        Version("south", 1, 900, {"north": 1}, Op.UPDATE,
                                (1, "routine", "b"), ROW))
    st = standing(rules, row, meta)
    assert (st.recorded, st.rank, st.hlc, st.origin) == (True, 0, 900, "south")


def test_a_copy_deleted_or_written_behind_replication_has_no_standing() -> None:
    rules = RowRules(SHAPE, TablePolicy())
    row, meta = written(rules, Version("north", 1, 500, {}, Op.INSERT, ROW, None))
    assert not standing(rules, None, meta).recorded  # deleted behind: versions say live
    assert not standing(rules, ROW, None).recorded    # never recorded
    assert not standing(rules, None, None).recorded


def test_a_recorded_delete_stands_for_the_absent_copy() -> None:
    rules = RowRules(SHAPE, TablePolicy())
    row, meta = written(rules, Version("north", 1, 500, {}, Op.INSERT, ROW, None),
                        Version("south", 1, 700, {"north": 1}, Op.DELETE, None, ROW))
    assert row is None
    st = standing(rules, None, meta)
    assert (st.recorded, st.hlc, st.origin) == (True, 700, "south")
    assert not standing(rules, ROW, meta).recorded  # present though its versions deleted it


def test_values_the_versions_hold_are_checked_against_the_copy() -> None:
    rules = RowRules(SHAPE, TablePolicy())
    a = Version("north", 1, 500, {}, Op.INSERT, ROW, None)
    b = Version("south", 1, 600, {}, Op.INSERT, (1, "routine", "b"), None)  # concurrent
    out = rules.resolve(None, None, a)
    out = rules.resolve(out.row, out.meta, b)
    meta = encode_meta_general(out.meta, None)  # values stored, not implied by a row
    assert standing(rules, out.row, meta).recorded
    assert not standing(rules, (1, "routine", "edited behind"), meta).recorded


def test_rank_and_campus_priority_give_the_winning_version_s_rank() -> None:
    rank = RowRules(SHAPE, TablePolicy(rule="rank", rank_column="priority",
                                       rank_order=("STAT", "routine")))
    row, meta = written(rank, Version("north", 1, 500, {}, Op.INSERT, (1, "STAT", "a"), None))
    assert standing(rank, row, meta).rank == 2
    prio = RowRules(SHAPE, TablePolicy(rule="campus-priority", priority=("south", "north")))
    row, meta = written(prio, Version("north", 1, 500, {}, Op.INSERT, ROW, None))
    assert standing(prio, row, meta).rank == 1
