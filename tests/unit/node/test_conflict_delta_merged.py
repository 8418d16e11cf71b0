"""Concurrent updates that only delta columns made concurrent are certain:
the deltas add, nothing is logged, the outcome says ``delta_merged``.
Anything a rule would have to choose still logs."""

from __future__ import annotations

from node.conflicts.metacodec import decode_meta, encode_meta, encode_meta_general
from node.conflicts.resolve import RowRules, Version
from node.model import Op, TableShape
from ringsync.conflict_policy import TablePolicy

# a TPC-B-like counter row: balance is a delta column, the rest are plain
SHAPE = TableShape("accounts", ("aid", "bid", "balance", "filler"), (0,),
                   ("int", "int", "int", "text"))
BASE = (1, 7, 100, "f")


def upd(origin: str, new: tuple, hlc: int, old: tuple = BASE) -> Version:
    return Version(origin, 1, hlc, {"seed": 1}, Op.UPDATE, new, old)


def pair(policy: TablePolicy, mine: Version, theirs: Version):
    """Both campuses start from BASE, edit concurrently, then each receives
    the other's edit (through the stored metadata text, as an engine does)."""
    rules = RowRules(SHAPE, policy)
    seed = rules.resolve(None, None, Version("seed", 1, 1, {}, Op.INSERT, BASE, None))

    def at(local: Version, remote: Version):
        out = rules.resolve(BASE, seed.meta, local)
        text = encode_meta(out.meta, out.row)
        return rules.resolve(out.row, decode_meta(text, out.row, rules.delta), remote)

    return at(mine, theirs), at(theirs, mine)


def test_concurrent_delta_only_updates_add_and_log_nothing() -> None:
    for policy in (TablePolicy(delta=("balance",)),
                   TablePolicy(rule="merge", delta=("balance",)),
                   TablePolicy(rule="campus-priority", priority=("b", "a"), delta=("balance",)),
                   TablePolicy(rule="manual", delta=("balance",))):
        here, there = pair(policy, upd("a", (1, 7, 110, "f"), 100),
                           upd("b", (1, 7, 95, "f"), 200))
        assert here.row == there.row == (1, 7, 105, "f"), policy.rule
        assert here.conflict is None and there.conflict is None, policy.rule
        assert here.delta_merged and there.delta_merged and not here.parked, policy.rule


def test_a_delta_and_a_latest_wins_column_both_concurrent_still_log() -> None:
    here, there = pair(TablePolicy(delta=("balance",)), upd("a", (1, 7, 110, "x"), 100),
                       upd("b", (1, 7, 95, "y"), 200))
    assert here.row == there.row == (1, 7, 105, "y")
    for out in (here, there):
        assert out.conflict is not None and out.conflict.kind == "update_update"
        assert not out.delta_merged


def test_latest_writes_the_whole_row_so_an_edit_beside_a_delta_still_logs() -> None:
    # Under latest, b's version carries filler "f": if b's stamp wins, a's edit
    # of filler is lost. The outcome depends on the rule, so it is a conflict.
    here, there = pair(TablePolicy(delta=("balance",)), upd("a", (1, 7, 100, "x"), 300),
                       upd("b", (1, 7, 95, "f"), 200))
    assert here.row == there.row == (1, 7, 95, "x")
    assert here.conflict is not None and there.conflict is not None
    assert not here.delta_merged and not there.delta_merged


def test_merge_a_delta_beside_a_different_column_is_certain_on_both_sides() -> None:
    # merge writes only changed columns: no column both changed but the delta
    policy = TablePolicy(rule="merge", delta=("balance",))
    here, there = pair(policy, upd("a", (1, 7, 100, "x"), 300), upd("b", (1, 7, 95, "f"), 200))
    assert here.row == there.row == (1, 7, 95, "x")
    assert here.conflict is None and there.conflict is None
    assert here.delta_merged and there.delta_merged


def test_merge_of_two_plain_columns_without_a_delta_change_still_logs() -> None:
    policy = TablePolicy(rule="merge", delta=("balance",))
    here, there = pair(policy, upd("a", (1, 7, 100, "x"), 300), upd("b", (1, 8, 100, "f"), 200))
    assert here.row == there.row == (1, 8, 100, "x")
    assert here.conflict is not None and here.conflict.winner == "merged"
    assert there.conflict is not None and not here.delta_merged and not there.delta_merged


def test_merge_delta_plus_the_same_plain_column_both_changed_logs() -> None:
    policy = TablePolicy(rule="merge", delta=("balance",))
    here, there = pair(policy, upd("a", (1, 8, 110, "f"), 300), upd("b", (1, 9, 95, "f"), 200))
    assert here.row == there.row == (1, 8, 105, "f")
    assert here.conflict is not None and there.conflict is not None


def test_equal_writes_of_a_plain_column_beside_deltas_are_certain() -> None:
    # both moved the account to branch 8 and added: nothing to choose
    here, there = pair(TablePolicy(delta=("balance",)), upd("a", (1, 8, 110, "f"), 100),
                       upd("b", (1, 8, 95, "f"), 200))
    assert here.row == there.row == (1, 8, 105, "f")
    assert here.delta_merged and there.delta_merged and here.conflict is None


def test_a_delete_against_a_delta_update_still_logs() -> None:
    rules_policy = TablePolicy(delta=("balance",))
    delete = Version("a", 1, 100, {"seed": 1}, Op.DELETE, None, BASE)
    here, there = pair(rules_policy, delete, upd("b", (1, 7, 95, "f"), 200))
    assert here.conflict is not None and here.conflict.kind == "update_delete"
    assert there.conflict is not None and there.conflict.kind == "delete_update"
    assert not here.delta_merged and not there.delta_merged


def test_a_table_without_delta_columns_logs_as_before() -> None:
    here, _ = pair(TablePolicy(), upd("a", (1, 7, 110, "f"), 100), upd("b", (1, 7, 95, "f"), 200))
    assert here.conflict is not None and not here.delta_merged


def test_change_marks_round_trip_and_never_keep_a_version_alive() -> None:
    rules = RowRules(SHAPE, TablePolicy(delta=("balance",)))
    seed = rules.resolve(None, None, Version("seed", 1, 1, {}, Op.INSERT, BASE, None))
    a = rules.resolve(BASE, seed.meta, upd("a", (1, 7, 110, "f"), 100))
    both = rules.resolve(a.row, a.meta, upd("b", (1, 7, 95, "f"), 200))
    for text in (encode_meta(both.meta, both.row), encode_meta_general(both.meta, None)):
        back = decode_meta(text, both.row, rules.delta)
        assert [r.regs for r in back.recs] == [r.regs for r in both.meta.recs]
    # a later write that saw both supersedes them; no record lingers for its marks
    later = Version("a", 2, 300, {"seed": 1, "b": 1}, Op.UPDATE, (1, 7, 105, "g"), both.row)
    out = rules.resolve(both.row, both.meta, later)
    assert out.conflict is None and [(r.origin, r.seq) for r in out.meta.recs] == [("a", 2)]


def test_the_driver_counts_delta_merged_once_per_batch_and_logs_nothing() -> None:
    from node.conflicts.driver import Resolver, TxnInfo
    from node.hlc import HybridClock
    from node.model import Change
    from ringsync.conflict_policy import ConflictSettings
    from tests.unit.node.test_conflict_rules import _MemoryStore

    settings = ConflictSettings(tables={"accounts": TablePolicy(delta=("balance",))})
    resolver = Resolver({"accounts": SHAPE}, settings, HybridClock())
    store = _MemoryStore()
    resolver.apply(store, TxnInfo("seed", 1, 1, {}, False),
                   [Change("accounts", Op.INSERT, new=BASE), Change("accounts", Op.INSERT,
                                                                    new=(2, 7, 0, "f"))])
    # local: this campus added 10 to both rows (recorded, not resolved)
    resolver.apply(store, TxnInfo("here", 1, 50, {"seed": 1}, True, position=1), [
        Change("accounts", Op.UPDATE, new=(1, 7, 110, "f"), old=BASE),
        Change("accounts", Op.UPDATE, new=(2, 7, 10, "f"), old=(2, 7, 0, "f"))])
    assert not hasattr(store, "delta_merged")
    # remote: a campus that had not seen it added 5 to both rows
    logged = resolver.apply(store, TxnInfo("there", 1, 60, {"seed": 1}, False), [
        Change("accounts", Op.UPDATE, new=(1, 7, 105, "f"), old=BASE),
        Change("accounts", Op.UPDATE, new=(2, 7, 5, "f"), old=(2, 7, 0, "f"))])
    assert logged == 0 and store.logged == []
    assert store.delta_merged == 2 and resolver.delta_merged == 2
    assert store.rows[(1,)] == (1, 7, 115, "f") and store.rows[(2,)] == (2, 7, 15, "f")


def test_status_text_and_console_cell_show_delta_merged() -> None:
    from console.screens.ring import conflict_cell
    from ringsync.statustext import conflicts_text
    from ringsync.v1 import control_pb2 as cpb

    assert conflicts_text({"logged": 0, "delta_merged": 0}) == ""
    assert conflicts_text({"logged": 2, "delta_merged": 5400}) == (
        "conflicts: 2 resolved by policy, 5400 delta-merged (not logged)")
    assert conflict_cell(cpb.ConflictCounts(logged=2, delta_merged=7)) == "2 [dim]+7 delta[/]"
    assert conflict_cell(cpb.ConflictCounts(logged=2)) == "2"
