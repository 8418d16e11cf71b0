"""Operator resolution of a parked conflict (``ringsync ctl conflicts resolve``).

A parked conflict (policy ``manual``) left the local version in the table
and kept the incoming one in the row's versions. The operator picks the
local version, the remote one, or a row of their own; the node writes it as
an ordinary local transaction. Capture replicates it like any user edit, and
because that campus had both versions when it wrote, the new version
supersedes both everywhere: every campus converges on it, and each campus
closes its own parked entry for the row when the version arrives.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from node.conflicts.driver import ConflictRecord, row_to_json
from node.conflicts.entries import ConflictEntry, ResolvedConflict
from node.conflicts.log import ConflictQuery
from node.conflicts.metacodec import decode_meta
from node.conflicts.resolve import LIVE, RowRules
from node.model import Json, TableShape
from ringsync.errors import RingsyncError

Row = tuple[Any, ...]


class ResolveRefused(RingsyncError):
    """The request cannot be carried out as asked; the message says why."""

    grpc_code = "FAILED_PRECONDITION"


class ManualStore(Protocol):
    def conflicts(self, query: ConflictQuery) -> list[ConflictEntry]: ...

    def read_version(self, table: str, key: Row) -> tuple[Row | None, str | None]: ...

    def write_local(self, table: str, key: Row, row: Row | None,
                    prior: Row | None = None) -> None:
        """Write ``row`` (None: delete) as an ordinary local transaction. With
        ``prior`` the row is first written as ``prior``, so that deleting a row
        that is already gone here still records a delete that replicates."""

    def mark_conflict(self, conflict_id: int, state: str, resolution: str) -> None: ...


def _value(kind: str, v: Any, column: str) -> Any:
    if v is None:
        return None
    try:
        if kind == "int" and isinstance(v, int) and not isinstance(v, bool):
            return v
        if kind == "float" and isinstance(v, int | float) and not isinstance(v, bool):
            return float(v)
        if kind == "decimal":
            return Decimal(str(v))
        if kind == "bool" and isinstance(v, bool):
            return v
        if kind == "bytes" and isinstance(v, str) and v.startswith("\\x"):
            return bytes.fromhex(v[2:])
        if kind == "timestamp" and isinstance(v, str):
            when = dt.datetime.fromisoformat(v)
            return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)
        if kind == "date" and isinstance(v, str):
            return dt.date.fromisoformat(v)
        if kind == "uuid" and isinstance(v, str):
            return uuid.UUID(v)
        if kind == "json":
            return Json(json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False))
        if kind in ("text", "") and isinstance(v, str):
            return v
    except (ValueError, InvalidOperation) as e:
        raise ResolveRefused(f"column {column!r}: {v!r} is not a valid {kind} ({e})") from e
    raise ResolveRefused(f"column {column!r}: {v!r} is not a {kind or 'text'} value")


def row_from_json(shape: TableShape, obj: Any) -> Row:
    """A row given as a JSON object (every column by name), as canonical values."""
    if not isinstance(obj, Mapping):
        raise ResolveRefused("--take must be local, remote or a JSON object of the whole row")
    missing = [c for c in shape.columns if c not in obj]
    extra = sorted(set(obj) - set(shape.columns))
    if missing or extra:
        raise ResolveRefused(f"the row for {shape.name} must name every column exactly: "
                             f"missing {missing}, unknown {extra}")
    kinds = shape.kinds or ("",) * len(shape.columns)
    return tuple(_value(k, obj[c], c) for c, k in zip(shape.columns, kinds, strict=True))


def resolve_parked(store: ManualStore, rules: Mapping[str, RowRules], conflict_id: int,
                   take: str, who: str) -> ResolvedConflict:
    """Write the operator's choice for a parked conflict; return what was written."""
    found = store.conflicts(ConflictQuery(id=conflict_id, limit=1))
    if not found:
        raise ResolveRefused(f"no conflict {conflict_id} here (it may be past retention)")
    entry = found[0]
    if entry.state != "parked":
        raise ResolveRefused(
            f"conflict {conflict_id} is {entry.state}, not parked: the "
            f"{entry.rule} policy decided it; edit the row itself to change the outcome")
    table_rules = rules[entry.table]
    shape = table_rules.shape
    key = row_from_json(
        TableShape(shape.name, shape.key_columns, tuple(range(len(shape.key_indexes))),
                   tuple(shape.kinds[i] for i in shape.key_indexes) if shape.kinds else ()),
        dict(zip(shape.key_columns, json.loads(entry.key), strict=True)))
    current, meta_text = store.read_version(shape.name, key)
    remote_row: Row | None = None
    if take == "local":
        chosen = current
    elif take == "remote":
        meta = decode_meta(meta_text, current, table_rules.delta) if meta_text else None
        rec = next((r for r in (meta.recs if meta else [])
                    if (r.origin, r.seq) == (entry.remote_origin, entry.remote_seq)), None)
        if rec is None:
            raise ResolveRefused(f"the remote version of conflict {conflict_id} is no longer "
                                 f"held: a later edit of the row superseded it")
        base = current if current is not None else tuple(
            key[shape.key_indexes.index(i)] if i in shape.key_indexes else None
            for i in range(len(shape.columns)))
        remote_row = tuple(rec.regs.get(i, base[i]) for i in range(len(shape.columns)))
        chosen = None if rec.regs.get(LIVE) is False else remote_row
    else:
        try:
            chosen = row_from_json(shape, json.loads(take))
        except json.JSONDecodeError as e:
            raise ResolveRefused(f"--take must be local, remote or a JSON object: {e}") from e
        if shape.key_of(chosen) != key:
            raise ResolveRefused("the row's key must stay the conflict's key")
    if chosen is None and current is None:  # keep it deleted: a delete must still replicate
        prior = remote_row if remote_row is not None else _any_version(meta_text, table_rules,
                                                                         key)
        store.write_local(shape.name, key, None, prior=prior)
    else:
        store.write_local(shape.name, key, chosen)
    what = take if take in ("local", "remote") else "an operator's row"
    store.mark_conflict(conflict_id, "resolved", f"{what} taken by {who}")
    return ResolvedConflict(shape.name, ConflictRecord.key_json_of(key),
                            row_to_json(shape.columns, chosen) or "")


def _any_version(meta_text: str | None, rules: RowRules, key: Row) -> Row:
    """Some full version of a deleted row, to write and delete again."""
    meta = decode_meta(meta_text, None, rules.delta) if meta_text else None
    shape = rules.shape
    for rec in meta.recs if meta else []:
        if all(i in rec.regs for i in rules.values):
            return tuple(key[shape.key_indexes.index(i)] if i in shape.key_indexes
                         else rec.regs.get(i, meta.counters.get(i) if meta else None)
                         for i in range(len(shape.columns)))
    raise ResolveRefused("the row is deleted here and no full version of it is held; "
                         "resolve at another campus")
