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

``reassert`` is refused, with the reason, where writing the row again would
not carry its contents: a ``merge`` table (an update carries only the
columns it changes) and a table with delta columns (an update carries only
the change of a delta column, not its value). Such rows are repaired by
editing them at one campus; deletes work on every table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from node.conflicts.driver import ConflictRecord, row_to_json
from node.conflicts.manual import ManualStore
from node.conflicts.resolve import RowRules
from node.verify.rowhash import parse_record, value_of_field
from ringsync.errors import RingsyncError

ACTIONS = ("reassert", "delete")


class RepairRefused(RingsyncError):
    """This campus cannot make the repair asked of it (the reason says why)."""

    grpc_code = "FAILED_PRECONDITION"


@dataclass(frozen=True)
class RepairDone:
    table: str
    key: str   # JSON array
    row: str   # JSON object written; empty: deleted


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
    current, _ = store.read_version(table, key)
    if current is None:
        raise RepairRefused(f"{table} {ConflictRecord.key_json_of(key)} is not here: "
                            f"repair from a campus that holds it")
    if action == "reassert":
        store.write_local(table, key, current)
        return RepairDone(table, ConflictRecord.key_json_of(key),
                          row_to_json(shape.columns, current) or "")
    store.write_local(table, key, None)
    return RepairDone(table, ConflictRecord.key_json_of(key), "")
