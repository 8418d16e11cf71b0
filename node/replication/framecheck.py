"""Frames from peers are checked whole before they are journaled or forwarded.

A frame is journaled, forwarded round the ring and applied at every campus,
so anything a campus cannot apply must be refused at the door, not found by
every applier later. ``FrameChecker`` decodes every value of a received
frame and checks it against the local column it will be applied to (the
column exists, the value's kind fits the column's kind, ranges, lengths,
finiteness), and checks the frame's own fields (origin is a ring member,
seq / hlc / commit_time / deps within what the engines can store).

What one campus's database alone refuses (a value too long for a
``varchar(10)`` at one PostgreSQL campus) is not decided here: that is a
dead letter at that campus (node.conflicts.deadletter).

Refusals raise ``FrameRefused`` (a ProtocolError: gRPC INVALID_ARGUMENT),
are counted by kind in ``Refusals`` (status ``refused``) and logged once per
peer and kind. A duplicate that differs from the journaled frame is a forged
or corrupted frame: refused and raised as an alert (``check_duplicates``).
Everything a peer sends is escaped (``escape_peer_text``) before it reaches
a log line, an error message or status.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation

from node.codec import EPOCH, EPOCH_DATE, MAX_PEER_TEXT, check_frame, escape_peer_text
from node.model import TableShape
from node.replication.rawcheck import raw_refusal
from ringsync.config import ClusterConfig
from ringsync.errors import ProtocolError
from ringsync.v1 import control_pb2 as cpb
from ringsync.v1 import values_pb2 as pb

log = logging.getLogger(__name__)

INT64_MAX = (1 << 63) - 1  # SQLite INTEGER and PostgreSQL bigint hold no more
# commit_time is Unix seconds: before 10000-01-01 (status turns it into dates).
MAX_COMMIT_TIME = 253_402_300_800.0
MAX_ALERTS = 20
MAX_PLANS = 64


def is_ring_origin(cluster: ClusterConfig, origin: str) -> bool:
    """May transactions of ``origin`` enter this ring? Its members' and its
    leaves' (a leaf's own frames come up only from the leaf itself: the
    receiver checks that)."""
    return origin in cluster.origins


class FrameRefused(ProtocolError):
    """A peer's message or frame that must not be journaled.

    ``kind`` names the class of refusal (status ``refused.by_kind``);
    ``alert`` is set when an operator must look (a forged frame)."""

    def __init__(self, kind: str, message: str, alert: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.alert = alert


# -- values ------------------------------------------------------------------

_MIN_MICROS = (dt.datetime.min.replace(tzinfo=dt.UTC) - EPOCH) // dt.timedelta(microseconds=1)
_MAX_MICROS = (dt.datetime.max.replace(tzinfo=dt.UTC) - EPOCH) // dt.timedelta(microseconds=1)
_MIN_DAYS = (dt.date.min - EPOCH_DATE).days
_MAX_DAYS = (dt.date.max - EPOCH_DATE).days
# PostgreSQL numeric: up to 131072 digits before the point, 16383 after.
_DECIMAL_MAX_ADJUSTED = 131_071
_DECIMAL_MIN_EXPONENT = -16_383

# Value kinds a column of each canonical kind may take. SQLite stores any
# of int/float/text/bytes in an INTEGER, TEXT or untyped column (and a
# SQLite campus captures what it holds), so those stay open; what only one
# campus refuses is a dead letter there.
_LOOSE = frozenset({"int_value", "float_value", "text_value", "bytes_value"})
ALLOWED_KINDS: dict[str, frozenset[str]] = {
    "int": _LOOSE, "text": _LOOSE, "bytes": _LOOSE,
    "float": frozenset({"float_value", "int_value"}),
    "decimal": frozenset({"decimal_value", "int_value"}),
    "bool": frozenset({"bool_value"}),
    "timestamp": frozenset({"timestamp_micros"}),
    "date": frozenset({"date_days"}),
    "uuid": frozenset({"uuid_value"}),
    "json": frozenset({"json_value"}),
}
_ANY_KIND = frozenset(f.name for f in pb.Value.DESCRIPTOR.oneofs_by_name["kind"].fields)


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _bad_float(v: pb.Value) -> str:
    return "NaN cannot be stored (SQLite stores it as NULL)" if math.isnan(v.float_value) else ""


def _bad_timestamp(v: pb.Value) -> str:
    if _MIN_MICROS <= v.timestamp_micros <= _MAX_MICROS:
        return ""
    return f"timestamp_micros {v.timestamp_micros} is outside years 1-9999"


def _bad_date(v: pb.Value) -> str:
    if _MIN_DAYS <= v.date_days <= _MAX_DAYS:
        return ""
    return f"date_days {v.date_days} is outside years 1-9999"


def _bad_uuid(v: pb.Value) -> str:
    n = len(v.uuid_value)
    return "" if n == 16 else f"uuid of {n} bytes (a uuid is 16)"


def _bad_decimal(v: pb.Value) -> str:
    text = v.decimal_value
    try:
        d = Decimal(text)
    except (InvalidOperation, ValueError):
        return f"malformed decimal '{escape_peer_text(text, 40)}'"
    if not d.is_finite():
        return f"non-finite decimal '{escape_peer_text(text, 40)}'"
    if str(d) != text:
        return f"decimal '{escape_peer_text(text, 40)}' is not in canonical form"
    exponent = d.as_tuple().exponent
    assert isinstance(exponent, int)
    if d.adjusted() > _DECIMAL_MAX_ADJUSTED or exponent < _DECIMAL_MIN_EXPONENT:
        return f"decimal '{escape_peer_text(text, 40)}' is beyond what PostgreSQL numeric holds"
    return ""


def _bad_json(v: pb.Value) -> str:
    try:
        json.loads(v.json_value, parse_constant=_no_constant)
    except (ValueError, RecursionError) as e:
        return f"malformed JSON ({escape_peer_text(str(e), 60)})"
    return ""


_VALUE_CHECKS: dict[str, Callable[[pb.Value], str]] = {
    "float_value": _bad_float, "timestamp_micros": _bad_timestamp, "date_days": _bad_date,
    "uuid_value": _bad_uuid, "decimal_value": _bad_decimal, "json_value": _bad_json,
}


class _TablePlan:
    """How to check the values of one frame table: per frame column, the
    value kinds allowed, and whether it is a key column."""

    __slots__ = ("name", "columns", "allowed", "key")

    def __init__(self, name: str, columns: Sequence[str], allowed: list[frozenset[str]],
                 key: list[bool]) -> None:
        self.name, self.columns, self.allowed, self.key = name, columns, allowed, key


class FrameChecker:
    """Checks received frames against this campus's tables and ring."""

    def __init__(self, campus: str, shapes: Mapping[str, TableShape],
                 is_origin: Callable[[str], bool]) -> None:
        self.campus = campus
        self.shapes = dict(shapes)
        self.is_origin = is_origin
        # Plans of the frame table shapes seen (every frame of a stream
        # repeats them); only good shapes, and a bounded number of them.
        self._plans: dict[tuple[str, tuple[str, ...], tuple[int, ...]], _TablePlan] = {}

    def check(self, frame: pb.TxnFrame, peer: str = "") -> None:
        """Raise FrameRefused unless every field and value of ``frame`` can be
        journaled here and applied at every campus."""
        where = f"frame {escape_peer_text(frame.origin, 60)}/{frame.seq}"
        if peer:
            where += f" from {escape_peer_text(peer, 60)}"
        for table in frame.tables:
            if table.name not in self.shapes:
                raise FrameRefused("bad_shape", f"{where}: names table "
                                   f"'{escape_peer_text(table.name, 60)}', which this campus "
                                   f"does not replicate; make cluster.tables the same everywhere")
        try:
            check_frame(frame)
        except ProtocolError as e:
            raise FrameRefused("malformed", f"{where}: {e}") from None
        if not self.is_origin(frame.origin):
            raise FrameRefused("unknown_origin", f"{where}: origin "
                               f"'{escape_peer_text(frame.origin, 60)}' is not a campus of "
                               f"this ring; frames are only taken from ring members' origins")
        self._check_fields(frame, where)
        plans = [self._plan_of(t, where) for t in frame.tables]
        if frame.raw_inserts:
            refusal = raw_refusal(frame, self.shapes)
            if refusal is not None:
                raise FrameRefused(refusal[0], f"{where}: {refusal[1]}")
        for n, change in enumerate(frame.changes):
            plan = plans[change.table_index]
            for values in (change.new_values, change.old_values):
                for i, value in enumerate(values):
                    kind = value.WhichOneof("kind")
                    problem = ""
                    if kind is None:
                        problem = "a value without a kind"
                    elif kind == "is_null":
                        if plan.key[i]:
                            problem = "NULL in a primary-key column"
                    elif kind not in plan.allowed[i]:
                        problem = f"a {kind} value does not fit this column"
                    else:
                        check = _VALUE_CHECKS.get(kind)
                        problem = check(value) if check is not None else ""
                    if problem:
                        raise FrameRefused("bad_value", f"{where}: change {n}, "
                                           f"{plan.name}.{plan.columns[i]}: {problem}")

    def _check_fields(self, frame: pb.TxnFrame, where: str) -> None:
        problems = []
        if frame.seq > INT64_MAX:
            problems.append(f"seq {frame.seq} > 2^63-1")
        if frame.hlc > INT64_MAX:
            problems.append(f"hlc {frame.hlc} > 2^63-1")
        t = frame.commit_time
        if not math.isfinite(t) or not 0 <= t < MAX_COMMIT_TIME:
            problems.append(f"commit_time {t!r} is not a time (finite Unix seconds, "
                            f"before year 10000)")
        for label, vector in (("deps", frame.deps), ("set_epochs", frame.set_epochs)):
            for name, n in vector.items():
                if not name or not name.isprintable() or len(name) > MAX_PEER_TEXT:
                    problems.append(f"{label} names '{escape_peer_text(name, 60)}'")
                elif n > INT64_MAX:
                    problems.append(f"{label}[{name}] {n} > 2^63-1")
        if problems:
            raise FrameRefused("out_of_range", f"{where}: " + "; ".join(problems[:3]))

    def _plan_of(self, table: pb.TableShape, where: str) -> _TablePlan:
        key = (table.name, tuple(table.columns), tuple(table.key_indexes))
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plan(table, where)
            if len(self._plans) >= MAX_PLANS:
                self._plans.clear()
            self._plans[key] = plan
        return plan

    def _plan(self, table: pb.TableShape, where: str) -> _TablePlan:
        local = self.shapes[table.name]  # check refused unknown tables
        columns = list(table.columns)
        problems = []
        if len(set(columns)) != len(columns):
            problems.append("names a column twice")
        unknown = [c for c in columns if c not in local.columns]
        missing = [c for c in local.columns if c not in columns]
        if unknown:
            problems.append(f"has columns this campus lacks: "
                            f"{escape_peer_text(unknown, 120)}")
        if missing:
            problems.append(f"lacks columns {missing}")
        key = {columns[i] for i in table.key_indexes}
        if not problems and (key != set(local.key_columns)
                             or len(table.key_indexes) != len(local.key_indexes)):
            problems.append(f"has key {sorted(key)}, this campus {list(local.key_columns)}")
        if problems:
            raise FrameRefused("bad_shape", f"{where}: table {table.name}: "
                               + "; ".join(problems) + " (align the schemas)")
        kinds = dict(zip(local.columns, local.kinds, strict=False))
        allowed = [ALLOWED_KINDS.get(kinds.get(c, ""), _ANY_KIND) for c in columns]
        return _TablePlan(table.name, columns, allowed, [c in key for c in columns])


def check_hello_tables(tables: Iterable[pb.TableShape]) -> None:
    """A Hello's table shapes must be well formed before they are compared."""
    for t in tables:
        name = escape_peer_text(t.name, 60)
        if not t.key_indexes or any(i >= len(t.columns) for i in t.key_indexes):
            raise FrameRefused("bad_hello", f"Hello: table '{name}' has key indexes "
                               f"{list(t.key_indexes)[:8]} beyond its {len(t.columns)} columns")
        if t.column_kinds and len(t.column_kinds) != len(t.columns):
            raise FrameRefused("bad_hello", f"Hello: table '{name}' has "
                               f"{len(t.column_kinds)} column kinds for {len(t.columns)} "
                               f"columns")


# -- duplicates --------------------------------------------------------------

def frame_digest(body: bytes) -> bytes:
    """The digest the journal keeps of each frame body (duplicate checks)."""
    return hashlib.sha256(body).digest()[:16]


def check_duplicates(conn: sqlite3.Connection, dups: Sequence[tuple[pb.TxnFrame, bytes]],
                     own: str, pending: Mapping[tuple[str, int, int], bytes]) -> None:
    """Raise FrameRefused (forged_duplicate, with an alert) if a re-delivered
    frame differs from the one journaled (or from one earlier in the same
    batch, ``pending``). One indexed read per duplicate; the body is compared
    only for frames journaled before digests were kept. A frame already
    pruned (every campus held it) cannot be compared."""
    for frame, body in dups:
        key = (frame.origin, frame.seq, frame.chunk)
        earlier = pending.get(key)
        row = None if earlier is not None else conn.execute(
            "SELECT digest FROM frames WHERE origin = ? AND seq = ? AND chunk = ?",
            key).fetchone()
        if earlier is not None:
            same = earlier == body
        elif row is None:
            continue
        elif row[0] is not None:
            same = row[0] == frame_digest(body)
        else:
            same = bool(conn.execute("SELECT body = ? FROM frames WHERE origin = ? AND "
                                     "seq = ? AND chunk = ?", (body, *key)).fetchone()[0])
        if not same:
            name = f"{escape_peer_text(frame.origin, 60)}/{frame.seq} chunk {frame.chunk}"
            held = "this campus's own journaled frame" if frame.origin == own else (
                "the frame journaled here")
            raise FrameRefused(
                "forged_duplicate",
                f"frame {name} differs from {held}: a forged or corrupted frame; refused",
                alert=f"forged or corrupted frame {name}: differs from {held}; campuses may "
                      f"hold different versions of this transaction (compare them with "
                      f"`ringsync ctl verify`)")


# -- counting ----------------------------------------------------------------

class Refusals:
    """Frames and messages refused from peers: counts by kind, the last
    reason, and alerts; each (peer, kind) is logged once, not per message."""

    def __init__(self) -> None:
        self.by_kind: dict[str, int] = {}
        self.total = 0
        self.last = ""
        self.alerts: list[str] = []  # the newest MAX_ALERTS
        self.alerts_dropped = 0
        self._logged: set[tuple[str, str]] = set()
        self._alerted: set[str] = set()

    def record(self, peer: str, error: ProtocolError) -> None:
        kind = error.kind if isinstance(error, FrameRefused) else "malformed"
        peer = escape_peer_text(peer or "unknown peer", 60)
        reason = escape_peer_text(str(error), 400)
        self.by_kind[kind] = self.by_kind.get(kind, 0) + 1
        self.total += 1
        self.last = f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {peer}: {reason}"
        if (peer, kind) not in self._logged:
            self._logged.add((peer, kind))
            log.warning("refused %s from %s (INVALID_ARGUMENT): %s; further %s refusals from "
                        "%s are counted in status `refused`, not logged", kind, peer, reason,
                        kind, peer)
        if isinstance(error, FrameRefused) and error.alert:
            self.alert(f"{error.alert} (sent by {peer})", key=error.alert)

    def alert(self, text: str, key: str = "") -> None:
        key = key or text
        if key in self._alerted:
            return
        self._alerted.add(key)
        log.error("ALERT: %s", text)
        self.alerts.append(escape_peer_text(text, 400))
        if len(self.alerts) > MAX_ALERTS:
            self.alerts.pop(0)
            self.alerts_dropped += 1

    def alert_lines(self) -> list[str]:
        """The alerts for status, newest last."""
        if not self.alerts_dropped:
            return list(self.alerts)
        return [f"{self.alerts_dropped} older alert(s) of refused frames not shown (see the "
                f"log)", *self.alerts]

    def to_pb(self) -> cpb.RefusedFrames:
        return cpb.RefusedFrames(by_kind=self.by_kind, total=self.total, last=self.last)
