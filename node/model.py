"""Engine-neutral domain objects for captured and applied changes.

Values are canonical Python values: None, bool, int, decimal.Decimal, float,
str, bytes, datetime (aware, UTC), date, uuid.UUID or Json. node.codec maps
them to the wire's Value and back; engines map them to native types.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any


class Op(enum.Enum):
    INSERT = "I"
    UPDATE = "U"
    DELETE = "D"


@dataclass(frozen=True, slots=True)
class Json:
    """A JSON document as canonical text (sorted keys, no spaces)."""

    text: str


@dataclass(frozen=True, slots=True)
class TableShape:
    name: str
    columns: tuple[str, ...]
    key_indexes: tuple[int, ...]
    # canonical kind per column (see values.proto); empty when unknown
    kinds: tuple[str, ...] = ()
    _key: Callable[[tuple[Any, ...]], Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # key_of runs for every row applied: an itemgetter, not a generator
        getter: Callable[[tuple[Any, ...]], Any]
        if len(self.key_indexes) == 1:
            (only,) = self.key_indexes
            getter = lambda row: (row[only],)  # noqa: E731
        elif self.key_indexes:
            getter = itemgetter(*self.key_indexes)
        else:
            getter = lambda row: ()  # noqa: E731
        object.__setattr__(self, "_key", getter)

    def key_of(self, row: tuple[Any, ...]) -> tuple[Any, ...]:
        return self._key(row)

    @property
    def key_columns(self) -> tuple[str, ...]:
        return tuple(self.columns[i] for i in self.key_indexes)


@dataclass(slots=True)
class Change:
    table: str
    op: Op
    new: tuple[Any, ...] | None = None  # INSERT, UPDATE
    old: tuple[Any, ...] | None = None  # UPDATE, DELETE


@dataclass(slots=True)
class RawInserts:
    """INSERTs of one table as PostgreSQL COPY text (TxnFrame.raw_inserts),
    kept as bytes on the way through apply: a PostgreSQL campus copies them
    in without making a Python value of any row (node.conflicts.fresh);
    anything else decodes them into Changes (node.rawcopy). Stands among a
    transaction's changes where its rows would."""

    table: str
    rows: int
    copy_text: bytes
    op: Op = Op.INSERT
    new: None = None
    old: None = None


@dataclass(slots=True)
class CapturedChunk:
    """Part or all of one committed local transaction, as capture read it.

    ``final`` is False when the transaction continues in the next chunk.
    ``position`` is the engine's resume point after this chunk; the journal
    stores it atomically with the chunk so capture restarts exactly there.
    """

    changes: list[Change]
    final: bool
    commit_time: float
    position: int
    # Chunk number within its transaction when the engine knows it (PostgreSQL
    # re-sends a transaction from its start after a reconnect); None means
    # "continues the journal's partial transaction" (SQLite resumes mid-way).
    index: int | None = None
    # The engine's transaction id (PostgreSQL xid), so the node can tell
    # later whether a row still holds this transaction's version.
    xid: int | None = None
    # What the campus had applied of every other campus when this chunk's
    # transaction committed (at least that much): its dependency vector.
    deps: dict[str, int] | None = None
    # The chunk's rows as COPY text instead of ``changes`` (every one an
    # INSERT): (table, rows, copy_text) runs in commit order.
    raw: list[tuple[str, int, bytes]] | None = None

    @property
    def rows(self) -> int:
        return len(self.changes) + sum(n for _, n, _ in self.raw or ())
