"""Repairing one differing row through the ring (ctl repair; Control.RepairRow).

ringsync.verification finds the rows that differ and chooses, per row, the
copy to keep; ``ctl repair`` then asks one campus to write it as an
ordinary local edit, so the fix travels like any change (versions, conflict
rules, the conflict log and every campus stay consistent):

* ``reassert`` at a campus holding the chosen copy: the row is written again
  as it is there; capture sends it as an update, which the others apply
  over their copy (a campus missing the row applies it as an insert);
* ``delete`` at a campus holding a row that should not exist: the delete
  replicates, and campuses without the row have nothing to do.

``inspect`` changes nothing: it says where this campus's copy stands under
the table's conflict policy, so ``ctl repair`` can keep, by default, the
copy the policy would choose (``standing``): whether the copy is what its
recorded versions say the row is (a copy edited or deleted behind
replication's back is not, and ranks below every recorded one), and the
winning version's policy rank, hybrid timestamp and origin.

``reassert`` is refused, with the reason, where writing the row again would
not carry its contents: a ``merge`` table (an update carries only the
columns it changes) and a table with delta columns (an update carries only
the change of a delta column, not its value). Such rows are repaired by
editing them at one campus; deletes work on every table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from node.conflicts.driver import ConflictRecord, row_to_json
from node.conflicts.manual import ManualStore
from node.conflicts.metacodec import decode_meta
from node.conflicts.resolve import LIVE, Rec, RowRules
from node.verify.rowhash import parse_record, value_of_field
from ringsync.errors import RingsyncError

ACTIONS = ("reassert", "delete", "inspect")


class RepairRefused(RingsyncError):
    """This campus cannot make the repair asked of it (the reason says why)."""

    grpc_code = "FAILED_PRECONDITION"


@dataclass(frozen=True)
class Standing:
    """Where one campus's copy of a row stands under its table's policy."""

    recorded: bool  # the copy is what its recorded versions make the row
    rank: int       # campus-priority / rank rules: the winning version's rank (else 0)
    hlc: int        # the winning version's hybrid timestamp (0: none recorded)
    origin: str     # the campus that wrote it ("" : none recorded)


@dataclass(frozen=True)
class RepairDone:
    table: str
    key: str   # JSON array
    row: str   # JSON object written (inspect: held); empty: deleted (inspect: absent)
    standing: Standing | None = None  # inspect only


def standing(rules: RowRules, current: tuple[Any, ...] | None, meta_text: str | None
             ) -> Standing:
    """The copy's standing: the version that wins the row's existence by the
    policy, and whether the copy's existence and values are the ones its
    versions pick. Where the versions imply a value from the row itself
    (node.conflicts.metacodec: one writer, row present) only existence can
    be checked; copies with the same winning version then tie, and the
    choice falls to the majority."""
    if not meta_text:
        return Standing(False, 0, 0, "")
    # Decoded against a row of unknowns: a register the versions imply from the
    # row (written while it existed) reads as live with an unknown value.
    meta = decode_meta(meta_text, (_UNKNOWN,) * len(rules.shape.columns), rules.delta)
    live = [r for r in meta.recs if LIVE in r.regs]
    if not live:
        return Standing(False, 0, 0, "")
    winner = rules.pick(live, LIVE)
    rank = _rank(rules, winner, current)
    recorded = bool(winner.regs[LIVE]) == (current is not None)
    if recorded and current is not None:
        for g in rules.values:
            writes = [r for r in meta.recs if g in r.regs]
            if writes and not _same(rules.pick(writes, g).regs[g], current[g]):
                recorded = False
        for c in rules.delta:
            if not _same(meta.counters.get(c, _UNKNOWN), current[c]):
                recorded = False
    return Standing(recorded, int(rank), winner.hlc, winner.origin)


_UNKNOWN: Any = object()  # a value the versions leave to the row


def _rank(rules: RowRules, winner: Rec, current: tuple[Any, ...] | None) -> int:
    """The policy's rank of the winning version: RowRules.sort_key's first part
    for the rules that rank (else 0), a value the versions leave to the row
    read from the copy."""
    if rules.policy.rule not in ("campus-priority", "rank"):
        return 0
    regs = {g: current[g] if v is _UNKNOWN and current is not None and g >= 0 else v
            for g, v in winner.regs.items()}
    return int(rules.sort_key(Rec(winner.origin, winner.seq, winner.hlc, regs), LIVE)[0])


def _same(a: Any, b: Any) -> bool:
    return a is _UNKNOWN or a == b or (a != a and b != b)  # NaN equals NaN here


def repair_row(store: ManualStore, rules: Mapping[str, RowRules], table: str,
               key_text: str, action: str) -> RepairDone:
    """Make the repair at this campus (in the engine thread)."""
    if action not in ACTIONS:
        raise RepairRefused(f"action must be one of {ACTIONS}, not {action!r}")
    table_rules = rules.get(table)
    if table_rules is None:
        raise RepairRefused(f"table {table!r} is not replicated")
    if action == "reassert" and (table_rules.policy.rule == "merge" or table_rules.delta):
        how = "the merge policy" if table_rules.policy.rule == "merge" else "delta columns"
        raise RepairRefused(f"{table} uses {how}: writing a row again does not carry all "
                            f"its values; edit the row at one campus instead")
    shape = table_rules.shape
    try:
        fields = parse_record(key_text)
        key = tuple(value_of_field(shape.kinds[i], f)
                    for i, f in zip(shape.key_indexes, fields, strict=True))
    except (ValueError, IndexError) as e:
        raise RepairRefused(f"not a key of {table}: {key_text[:80]!r} ({e})") from e
    current, meta_text = store.read_version(table, key)
    if action == "inspect":
        return RepairDone(table, ConflictRecord.key_json_of(key),
                          row_to_json(shape.columns, current) or "" if current else "",
                          standing(table_rules, current, meta_text))
    if current is None:
        raise RepairRefused(f"{table} {ConflictRecord.key_json_of(key)} is not here: "
                            f"repair from a campus that holds it")
    if action == "reassert":
        store.write_local(table, key, current)
        return RepairDone(table, ConflictRecord.key_json_of(key),
                          row_to_json(shape.columns, current) or "")
    store.write_local(table, key, None)
    return RepairDone(table, ConflictRecord.key_json_of(key), "")
