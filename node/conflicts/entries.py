"""What the conflict log and the dead-letter queue hand out, as typed rows.

The log (node.conflicts.log) and the queue (node.conflicts.deadletter) are
tables in the campus database; their queries return these frozen records,
the operator actions (node.conflicts.manual, deadletter.act) return the
result records below, and node/servicers.py turns them into protobuf. The
stored format is the tables' columns: ``from_row`` takes a row selected with
the columns in the order the ``*_COLUMNS`` tuples give.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

CONFLICT_COLUMNS = ("id", "at", "tbl", "key", "kind", "rule", "winner", "local_origin",
                    "local_hlc", "remote_origin", "remote_seq", "remote_hlc", "local_row",
                    "remote_row", "skew_ms", "state", "resolution")
DEAD_LETTER_COLUMNS = ("id", "at", "origin", "seq", "tbl", "key", "op", "frame", "error",
                       "attempts", "state", "actions")


@dataclass(frozen=True)
class ConflictEntry:
    """One entry of the conflict log; fields in CONFLICT_COLUMNS order (``tbl``
    is ``table``)."""

    id: int
    at: float               # when this campus detected it (Unix seconds)
    table: str
    key: str                # the row key, JSON array
    kind: str               # insert_insert, update_update, ... clock_skew
    rule: str               # the policy that decided
    winner: str             # local, remote, merged, parked, flagged
    local_origin: str
    local_hlc: int
    remote_origin: str
    remote_seq: int
    remote_hlc: int
    local_row: str | None   # JSON object; None: no row (deleted or missing)
    remote_row: str | None
    skew_ms: int
    state: str              # logged | parked | flagged | resolved
    resolution: str | None  # how a parked conflict was settled, and by whom

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> ConflictEntry:
        return cls(*row)



@dataclass(frozen=True)
class DeadLetterEntry:
    """One parked (or settled) change in the dead-letter queue; fields in
    DEAD_LETTER_COLUMNS order (``tbl`` is ``table``)."""

    id: int
    at: float
    origin: str
    seq: int
    table: str          # "*": a whole frame that cannot be decoded here
    key: str            # JSON array ("" for a whole frame)
    op: str             # I, U, D, or "frame"
    frame: bytes        # the change as a one-change TxnFrame (or the undecodable frame)
    error: str
    attempts: int
    state: str          # parked | applied | skipped | stale
    actions: str        # JSON list of {at, by, action, result}

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> DeadLetterEntry:
        values = list(row)
        values[7] = bytes(values[7])  # a driver may hand a memoryview
        return cls(*values)


@dataclass(frozen=True)
class DescribedDeadLetter:
    """A queue entry for operators: ``row`` is the change's new row (the old
    one for a delete) as JSON, None when it cannot be decoded here."""

    entry: DeadLetterEntry
    row: str | None


@dataclass(frozen=True)
class DeadLetterOutcome:
    """What an operator action did to one entry; ``error`` when it failed again."""

    id: int
    state: str          # applied | skipped | parked
    error: str | None = None

    def to_json_obj(self) -> dict[str, Any]:
        """As the action's reply lists it: {id, state, error?}."""
        out: dict[str, Any] = {"id": self.id, "state": self.state}
        if self.error is not None:
            out["error"] = self.error
        return out


@dataclass(frozen=True)
class ResolvedConflict:
    """What resolving a parked conflict wrote."""

    table: str
    key: str            # JSON array
    row: str            # JSON object written; "": the row was deleted

