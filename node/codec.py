"""Mapping between domain changes (node.model) and wire frames (TxnFrame).

This is the only place that knows both the canonical Python values and the
protobuf Value kinds. Frames of INSERTs only may instead carry raw insert
runs, COPY text per table (build_raw_frame; node.rawcopy encodes, checks and
decodes them), which decode_changes turns into the same Changes. It also
defines the canonical row digest used by checksums, so that equal rows hash
equally on every engine.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from node.model import Change, Json, Op, TableShape
from node.rawcopy import KINDS, check_raw, decode_rows
from ringsync.errors import ProtocolError
from ringsync.v1 import values_pb2 as pb

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
EPOCH_DATE = dt.date(1970, 1, 1)
_OP_TO_PB = {
    Op.INSERT: pb.RowChange.INSERT,
    Op.UPDATE: pb.RowChange.UPDATE,
    Op.DELETE: pb.RowChange.DELETE,
}
_PB_TO_OP = {v: k for k, v in _OP_TO_PB.items()}


# The common exact types, by the Value field that holds them.
_FIELD_OF_TYPE: dict[type, str] = {
    bool: "bool_value", int: "int_value", float: "float_value", str: "text_value",
}


def to_value(v: Any, out: pb.Value) -> None:
    """Fill ``out`` with the canonical encoding of a Python value."""
    field = _FIELD_OF_TYPE.get(type(v))
    if field is not None:
        setattr(out, field, v)
    elif v is None:
        out.is_null = True
    elif isinstance(v, bool):
        out.bool_value = v
    elif isinstance(v, int):
        out.int_value = v
    elif isinstance(v, float):
        out.float_value = v
    elif isinstance(v, str):
        out.text_value = v
    elif isinstance(v, bytes | bytearray | memoryview):
        out.bytes_value = bytes(v)
    elif isinstance(v, Decimal):
        out.decimal_value = str(v)
    elif isinstance(v, dt.datetime):
        if v.tzinfo is None:
            raise ValueError("naive datetime; engines must produce UTC-aware timestamps")
        delta = v - EPOCH
        out.timestamp_micros = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
    elif isinstance(v, dt.date):
        out.date_days = (v - EPOCH_DATE).days
    elif isinstance(v, uuid.UUID):
        out.uuid_value = v.bytes
    elif isinstance(v, Json):
        out.json_value = v.text
    else:
        raise ValueError(f"cannot replicate a value of type {type(v).__name__}")


def _uuid(value: pb.Value) -> uuid.UUID:
    if len(value.uuid_value) != 16:
        raise ProtocolError("uuid value is not 16 bytes")
    return uuid.UUID(bytes=value.uuid_value)


# Kinds whose Python value is not the field itself; every other kind is.
_CONVERT: dict[str | None, Any] = {
    None: lambda value: None,
    "is_null": lambda value: None,
    "timestamp_micros": lambda value: EPOCH + dt.timedelta(microseconds=value.timestamp_micros),
    "date_days": lambda value: EPOCH_DATE + dt.timedelta(days=value.date_days),
    "decimal_value": lambda value: Decimal(value.decimal_value),
    "uuid_value": _uuid,
    "json_value": lambda value: Json(value.json_value),
}


def from_value(value: pb.Value) -> Any:
    kind = value.WhichOneof("kind")
    convert = _CONVERT.get(kind)
    return convert(value) if convert is not None else getattr(value, kind)


def _fill(row: Sequence[Any], out: Any) -> None:
    for v in row:
        to_value(v, out.add())


def build_frame(
    origin: str,
    seq: int,
    chunk: int,
    final: bool,
    commit_time: float,
    changes: Iterable[Change],
    shapes: dict[str, TableShape],
    hlc: int = 0,
    deps: dict[str, int] | None = None,
) -> pb.TxnFrame:
    frame = pb.TxnFrame(origin=origin, seq=seq, chunk=chunk, final=final, commit_time=commit_time,
                        hlc=hlc, deps=deps or {})
    table_index: dict[str, int] = {}
    for change in changes:
        idx = table_index.get(change.table)
        if idx is None:
            shape = shapes[change.table]
            idx = table_index[change.table] = len(frame.tables)
            frame.tables.add(name=shape.name, columns=shape.columns, key_indexes=shape.key_indexes)
        rc = frame.changes.add(table_index=idx, op=_OP_TO_PB[change.op])
        if change.new is not None:
            _fill(change.new, rc.new_values)
        if change.old is not None:
            _fill(change.old, rc.old_values)
    return frame


def build_raw_frame(
    origin: str,
    seq: int,
    chunk: int,
    final: bool,
    commit_time: float,
    runs: Iterable[tuple[TableShape, int, bytes]],
    hlc: int = 0,
    deps: dict[str, int] | None = None,
) -> pb.TxnFrame:
    """A frame of INSERTs only, as COPY text runs (node.rawcopy.encode_rows):
    ``runs`` is (shape, rows, copy_text) in capture order. Each table appears
    once in ``tables``, with its column kinds, however many runs it has."""
    frame = pb.TxnFrame(origin=origin, seq=seq, chunk=chunk, final=final, commit_time=commit_time,
                        hlc=hlc, deps=deps or {})
    table_index: dict[str, int] = {}
    for shape, rows, copy_text in runs:
        idx = table_index.get(shape.name)
        if idx is None:
            if len(shape.kinds) != len(shape.columns):
                raise ValueError(f"table {shape.name}: a raw frame needs every column's kind")
            idx = table_index[shape.name] = len(frame.tables)
            frame.tables.add(name=shape.name, columns=shape.columns, key_indexes=shape.key_indexes,
                             column_kinds=shape.kinds)
        frame.raw_inserts.add(table_index=idx, rows=rows, copy_text=copy_text)
    return frame


def frame_rows(frame: pb.TxnFrame) -> int:
    """How many row changes a frame carries, as Values or as raw insert runs."""
    return len(frame.changes) + sum(run.rows for run in frame.raw_inserts)


MAX_PEER_TEXT = 200


def escape_peer_text(text: object, limit: int = MAX_PEER_TEXT) -> str:
    """A peer's string made safe for one log line or error message: control
    and other unprintable characters escaped (no forged log lines, no
    terminal escapes), cut to ``limit`` characters. Escaping twice changes
    nothing more, so a message built from escaped parts may be escaped again."""
    s = text if isinstance(text, str) else repr(text)
    if len(s) <= limit and s.isprintable():
        return s
    out = []
    for ch in s[:limit]:
        if ch.isprintable():
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    if len(s) > limit:
        out.append(f"...(+{len(s) - limit} chars)")
    return "".join(out)


def check_frame(frame: pb.TxnFrame, known_tables: Iterable[str] | None = None) -> None:
    """Reject a structurally invalid frame from a peer (ProtocolError)."""
    name = f"frame {escape_peer_text(frame.origin, 60)}/{frame.seq}"
    if not frame.origin or frame.seq < 1:
        raise ProtocolError(f"frame without origin or with seq {frame.seq}")
    allowed = set(known_tables) if known_tables is not None else None
    seen = set()
    for t in frame.tables:
        if allowed is not None and t.name not in allowed:
            raise ProtocolError(f"{name} names unknown table '{escape_peer_text(t.name, 60)}'")
        if t.name in seen:
            raise ProtocolError(f"{name} names table '{escape_peer_text(t.name, 60)}' twice")
        seen.add(t.name)
        if not t.key_indexes or any(i >= len(t.columns) for i in t.key_indexes):
            raise ProtocolError(f"{name}: bad key for table '{escape_peer_text(t.name, 60)}'")
    for c in frame.changes:
        if c.table_index >= len(frame.tables):
            raise ProtocolError(f"{name}: change names no table")
        width = len(frame.tables[c.table_index].columns)
        if c.op == pb.RowChange.INSERT:
            ok = len(c.new_values) == width and not c.old_values
        elif c.op == pb.RowChange.UPDATE:
            ok = len(c.new_values) == width and len(c.old_values) == width
        elif c.op == pb.RowChange.DELETE:
            ok = len(c.old_values) == width and not c.new_values
        else:
            ok = False
        if not ok:
            raise ProtocolError(f"{name}: malformed {c.op} change")
    if frame.raw_inserts:
        _check_raw_inserts(frame, name)


def _check_raw_inserts(frame: pb.TxnFrame, name: str) -> None:
    if frame.changes:
        raise ProtocolError(f"{name} carries both changes and raw inserts")
    for number, run in enumerate(frame.raw_inserts):
        if run.table_index >= len(frame.tables):
            raise ProtocolError(f"{name}: raw insert run {number} names no table")
        table = frame.tables[run.table_index]
        table_name = escape_peer_text(table.name, 60)
        if len(table.column_kinds) != len(table.columns):
            raise ProtocolError(f"{name}: table '{table_name}' has {len(table.columns)} columns "
                                f"but {len(table.column_kinds)} column kinds")
        for i, kind in enumerate(table.column_kinds):
            if kind not in KINDS:
                raise ProtocolError(f"{name}: column {i} of table '{table_name}' has unknown "
                                    f"kind '{escape_peer_text(kind, 30)}'")
        try:
            check_raw(run.copy_text, run.rows, len(table.columns))
        except ProtocolError as e:
            raise ProtocolError(f"{name}, table '{table_name}', run {number}: {e}") from None


def shapes_to_pb(shapes: Iterable[TableShape]) -> list[pb.TableShape]:
    """Table shapes with column kinds, as sent to compare schemas between campuses."""
    return [pb.TableShape(name=s.name, columns=s.columns, key_indexes=s.key_indexes,
                          column_kinds=s.kinds) for s in shapes]


def shapes_from_pb(shapes: Iterable[pb.TableShape]) -> list[TableShape]:
    return [TableShape(t.name, tuple(t.columns), tuple(t.key_indexes), tuple(t.column_kinds))
            for t in shapes]


def decode_changes(frame: pb.TxnFrame) -> tuple[list[TableShape], list[Change]]:
    if frame.raw_inserts:
        return _decode_raw_inserts(frame)
    shapes = [TableShape(t.name, tuple(t.columns), tuple(t.key_indexes)) for t in frame.tables]
    changes = []
    for c in frame.changes:
        changes.append(
            Change(
                table=shapes[c.table_index].name,
                op=_PB_TO_OP[c.op],
                new=tuple([from_value(v) for v in c.new_values]) if c.new_values else None,
                old=tuple([from_value(v) for v in c.old_values]) if c.old_values else None,
            )
        )
    return shapes, changes


def _decode_raw_inserts(frame: pb.TxnFrame) -> tuple[list[TableShape], list[Change]]:
    if frame.changes:
        raise ProtocolError("frame carries both changes and raw inserts")
    shapes = shapes_from_pb(frame.tables)
    changes: list[Change] = []
    insert = Op.INSERT
    for run in frame.raw_inserts:
        if run.table_index >= len(shapes):
            raise ProtocolError("raw insert run names no table")
        shape = shapes[run.table_index]
        if len(shape.kinds) != len(shape.columns):
            raise ProtocolError(f"table '{escape_peer_text(shape.name, 60)}' has "
                                f"{len(shape.columns)} columns but {len(shape.kinds)} kinds")
        table = shape.name
        try:
            rows = decode_rows(run.copy_text, shape.kinds, run.rows)
        except ProtocolError as e:
            raise ProtocolError(f"table '{escape_peer_text(table, 60)}': {e}") from None
        changes.extend([Change(table, insert, row) for row in rows])
    return shapes, changes


class RowSetDigest:
    """An order-independent digest of a set of rows.

    Each row's canonical encoding is hashed with SHA-256 and the hashes are
    summed modulo 2**256, so engines may scan in any order (their collations
    differ) and equal row sets still give equal digests.
    """

    __slots__ = ("rows", "_acc")

    def __init__(self) -> None:
        self.rows = 0
        self._acc = 0

    def add(self, row: Sequence[Any]) -> None:
        h = hashlib.sha256()
        for v in row:
            value = pb.Value()
            to_value(v, value)
            data = value.SerializeToString(deterministic=True)
            h.update(len(data).to_bytes(4, "big"))
            h.update(data)
        self._acc = (self._acc + int.from_bytes(h.digest(), "big")) % (1 << 256)
        self.rows += 1

    def hexdigest(self) -> str:
        return self._acc.to_bytes(32, "big").hex()
