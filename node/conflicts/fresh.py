"""The fast path for fresh rows: inserts of keys that nothing describes yet.

Most of what a ring carries is new rows: lab results, a morning burst, a
history migration. Resolving them one by one (node.conflicts.driver) is
certain to give one outcome: the row exactly as sent, and one version
record (its transaction's origin, sequence, stamp and every register) that
is the same text for every row of that transaction. This module recognises
such a run of changes and computes that record once per transaction, with
the exact path's own code (``RowRules.resolve`` and ``encode_meta``), so the
two paths cannot drift apart.

The engine then writes the rows and their version rows set-wise (COPY and
one ``INSERT ... SELECT``), after asking the database whether any key of
the run already has a version entry or a row: a re-insert over a
tombstone, a row from before ringsync, a local change not recorded yet.
If one has, the engine writes nothing and says so, and the run takes the
exact path, which decides exactly as it always did.

Not eligible, so always exact: a run with anything but inserts, a key
twice in one run, a table with delta columns (its counters start from the
first value sent, which the record must carry).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from node.conflicts.metacodec import encode_meta
from node.conflicts.resolve import RowRules, Version
from node.model import Change, Op, RawInserts, TableShape
from node.rawcopy import decode_rows

Key = tuple[Any, ...]
Row = tuple[Any, ...]
# One transaction's rows as COPY text for an engine's set-wise write
# (insert_raw / record_raw): (text, rows, version text, xid).
RawItem = tuple[bytes, int, str, int | None]


@dataclass(slots=True)
class FreshRun:
    """A run of inserts of distinct keys, ready for an engine's set-wise write.

    ``metas[i]`` is the version text of ``rows[i]`` (one shared string per
    transaction); ``xids[i]`` the engine transaction id of a local row's
    transaction (None where the engine has none).
    """

    rows: list[Row]
    keys: list[Key]
    metas: list[str]
    xids: list[int | None]


def fresh_run(rules: RowRules, items: list[Any]) -> FreshRun | None:
    """The run as a FreshRun, or None when it is not only inserts of distinct
    keys of a table without delta columns. ``items`` are the driver's
    (txn, change, skew) entries of one table."""
    if rules.delta:
        return None
    shape = rules.shape
    rows: list[Row] = []
    keys: list[Key] = []
    metas: list[str] = []
    xids: list[int | None] = []
    texts: dict[int, str] = {}  # id(txn) -> its version text
    for txn, change, _ in items:
        new = change.new
        if change.op is not Op.INSERT or new is None:
            return None
        text = texts.get(id(txn))
        if text is None:
            text = texts[id(txn)] = fresh_meta(rules, txn, new)
        rows.append(new)
        keys.append(shape.key_of(new))
        metas.append(text)
        xids.append(txn.xid)
    if len(set(keys)) != len(keys):
        return None
    return FreshRun(rows, keys, metas, xids)


def fresh_meta(rules: RowRules, txn: Any, row: Row) -> str:
    """The version text the exact path gives an insert of ``row`` by ``txn``
    into a key with no row and no versions: the same for every row of the
    transaction, since without delta columns it names registers, not values."""
    version = Version(txn.origin, txn.seq, txn.hlc, txn.deps, Op.INSERT, row, None)
    outcome = rules.resolve(None, None, version)
    if outcome.conflict is not None or outcome.row != row or len(outcome.meta.recs) != 1:
        raise AssertionError(f"an insert of a fresh key of {rules.shape.name} did not resolve "
                             f"to the row as sent: {outcome!r}")
    return encode_meta(outcome.meta, outcome.row)


def raw_changes(raw: RawInserts, shape: TableShape, limit: int | None = None) -> list[Change]:
    """Rows carried as COPY text, decoded into INSERT changes (the first
    ``limit`` of them): for every path that needs values."""
    text, rows = raw.copy_text, raw.rows
    if limit is not None and limit < rows:
        cut = 0
        for _ in range(limit):
            cut = text.index(b"\n", cut) + 1
        text, rows = text[:cut], limit
    return [Change(raw.table, Op.INSERT, new=row)
            for row in decode_rows(text, shape.kinds, rows)]
