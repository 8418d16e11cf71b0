"""Convergence of conflict resolution under any causal delivery order.

A Hypothesis state machine drives three replicas of the pure resolution
logic (the part every engine calls): random concurrent inserts, updates and
deletes at each campus; transactions delivered to each campus in a random
causal order (the order a ring's journals allow), sometimes twice, sometimes
much later. At the end everything is delivered everywhere and every table,
one per policy, must be identical on all three replicas. Delta columns must
equal the sum of every increment, monotonic columns the furthest status any
campus wrote, and every concurrent edit must have been logged as a conflict
(or, when only delta columns made it concurrent, counted as delta-merged:
then no register the edit wrote may hold two different values).

More examples: RINGSYNC_HYPOTHESIS_EXAMPLES=5000 pytest tests/unit/node/test_conflict_convergence.py
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from node.conflicts.resolve import LIVE, RowMeta, RowRules, Version
from node.model import Op, TableShape
from ringsync.conflict_policy import TablePolicy

CAMPUSES = ("a", "b", "c")
STATUS = ("ordered", "collected", "resulted", "verified", "amended")
SHAPE = TableShape("t", ("k", "x", "y", "n"), (0,), ("int", "text", "text", "int"))
POLICIES = {
    "latest": TablePolicy(),
    "priority": TablePolicy(rule="campus-priority", priority=("b", "a")),
    "rank": TablePolicy(rule="rank", rank_column="x", rank_order=("STAT", "routine")),
    "merge": TablePolicy(rule="merge", monotonic={"y": STATUS}, delta=("n",)),
    "ranked-status": TablePolicy(rule="rank", rank_column="x", rank_order=("STAT", "routine"),
                                 monotonic={"y": STATUS}, delta=("n",)),
}
RULES = {name: RowRules(SHAPE, p) for name, p in POLICIES.items()}
EXAMPLES = int(os.environ.get("RINGSYNC_HYPOTHESIS_EXAMPLES", "200"))


@dataclass
class Txn:
    origin: str
    seq: int
    hlc: int
    deps: dict[str, int]
    changes: list[tuple[str, Version]]


@dataclass
class Replica:
    name: str
    clock: int = 0
    seq: int = 0
    applied: dict[str, int] = field(default_factory=dict)
    rows: dict[tuple[str, int], tuple[Any, ...]] = field(default_factory=dict)
    meta: dict[tuple[str, int], RowMeta] = field(default_factory=dict)
    conflicts: list[tuple[str, int, str]] = field(default_factory=list)  # table, key, kind
    merged: list[tuple[str, int]] = field(default_factory=list)  # delta-merged: table, key

    def tick(self, wall: int) -> int:
        self.clock = max(self.clock + 1, wall)
        return self.clock

    def apply(self, table: str, v: Version) -> None:
        key = (table, v.new[0] if v.new is not None else v.old[0])  # type: ignore[index]
        out = RULES[table].resolve(self.rows.get(key), self.meta.get(key), v)
        self.meta[key] = out.meta
        if out.row is None:
            self.rows.pop(key, None)
        else:
            self.rows[key] = out.row
        if out.conflict is not None:
            self.conflicts.append((table, key[1], out.conflict.kind))
        if out.delta_merged:
            # certain: an update of a live row, with delta columns, whose every
            # register agrees across the versions that still hold it
            rules = RULES[table]
            assert out.conflict is None and v.op is Op.UPDATE and rules.delta
            assert out.row is not None
            for g in rules.written(v):
                if g != LIVE and g not in rules.values:
                    continue  # a delta column's change mark
                held = {repr(r.regs[g]) for r in out.meta.recs if g in r.regs}
                assert len(held) <= 1, f"delta-merged, yet register {g} holds {held}"
            self.merged.append((table, key[1]))

    def receive(self, txn: Txn) -> None:
        if txn.seq <= self.applied.get(txn.origin, 0):
            return  # a duplicate: the applier's vector check drops it
        assert txn.seq == self.applied.get(txn.origin, 0) + 1
        self.clock = max(self.clock, txn.hlc)
        for table, v in txn.changes:
            self.apply(table, v)
        self.applied[txn.origin] = txn.seq


class Convergence(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.replicas = {c: Replica(c) for c in CAMPUSES}
        self.history: list[Txn] = []
        self.wall = 1000
        self.increments: dict[tuple[str, int], int] = {}
        self.deleted: set[tuple[str, int]] = set()
        self.furthest: dict[tuple[str, int], int] = {}

    def deliverable(self, dst: Replica) -> list[Txn]:
        out = []
        for txn in self.history:
            if txn.origin == dst.name or txn.seq != dst.applied.get(txn.origin, 0) + 1:
                continue
            if all(dst.applied.get(o, 0) >= s for o, s in txn.deps.items() if o != dst.name):
                out.append(txn)
        return out

    @rule(campus=st.sampled_from(CAMPUSES), table=st.sampled_from(sorted(POLICIES)),
          key=st.integers(0, 1), delete=st.integers(0, 5),
          x=st.sampled_from(("STAT", "routine", "hold")), status=st.integers(0, 4),
          inc=st.integers(-3, 5), touch=st.sets(st.sampled_from((1, 2, 3)), min_size=1),
          skew=st.integers(-50, 50), again=st.integers(0, 3))
    def write(self, campus: str, table: str, key: int, delete: int, x: str, status: int,
              inc: int, touch: set[int], skew: int, again: int) -> None:
        r = self.replicas[campus]
        self.wall += 1
        old = r.rows.get((table, key))
        if old is None:
            new: tuple[Any, ...] | None = (key, x, STATUS[status], inc)
            op = Op.INSERT
        elif delete == 0:
            new, op = None, Op.DELETE
        else:
            row = list(old)
            if 1 in touch:
                row[1] = x
            if 2 in touch:  # the application only moves a status forward
                row[2] = STATUS[max(status, STATUS.index(old[2]))]
            if 3 in touch:
                row[3] = old[3] + inc
            new, op = tuple(row), Op.UPDATE
        r.seq += 1
        deps = dict(r.applied)
        deps[campus] = r.seq - 1
        v = Version(campus, r.seq, r.tick(self.wall + skew), deps, op, new, old)
        logged = len(r.conflicts)
        r.apply(table, v)
        # Recording a local write keeps what the user wrote, except that a delta
        # column re-inserted after a delete also counts increments made
        # concurrently with that delete (the node writes the sum back).
        stored, wrote = r.rows.get((table, key)), new
        if POLICIES[table].delta and wrote is not None and stored is not None:
            stored, wrote = stored[:3], wrote[:3]
        assert stored == wrote, "a local write must stay as the user wrote it"
        assert len(r.conflicts) == logged, "a local write saw everything: it conflicts with nothing"
        changes = [(table, v)]
        k = (table, key)
        if again == 0 and new is not None:  # the same transaction edits the row once more
            bumped = (*r.rows[k][:3], r.rows[k][3] + 1)
            v2 = Version(campus, r.seq, v.hlc, deps, Op.UPDATE, bumped, r.rows[k])
            r.apply(table, v2)
            assert r.rows[k] == bumped
            assert len(r.conflicts) == logged, "a transaction never conflicts with itself"
            changes.append((table, v2))
            self.increments[k] = self.increments.get(k, 0) + 1
        r.applied[campus] = r.seq
        self.history.append(Txn(campus, r.seq, v.hlc, deps, changes))
        if op is Op.DELETE:
            self.deleted.add(k)
        else:
            self.increments[k] = self.increments.get(k, 0) + (new[3] - (old[3] if old else 0))
            if new is not None:
                self.furthest[k] = max(self.furthest.get(k, 0), STATUS.index(new[2]))

    @precondition(lambda self: self.history)
    @rule(campus=st.sampled_from(CAMPUSES), pick=st.integers(0, 1000))
    def deliver(self, campus: str, pick: int) -> None:
        dst = self.replicas[campus]
        ready = self.deliverable(dst)
        if ready:
            dst.receive(ready[pick % len(ready)])

    @precondition(lambda self: self.history)
    @rule(campus=st.sampled_from(CAMPUSES), pick=st.integers(0, 1000))
    def redeliver(self, campus: str, pick: int) -> None:
        dst = self.replicas[campus]
        done = [t for t in self.history if t.origin != campus
                and t.seq <= dst.applied.get(t.origin, 0)]
        if done:
            before = dict(dst.rows)
            dst.receive(done[pick % len(done)])
            assert dst.rows == before

    @invariant()
    def local_rows_are_what_users_wrote(self) -> None:
        for r in self.replicas.values():
            for (_table, key), row in r.rows.items():
                assert row[0] == key

    def teardown(self) -> None:
        # Everything reaches everyone, each campus in its own causal order.
        for offset in range(len(self.history) * len(CAMPUSES) + 1):
            progressed = False
            for name in CAMPUSES:
                dst = self.replicas[name]
                ready = self.deliverable(dst)
                if ready:
                    dst.receive(ready[(offset * 7 + len(name)) % len(ready)])
                    progressed = True
            if not progressed:
                break
        reference = self.replicas["a"].rows
        for r in self.replicas.values():
            assert r.applied == {c: self.replicas[c].seq for c in CAMPUSES if self.replicas[c].seq}
            assert r.rows == reference, f"campus {r.name} diverged from campus a"
        for (table, key), row in reference.items():
            if table in ("merge", "ranked-status") and (table, key) not in self.deleted:
                assert row[3] == self.increments[(table, key)], "delta lost an increment"
                assert STATUS.index(row[2]) == self.furthest[(table, key)], "status went back"
        self.check_conflicts_logged()

    def check_conflicts_logged(self) -> None:
        """Two edits of one row made without seeing each other must be logged
        everywhere, unless a later edit from one side, still unseen by the
        other, replaced it: then that later pair is the conflict (and two
        deletes agree, so they are no conflict)."""
        def key_of(t: Txn) -> tuple[str, int]:
            table, v = t.changes[0]
            return table, (v.new or v.old)[0]  # type: ignore[index]

        def saw(later: Txn, t: Txn) -> bool:
            if later.origin == t.origin:
                return later.seq > t.seq
            return later.deps.get(t.origin, 0) >= t.seq

        def concurrent(t1: Txn, t2: Txn) -> bool:
            return not saw(t1, t2) and not saw(t2, t1)

        for i, t1 in enumerate(self.history):
            for t2 in self.history[i + 1:]:
                k = key_of(t1)
                if key_of(t2) != k or not concurrent(t1, t2):
                    continue
                same_key = [t for t in self.history if key_of(t) == k]
                if any(saw(t3, t1) and concurrent(t3, t2) for t3 in same_key) or any(
                        saw(t3, t2) and concurrent(t3, t1) for t3 in same_key):
                    continue
                if t1.changes[0][1].op is t2.changes[0][1].op is Op.DELETE:
                    continue
                for r in self.replicas.values():
                    assert any(c[:2] == k for c in r.conflicts) or k in r.merged, (
                        f"campus {r.name} logged no conflict for {k}")


Convergence.TestCase.settings = settings(
    max_examples=EXAMPLES, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestConvergence = Convergence.TestCase
