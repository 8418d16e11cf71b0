"""PostgreSQL text-format values <-> canonical Python values, by type OID."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from node.engines.canonical import canonical_json
from node.model import Json
from node.rawcopy import parse_bytea, parse_timestamp


def _bool(s: str) -> bool:
    return s == "t"


# bytea (hex) and timestamps read as COPY text rows read them (node.rawcopy)
_bytea = parse_bytea
_timestamptz = parse_timestamp


PARSERS: dict[int, Callable[[str], Any]] = {
    16: _bool,
    17: _bytea,
    20: int, 21: int, 23: int, 26: int,
    700: float, 701: float,
    1700: Decimal,
    25: str, 1042: str, 1043: str, 19: str,
    1114: _timestamptz, 1184: _timestamptz,
    1082: dt.date.fromisoformat,
    2950: uuid.UUID,
    114: canonical_json, 3802: canonical_json,
}

SUPPORTED_TYPES = {
    "boolean", "bytea", "bigint", "smallint", "integer", "oid", "real", "double precision",
    "numeric", "text", "character", "character varying", "name",
    "timestamp without time zone", "timestamp with time zone", "date", "uuid", "json", "jsonb",
}


def parse(type_oid: int, text: str | None) -> Any:
    if text is None:
        return None
    parser = PARSERS.get(type_oid, str)
    return parser(text)


def to_pg(value: Any) -> Any:
    """A canonical value as a psycopg parameter."""
    if isinstance(value, Json):
        return value.text
    return value


def canonical_row(kinds: Iterable[str], row: Iterable[Any]) -> tuple[Any, ...]:
    """A row as psycopg loaded it, as canonical values (JSON by column kind)."""
    out = []
    for kind, v in zip(kinds, row, strict=True):
        if v is not None and kind == "json":  # engine connections load it as text
            v = canonical_json(v) if isinstance(v, str) else Json(
                json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False))
        elif isinstance(v, dt.datetime) and v.tzinfo is None:
            v = v.replace(tzinfo=dt.UTC)
        elif isinstance(v, dt.datetime):
            v = v.astimezone(dt.UTC)
        elif isinstance(v, memoryview):
            v = bytes(v)
        out.append(v)
    return tuple(out)
