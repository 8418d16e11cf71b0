"""SQLite storage values <-> canonical values, by a column's canonical kind.

SQLite stores five classes (NULL, INTEGER, REAL, TEXT, BLOB); the declared
type (node.schema.sqlite_kind) says what a column means. Timestamps are
stored as ISO 8601 text in UTC with microseconds, dates as ISO text, UUIDs as
text, JSON as canonical text, booleans as 0/1, and exact decimals as text:
declare them with TEXT affinity (e.g. ``DECIMAL_TEXT``) so SQLite keeps every
digit; a plain NUMERIC column keeps only 15 significant digits.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from node.engines.canonical import canonical_json
from node.model import Json
from ringsync.errors import EngineError


def _timestamp(v: Any) -> dt.datetime:
    value = dt.datetime.fromisoformat(str(v).replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def _uuid(v: Any) -> uuid.UUID:
    return uuid.UUID(bytes=v) if isinstance(v, bytes) else uuid.UUID(str(v))


READERS: dict[str, Callable[[Any], Any]] = {
    "bool": lambda v: bool(v),
    "timestamp": _timestamp,
    "date": lambda v: dt.date.fromisoformat(str(v)),
    "uuid": _uuid,
    "json": lambda v: canonical_json(v if isinstance(v, str) else str(v)),
    "decimal": lambda v: Decimal(str(v)) if not isinstance(v, float) else Decimal(repr(v)),
    "float": lambda v: float(v),
}


def from_sqlite(kinds: Sequence[str], row: Sequence[Any]) -> tuple[Any, ...]:
    """A stored row as canonical values."""
    if not kinds:
        return tuple(row)
    out = []
    for kind, v in zip(kinds, row, strict=True):
        reader = READERS.get(kind)
        out.append(v if v is None or reader is None else reader(v))
    return tuple(out)


def to_sqlite(v: Any) -> Any:
    """A canonical value as SQLite stores it."""
    if v is None or isinstance(v, int | float | str | bytes):
        return int(v) if isinstance(v, bool) else v
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, dt.datetime):
        return v.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, Json):
        return v.text
    raise EngineError(f"SQLite cannot store a value of type {type(v).__name__}")
