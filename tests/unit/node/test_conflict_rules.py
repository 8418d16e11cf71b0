"""Each conflict kind and each policy on hand-built cases: what wins, and why."""

from __future__ import annotations

from decimal import Decimal

import pytest

from node.conflicts.metacodec import decode_meta, encode_meta, encode_meta_general, key_text
from node.conflicts.policy import check_policies
from node.conflicts.resolve import RowMeta, RowRules, Version
from node.model import Op, TableShape
from ringsync.conflict_policy import TablePolicy, parse_conflicts
from ringsync.errors import ConfigError

SHAPE = TableShape("orders", ("id", "priority", "status", "note", "tubes"), (0,),
                   ("int", "text", "text", "text", "int"))
BASE = (1, "routine", "ordered", "", 0)


def v(origin: str, seq: int, hlc: int, op: Op, new, old=BASE, deps=None) -> Version:
    return Version(origin, seq, hlc, deps or {}, op, new, old)


def concurrent_pair(rules: RowRules, mine: Version, theirs: Version):
    """Both campuses start from BASE (written by 'seed' seq 1), edit concurrently,
    then each receives the other's edit. Returns (outcome at mine's campus, at theirs)."""
    seed = Version("seed", 1, 1, {}, Op.INSERT, BASE, None)
    start = rules.resolve(None, None, seed)
    here = rules.resolve(mine.new, rules.resolve(BASE, start.meta, mine).meta, theirs)
    there = rules.resolve(theirs.new, rules.resolve(BASE, start.meta, theirs).meta, mine)
    return here, there


def test_latest_is_highest_stamp_and_both_sides_agree() -> None:
    rules = RowRules(SHAPE, TablePolicy())
    a = v("north", 1, 100, Op.UPDATE, (1, "routine", "ordered", "a", 0), deps={"seed": 1})
    b = v("south", 1, 200, Op.UPDATE, (1, "routine", "ordered", "b", 0), deps={"seed": 1})
    here, there = concurrent_pair(rules, a, b)
    assert here.row == there.row == b.new
    assert here.conflict.kind == "update_update" and here.conflict.winner == "remote"
    assert there.conflict.winner == "local"
    assert (here.conflict.local_origin, here.conflict.remote_origin) == ("north", "south")


def test_sequential_updates_are_not_conflicts() -> None:
    rules = RowRules(SHAPE, TablePolicy(rule="campus-priority", priority=("north", "south")))
    seed = rules.resolve(None, None, Version("north", 1, 1, {}, Op.INSERT, BASE, None))
    later = v("south", 1, 5, Op.UPDATE, (1, "STAT", "ordered", "", 0), deps={"north": 1})
    out = rules.resolve(BASE, seed.meta, later)
    assert out.conflict is None and out.row == later.new  # south saw north's row: it wins


def test_campus_priority_beats_a_later_stamp() -> None:
    rules = RowRules(SHAPE, TablePolicy(rule="campus-priority", priority=("north", "south")))
    a = v("north", 1, 100, Op.UPDATE, (1, "routine", "ordered", "a", 0), deps={"seed": 1})
    b = v("south", 1, 900, Op.UPDATE, (1, "routine", "ordered", "b", 0), deps={"seed": 1})
    here, there = concurrent_pair(rules, a, b)
    assert here.row == there.row == a.new


def test_rank_stat_beats_routine_even_when_older() -> None:
    rules = RowRules(SHAPE, TablePolicy(rule="rank", rank_column="priority",
                                        rank_order=("STAT", "routine")))
    stat = v("north", 1, 100, Op.UPDATE, (1, "STAT", "ordered", "", 0), deps={"seed": 1})
    routine = v("south", 1, 900, Op.UPDATE, (1, "routine", "ordered", "x", 0), deps={"seed": 1})
    here, there = concurrent_pair(rules, stat, routine)
    assert here.row == there.row == stat.new
    assert "rank(priority: STAT > routine)" in here.conflict.rule


def test_monotonic_status_takes_the_furthest_and_delta_adds_both() -> None:
    rules = RowRules(SHAPE, TablePolicy(
        monotonic={"status": ("ordered", "collected", "resulted", "verified", "amended")},
        delta=("tubes",)))
    amended = v("north", 1, 100, Op.UPDATE, (1, "routine", "amended", "", 2), deps={"seed": 1})
    verified = v("south", 1, 900, Op.UPDATE, (1, "routine", "verified", "", 3),
                 deps={"seed": 1})
    here, there = concurrent_pair(rules, amended, verified)
    assert here.row == there.row == (1, "routine", "amended", "", 5)
    assert here.conflict.winner == "merged"


def test_merge_keeps_concurrent_edits_of_different_columns() -> None:
    rules = RowRules(SHAPE, TablePolicy(rule="merge"))
    a = v("north", 1, 100, Op.UPDATE, (1, "STAT", "ordered", "", 0), deps={"seed": 1})
    b = v("south", 1, 200, Op.UPDATE, (1, "routine", "ordered", "fasting", 0), deps={"seed": 1})
    here, there = concurrent_pair(rules, a, b)
    assert here.row == there.row == (1, "STAT", "ordered", "fasting", 0)


@pytest.mark.parametrize(("mine_op", "theirs_op", "kind"), [
    (Op.DELETE, Op.UPDATE, "update_delete"),
    (Op.UPDATE, Op.DELETE, "delete_update"),
])
def test_update_delete_kinds_and_latest_decides(mine_op: Op, theirs_op: Op, kind: str) -> None:
    rules = RowRules(SHAPE, TablePolicy())
    new = (1, "routine", "ordered", "edited", 0)
    mine = v("north", 1, 100, mine_op, new if mine_op is Op.UPDATE else None, deps={"seed": 1})
    theirs = v("south", 1, 200, theirs_op, new if theirs_op is Op.UPDATE else None,
               deps={"seed": 1})
    here, there = concurrent_pair(rules, mine, theirs)
    assert here.conflict.kind == kind
    assert here.row == there.row == theirs.new  # the later stamp wins, delete or not


def test_insert_insert_and_update_of_missing_row() -> None:
    rules = RowRules(SHAPE, TablePolicy())
    a = rules.resolve(None, None, v("north", 1, 100, Op.INSERT, BASE, None))
    other = (1, "STAT", "ordered", "", 0)
    out = rules.resolve(BASE, a.meta, v("south", 1, 50, Op.INSERT, other, None))
    assert out.conflict.kind == "insert_insert" and out.row == BASE
    missing = rules.resolve(None, None, v("south", 2, 60, Op.UPDATE, other))
    assert missing.conflict.kind == "update_missing" and missing.row == other


def test_manual_keeps_local_and_parks_remote_until_a_write_supersedes_both() -> None:
    rules = RowRules(SHAPE, TablePolicy(rule="manual"))
    a = v("north", 1, 100, Op.UPDATE, (1, "STAT", "ordered", "", 0), deps={"seed": 1})
    b = v("south", 1, 200, Op.UPDATE, (1, "routine", "ordered", "b", 0), deps={"seed": 1})
    here, there = concurrent_pair(rules, a, b)
    assert here.row == a.new and there.row == b.new and here.parked and there.parked
    fix = v("north", 2, 300, Op.UPDATE, (1, "STAT", "ordered", "b", 0), old=a.new,
            deps={"seed": 1, "north": 1, "south": 1})
    assert rules.resolve(there.row, there.meta, fix).row == fix.new
    assert rules.resolve(here.row, here.meta, fix).conflict is None


def test_metadata_round_trips_with_values_only_where_the_table_cannot_supply_them() -> None:
    rules = RowRules(SHAPE, TablePolicy(delta=("tubes",)))
    a = v("north", 1, 100, Op.UPDATE, (1, "STAT", "ordered", "", Decimal(2)), deps={"seed": 1})
    b = v("south", 1, 200, Op.DELETE, None, deps={"seed": 1})
    here, _ = concurrent_pair(rules, a, b)
    text = encode_meta(here.meta, here.row)
    again = decode_meta(text, here.row, rules.delta)
    assert again == here.meta
    single = rules.resolve(None, None, v("north", 1, 1, Op.INSERT, BASE, None))
    assert "routine" not in encode_meta(single.meta, single.row)  # implied by the row
    assert decode_meta(encode_meta(single.meta, single.row), single.row, rules.delta) == single.meta
    assert key_text((1,)) == key_text((1,)) != key_text((2,))


def test_policies_are_checked_against_the_cluster_and_the_table() -> None:
    good = parse_conflicts({"tables": {"orders": {
        "rule": "rank", "rank": {"column": "priority", "order": ["STAT", "routine"]},
        "delta": ["tubes"]}}}, "cluster.toml", ("orders",), ("north", "south"))
    check_policies(good, {"orders": SHAPE})
    with pytest.raises(ConfigError, match="choose one of"):
        parse_conflicts({"tables": {"orders": {"rule": "newest"}}}, "c", ("orders",), ("n",))
    with pytest.raises(ConfigError, match="not in cluster.ring"):
        parse_conflicts({"tables": {"orders": {"rule": "campus-priority",
                                               "priority": ["east"]}}}, "c", ("orders",), ("n",))
    bad_delta = parse_conflicts({"tables": {"orders": {"delta": ["note"]}}}, "c",
                                ("orders",), ("n",))
    with pytest.raises(ConfigError, match="only integer"):
        check_policies(bad_delta, {"orders": SHAPE})
    with pytest.raises(ConfigError, match="lacks"):
        check_policies(parse_conflicts({"tables": {"orders": {"monotonic": {"state": ["a", "b"]}}}},
                                       "c", ("orders",), ("n",)), {"orders": SHAPE})
    assert RowMeta() == RowMeta()


def test_a_transaction_that_changes_a_row_twice_does_not_conflict_with_itself() -> None:
    rules = RowRules(SHAPE, TablePolicy(delta=("tubes",)))
    insert = rules.resolve(None, None, v("north", 7, 100, Op.INSERT, BASE, None))
    again = (1, "STAT", "ordered", "", 2)
    out = rules.resolve(insert.row, insert.meta, v("north", 7, 100, Op.UPDATE, again, BASE))
    assert out.conflict is None and out.row == again


def test_conflict_log_retention_keeps_the_newest_and_every_parked_entry() -> None:
    import sqlite3
    import time

    from node.conflicts.log import ConflictLog, ConflictQuery
    from node.engines.sqlite.versions import CONFLICTS_DDL
    from node.spelling import Spelling

    conn = sqlite3.connect(":memory:")
    conn.execute(CONFLICTS_DDL)
    now = time.time()
    for i in range(10):
        state = "parked" if i == 0 else "logged"
        conn.execute(
            "INSERT INTO _rs_conflicts(at, tbl, key, kind, rule, winner, local_origin, local_hlc, "
            "remote_origin, remote_seq, remote_hlc, skew_ms, state) "
            "VALUES (?, 't', ?, 'update_update', 'latest', 'remote', 'a', 1, 'b', ?, 2, 0, ?)",
            (now - (10 - i) * 86400 - 3600, f'["k{i}"]', i + 1, state))
    log = ConflictLog("_rs_conflicts", Spelling("?"))
    log.prune(conn, keep_rows=3, keep_days=30)
    kept = [r.key for r in log.query(conn, ConflictQuery(limit=100))]
    assert kept == ['["k9"]', '["k8"]', '["k7"]', '["k0"]']  # newest three, and the parked one
    log.prune(conn, keep_rows=100, keep_days=3)  # k7 is 3 days and an hour old
    assert [r.key for r in log.query(conn, ConflictQuery(limit=100))] == [
        '["k9"]', '["k8"]', '["k0"]']
    assert log.counts(conn) == {"logged": 2, "parked": 1, "flagged": 0, "resolved": 0,
                                "delta_merged": 0}
    assert [r.key for r in log.query(conn, ConflictQuery(state="parked"))] == ['["k0"]']


class _MemoryStore:
    """A version store in memory: enough to drive the resolver without a database."""

    def __init__(self) -> None:
        self.rows: dict = {}
        self.metas: dict = {}
        self.logged: list = []

    def read_versions(self, shape, keys):
        from node.conflicts.driver import StoredRow
        return {k: StoredRow(self.rows.get(k), self.metas.get(k), False) for k in keys}

    def write_rows(self, shape, rows, absent=frozenset()):
        for k, r in rows.items():
            self.rows[k] = r

    def write_versions(self, shape, metas, stored, written, keys):
        self.metas.update({k: text for k, (text, _) in metas.items()})

    def log_conflicts(self, records):
        self.logged += records

    def count_delta_merged(self, n):
        self.delta_merged = getattr(self, "delta_merged", 0) + n

    def close_parked(self, shape, keys, note):
        pass

    def insert_fresh(self, shape, run):
        if any(k in self.rows or k in self.metas for k in run.keys):
            return False
        for k, row, text in zip(run.keys, run.rows, run.metas, strict=True):
            self.rows[k], self.metas[k] = row, text
        return True

    def record_fresh(self, shape, run):
        if any(k in self.metas for k in run.keys):
            return False
        self.metas.update(zip(run.keys, run.metas, strict=True))
        return True


def test_a_stamp_from_a_clock_far_ahead_is_flagged_and_not_adopted() -> None:
    import time

    from node.conflicts.driver import Resolver, TxnInfo
    from node.hlc import HybridClock, pack
    from ringsync.conflict_policy import ConflictSettings

    clock = HybridClock(max_skew_ms=60_000)
    resolver = Resolver({"orders": SHAPE}, ConflictSettings(max_clock_skew_ms=60_000), clock)
    store = _MemoryStore()
    ahead = pack(int(time.time() * 1000) + 10 * 60_000)  # ten minutes in the future
    from node.model import Change
    row = (1, "STAT", "ordered", "", 0)
    logged = resolver.apply(store, TxnInfo("south", 1, ahead, {}, False),
                            [Change("orders", Op.INSERT, new=row)])
    assert logged == 1 and store.logged[0].conflict.kind == "clock_skew"
    assert store.logged[0].state() == "flagged" and store.logged[0].skew_ms > 9 * 60_000
    assert store.rows[(1,)] == row  # the change itself applies, the same on every campus
    assert clock.now() < ahead  # this campus's clock did not jump ten minutes ahead
    normal = resolver.apply(store, TxnInfo("south", 2, clock.now(), {}, False),
                            [Change("orders", Op.UPDATE, new=row, old=row)])
    assert normal == 0


def test_rows_as_copy_text_are_decoded_where_the_store_cannot_copy_them() -> None:
    """A store without insert_raw (SQLite, this fake) gets COPY text rows as
    changes; a skewed stamp on them is flagged with the first row's key."""
    import time

    from node.conflicts.driver import Resolver, TxnInfo
    from node.hlc import HybridClock, pack
    from node.model import RawInserts
    from node.rawcopy import encode_rows
    from ringsync.conflict_policy import ConflictSettings

    resolver = Resolver({"orders": SHAPE}, ConflictSettings(max_clock_skew_ms=60_000),
                        HybridClock(max_skew_ms=60_000))
    store = _MemoryStore()
    text = encode_rows([["7", "STAT", "ordered", "tab\there", "2"],
                        ["8", "routine", "x", None, "0"]])
    ahead = pack(int(time.time() * 1000) + 10 * 60_000)
    logged = resolver.apply(store, TxnInfo("south", 1, ahead, {}, False),
                            [RawInserts("orders", 2, text)])
    assert logged == 1 and store.logged[0].key == (7,) and store.logged[0].state() == "flagged"
    assert store.rows == {(7,): (7, "STAT", "ordered", "tab\there", 2),
                          (8,): (8, "routine", "x", None, 0)}
    assert resolver.fresh_rows == 2 and resolver.fresh_fallbacks == 0  # the fake's insert_fresh


POLICIES_FOR_FAST_PATH = (
    TablePolicy(),
    TablePolicy(rule="rank", rank_column="priority", rank_order=("STAT", "routine")),
    TablePolicy(rule="merge", monotonic={"status": ("ordered", "resulted")}, delta=("tubes",)),
    TablePolicy(rule="manual"),
)


@pytest.mark.parametrize("policy", POLICIES_FOR_FAST_PATH, ids=lambda p: p.rule)
def test_the_single_record_fast_path_decides_exactly_as_the_frontiers_do(
        policy: TablePolicy, monkeypatch: pytest.MonkeyPatch) -> None:
    """RowRules takes a shortcut when a write supersedes every version a row
    has; on random histories it must give the same row, records and counters
    as the full frontier computation, and never a conflict."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    rules = RowRules(SHAPE, policy)
    slow_path = RowRules._supersede_all
    shortcuts = 0
    step = st.tuples(st.sampled_from(("a", "b", "c")), st.sampled_from(list(Op)),
                     st.sampled_from(("STAT", "routine")), st.sampled_from(("ordered", "resulted")),
                     st.integers(0, 3), st.integers(0, 5), st.booleans())

    @settings(max_examples=150, deadline=None)
    @given(st.lists(step, min_size=1, max_size=12))
    def check(history: list) -> None:
        nonlocal shortcuts
        row, meta = None, None
        applied: dict[str, int] = {}
        seqs: dict[str, int] = {}
        for hlc, (origin, op, prio, status, tubes, lag, saw_all) in enumerate(history, 1):
            if op is Op.DELETE and row is None:
                continue  # a delete carries the row it removed
            seqs[origin] = seqs.get(origin, 0) + 1
            deps = {o: s if saw_all else max(0, s - lag) for o, s in applied.items()}
            deps[origin] = seqs[origin] - 1
            new = None if op is Op.DELETE else (1, prio, status, "", tubes)
            version = Version(origin, seqs[origin], hlc, deps, op, new, row)
            fast = rules.resolve(row, meta, version)
            monkeypatch.setattr(RowRules, "_supersede_all", lambda *a: None)
            try:
                full = rules.resolve(row, meta, version)
            finally:
                monkeypatch.setattr(RowRules, "_supersede_all", slow_path)
            assert (fast.row, fast.meta, fast.parked) == (full.row, full.meta, full.parked)
            assert (fast.conflict is None) == (full.conflict is None)
            if rules._supersede_all(row, meta, version) is not None:
                shortcuts += 1
                assert full.conflict is None
            row, meta = full.row, full.meta
            applied[origin] = seqs[origin]

    check()
    assert shortcuts > 0, "the shortcut was never taken: the comparison proved nothing"


def test_the_one_writer_metadata_text_is_the_general_encoding() -> None:
    from node.conflicts.resolve import Rec

    for origin in ("north", 'odd "name" \u00e9'):
        meta = RowMeta([Rec(origin, 7, 1234567890123, {-1: True, 1: "STAT", 2: "x"})], {4: 3})
        row = (1, "STAT", "x", "", 3)
        assert encode_meta(meta, row) == encode_meta_general(meta, row)
        assert decode_meta(encode_meta(meta, row), row, (4,)) == meta
