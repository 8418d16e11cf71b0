"""Conflict detection and resolution for one row: pure logic, no database.

Each replicated row is a set of registers: one per non-key column, plus
``LIVE`` (does the row exist). A transaction writes registers: an insert or
update writes every column (or, under ``merge``, the columns it changed),
every change writes ``LIVE``. A row's metadata keeps, per register, the
*frontier*: the writes to it that no later write has superseded. A write
supersedes another when its transaction's dependency vector (what its
campus had applied when it was captured) covers it. Two writes in one
frontier are concurrent: neither campus had seen the other's: that is a
conflict, and the register's value is the frontier's best write by the
policy (``sort_key``).

Because a register's frontier is the same set on every campus once the
same transactions are applied (in any causal order), and the pick from it
is deterministic, every campus converges to the same row. Delta columns are
counters: every transaction adds (new - old), so they converge by
commutativity. ``manual`` is the one rule that does not pick: the version
that was there first stays until an operator's write supersedes both.

A write that changes a delta column also carries that column's *mark*
(register ``delta_mark(c)``, value True): it takes no part in the row's
value, only in telling which columns two concurrent versions both changed.
Marks follow the frontier rules like any register, but a version is never
kept for its marks alone. A concurrent update whose every register agrees
with every concurrent version's (values equal, so no rule has anything to
choose) and where a delta column changed on either side is *delta-merged*:
its outcome is certain (the deltas add), so it is counted, not logged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from node.model import Op, TableShape
from ringsync.conflict_policy import TablePolicy

LIVE = -1          # the register "this row exists"
BASE_ORIGIN = ""   # a row that was there before ringsync recorded versions


def delta_mark(c: int) -> int:
    """The register marking a change of delta column ``c`` (below LIVE)."""
    return LIVE - 1 - c


def is_mark(g: int) -> bool:
    return g < LIVE


@dataclass(slots=True)
class Rec:
    """One transaction's writes that are still in some register's frontier."""

    origin: str
    seq: int
    hlc: int
    regs: dict[int, Any]  # register -> value written


@dataclass(slots=True)
class RowMeta:
    recs: list[Rec] = field(default_factory=list)  # in arrival order
    counters: dict[int, Any] = field(default_factory=dict)  # delta column -> total


@dataclass(slots=True)
class Version:
    """An incoming (or just-captured local) change of one row."""

    origin: str
    seq: int
    hlc: int
    deps: Mapping[str, int]  # origin -> last seq its campus had applied (own: seq - 1)
    op: Op
    new: tuple[Any, ...] | None
    old: tuple[Any, ...] | None


@dataclass(slots=True)
class Conflict:
    kind: str      # insert_insert, update_update, update_delete, delete_update, update_missing
    rule: str      # the policy that decided
    winner: str    # local, remote, merged or parked
    local_row: tuple[Any, ...] | None
    remote_row: tuple[Any, ...] | None
    local_origin: str
    local_hlc: int
    remote_origin: str
    remote_hlc: int


@dataclass(slots=True)
class Outcome:
    row: tuple[Any, ...] | None   # what the table must hold for this key afterwards
    meta: RowMeta
    conflict: Conflict | None
    parked: bool = False          # manual: the incoming version waits for an operator
    delta_merged: bool = False    # concurrent, but only delta columns both changed: not logged


class RowRules:
    """A table's policy compiled against its shape (column names -> indexes)."""

    def __init__(self, shape: TableShape, policy: TablePolicy) -> None:
        self.shape = shape
        self.policy = policy
        index = {c: i for i, c in enumerate(shape.columns)}
        keys = set(shape.key_indexes)
        self.delta = tuple(index[c] for c in policy.delta)
        self.marks = {c: delta_mark(c) for c in self.delta}
        self.monotonic = {index[c]: {v: i for i, v in enumerate(order)}
                          for c, order in policy.monotonic.items()}
        self.values = tuple(i for i in range(len(shape.columns))
                            if i not in keys and i not in self.delta)
        self.rank_index = index[policy.rank_column] if policy.rank_column else -2
        self.rank = {v: len(policy.rank_order) - i for i, v in enumerate(policy.rank_order)}
        self.priority = {c: len(policy.priority) - i for i, c in enumerate(policy.priority)}

    # -- which registers a change writes, and their order ----------------

    def written(self, v: Version) -> dict[int, Any]:
        if v.op is Op.DELETE or v.new is None:
            return {LIVE: False}
        out: dict[int, Any] = {LIVE: True}
        merge = self.policy.rule == "merge" and v.op is Op.UPDATE and v.old is not None
        for g in self.values:
            if not merge or v.new[g] != v.old[g]:  # type: ignore[index]
                out[g] = v.new[g]
        for c, mark in self.marks.items():
            if _delta(v, c) != 0:
                out[mark] = True
        return out

    def sort_key(self, rec: Rec, g: int) -> tuple[Any, ...]:
        stamp = (rec.hlc, rec.origin)
        if g in self.monotonic:
            return (self.monotonic[g].get(rec.regs[g], -1), stamp)
        rule = self.policy.rule
        if rule == "campus-priority":
            return (self.priority.get(rec.origin, 0), stamp)
        if rule == "rank":
            if rec.regs.get(LIVE) is False:
                return (-1, stamp)  # a delete ranks below every version of the row
            return (self.rank.get(rec.regs.get(self.rank_index), 0), stamp)
        return stamp

    def pick(self, frontier: list[Rec], g: int) -> Rec:
        if self.policy.rule == "manual" and g not in self.monotonic:
            return frontier[0]  # what was here first stays until an operator decides
        return max(frontier, key=lambda r: self.sort_key(r, g))

    # -- metadata for rows ringsync has no history of --------------------

    def base_meta(self, row: tuple[Any, ...] | None) -> RowMeta:
        if row is None:
            return RowMeta()
        regs = {g: row[g] for g in self.values}
        regs[LIVE] = True
        return RowMeta([Rec(BASE_ORIGIN, 0, 0, regs)], {c: row[c] for c in self.delta})

    # -- the resolution itself -------------------------------------------

    def resolve(self, row: tuple[Any, ...] | None, meta: RowMeta | None, v: Version) -> Outcome:
        """Apply ``v`` to a row whose table value is ``row`` and whose versions
        are ``meta`` (None: never recorded)."""
        fast = self._supersede_all(row, meta, v)
        if fast is not None:
            return fast
        known = meta is not None
        meta = meta if meta is not None else self.base_meta(row)
        concurrent = [r for r in meta.recs if not _supersedes(v, r)]
        still_current = {id(r) for r in concurrent}
        written = self.written(v)
        recs: list[Rec] = []
        for r in meta.recs:
            if id(r) not in still_current:
                r = Rec(r.origin, r.seq, r.hlc,
                        {g: x for g, x in r.regs.items() if g not in written})
            if any(not is_mark(g) for g in r.regs):  # never kept for its marks alone
                recs.append(r)
        mine = Rec(v.origin, v.seq, v.hlc, dict(written))
        recs.append(mine)
        counters = dict(meta.counters)
        for c in self.delta:
            counters[c] = _add(counters.get(c), _delta(v, c))
        new_meta = RowMeta(recs, counters)
        new_row, won = self._materialize(new_meta, v, written)
        conflict = None
        parked = False
        if concurrent:
            kind = _kind(v.op, row is not None)
            if kind == "update_update" and self.delta_certain(written, concurrent):
                return Outcome(new_row, new_meta, None, delta_merged=True)
            if kind is not None:
                top = max(concurrent, key=lambda r: (r.hlc, r.origin))
                if all(won.values()):
                    winner = "remote"
                elif not any(won.values()):
                    winner = "local"
                else:
                    winner = "merged"
                if self.policy.rule == "manual" and winner != "remote":
                    winner, parked = "parked", True
                conflict = Conflict(kind, self.policy.describe(), winner, row, v.new,
                                    top.origin, top.hlc, v.origin, v.hlc)
        elif not known and row is None and v.op is not Op.INSERT:
            conflict = Conflict("update_missing", "apply as insert" if v.new else "nothing to do",
                                "remote", None, v.new, "", 0, v.origin, v.hlc)
        return Outcome(new_row, new_meta, conflict, parked)

    def delta_certain(self, written: Mapping[int, Any], concurrent: list[Rec]) -> bool:
        """Is an update whose registers are ``written`` certain against these
        concurrent versions? Each pair must agree on every register both
        wrote (so no rule has anything to pick) and have a delta column
        changed on at least one side (otherwise it is an ordinary conflict,
        e.g. a ``merge`` of two different columns, and is logged as before)."""
        if not self.delta:
            return False
        mine_delta = any(is_mark(g) for g in written)
        for r in concurrent:
            if not mine_delta and not any(is_mark(g) for g in r.regs):
                return False
            for g, x in r.regs.items():
                if not is_mark(g) and g in written and not _same(written[g], x):
                    return False
        return True

    def _supersede_all(self, row: tuple[Any, ...] | None, meta: RowMeta | None,
                       v: Version) -> Outcome | None:
        """The common case, without building frontiers: an insert of a new key,
        or a write of every register that saw every version the row has. Its
        one record is then the whole frontier of every register, so the row is
        simply ``v.new`` (delta columns: their totals). None: not that case."""
        if v.new is None or v.op is Op.DELETE or (
                self.policy.rule == "merge" and v.op is Op.UPDATE):
            return None
        if meta is None:
            if row is not None or v.op is not Op.INSERT:
                return None
            counters: dict[int, Any] = {}
        elif all(_supersedes(v, r) for r in meta.recs):
            counters = dict(meta.counters)
        else:
            return None
        regs: dict[int, Any] = {LIVE: True}
        for g in self.values:
            regs[g] = v.new[g]
        new = v.new
        if self.delta:
            out = list(new)
            for c in self.delta:
                change = _delta(v, c)
                counters[c] = out[c] = _add(counters.get(c), change)
                if change != 0:
                    regs[self.marks[c]] = True
            new = tuple(out)
        return Outcome(new, RowMeta([Rec(v.origin, v.seq, v.hlc, regs)], counters), None)

    def _materialize(self, meta: RowMeta, v: Version,
                     written: dict[int, Any]) -> tuple[tuple[Any, ...] | None, dict[int, bool]]:
        """The row the registers now say, and which of v's writes won."""
        won: dict[int, bool] = {}
        values: dict[int, Any] = {}
        for g in (LIVE, *self.values):
            frontier = [r for r in meta.recs if g in r.regs]
            if not frontier:
                values[g] = None
                continue
            best = self.pick(frontier, g)
            values[g] = best.regs[g]
            if g in written:
                won[g] = best.origin == v.origin and best.seq == v.seq
        if not values[LIVE]:
            return None, won
        source = v.new if v.new is not None else v.old
        assert source is not None
        row = list(source)
        for g in self.values:
            row[g] = values[g]
        for c in self.delta:
            row[c] = meta.counters.get(c)
        return tuple(row), won


def _supersedes(v: Version, r: Rec) -> bool:
    """Had v's campus applied r's transaction when v was captured?"""
    if r.origin == BASE_ORIGIN:
        return True
    if r.origin == v.origin:  # same seq: an earlier change of the row in the same transaction
        return r.seq <= v.seq
    return v.deps.get(r.origin, 0) >= r.seq


def _kind(op: Op, local_live: bool) -> str | None:
    if op is Op.INSERT:
        return "insert_insert" if local_live else "update_delete"
    if op is Op.UPDATE:
        return "update_update" if local_live else "update_delete"
    return "delete_update" if local_live else None  # delete/delete agrees: no conflict


def _same(a: Any, b: Any) -> bool:
    """Equal values, of the same type (1 and True, or 1 and 1.0, are not the same write)."""
    return type(a) is type(b) and a == b


def _delta(v: Version, c: int) -> Any:
    new = v.new[c] if v.new is not None else None
    old = v.old[c] if v.old is not None else None
    return (new or 0) - (old or 0)


def _add(total: Any, delta: Any) -> Any:
    return (total or 0) + delta
