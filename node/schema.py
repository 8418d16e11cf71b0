"""Canonical column kinds, and the schema comparison done when two campuses connect."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from node.model import TableShape
from ringsync.errors import SchemaMismatch

PG_KINDS = {
    16: "bool", 17: "bytes", 20: "int", 21: "int", 23: "int", 26: "int",
    700: "float", 701: "float", 1700: "decimal", 25: "text", 1042: "text", 1043: "text",
    19: "text", 1114: "timestamp", 1184: "timestamp", 1082: "date", 2950: "uuid",
    114: "json", 3802: "json",
}


def sqlite_kind(declared: str) -> str:
    """The canonical kind of a SQLite column, from its declared type (affinity rules)."""
    t = declared.upper()
    for needle, kind in (("BOOL", "bool"), ("TIMESTAMP", "timestamp"), ("DATETIME", "timestamp"),
                         ("UUID", "uuid"), ("JSON", "json")):
        if needle in t:
            return kind
    if t == "DATE":
        return "date"
    if "DEC" in t or "NUMERIC" in t:
        return "decimal"
    if "INT" in t:
        return "int"
    if any(s in t for s in ("CHAR", "CLOB", "TEXT")):
        return "text"
    if "BLOB" in t or not t or "BYTEA" in t:
        return "bytes"
    if any(s in t for s in ("REAL", "FLOA", "DOUB")):
        return "float"
    return "decimal"


def compare(local_campus: str, local: Mapping[str, TableShape],
            peer_campus: str, peer: Sequence[TableShape]) -> None:
    """Raise SchemaMismatch naming both campuses if any replicated table differs."""
    problems = []
    theirs = {s.name: s for s in peer}
    for name, mine in local.items():
        other = theirs.get(name)
        if other is None:
            problems.append(f"table {name!r} is replicated at {local_campus} but not at "
                            f"{peer_campus}")
            continue
        missing = [c for c in mine.columns if c not in other.columns]
        extra = [c for c in other.columns if c not in mine.columns]
        if missing:
            problems.append(f"{name}: columns {missing} exist at {local_campus} but not at "
                            f"{peer_campus}")
        if extra:
            problems.append(f"{name}: columns {extra} exist at {peer_campus} but not at "
                            f"{local_campus}")
        if set(mine.key_columns) != set(other.key_columns):
            problems.append(f"{name}: primary key is {list(mine.key_columns)} at {local_campus} "
                            f"but {list(other.key_columns)} at {peer_campus}")
        if mine.kinds and other.kinds:
            kinds = dict(zip(other.columns, other.kinds, strict=False))
            for col, kind in zip(mine.columns, mine.kinds, strict=False):
                theirs_kind = kinds.get(col)
                if theirs_kind is not None and theirs_kind != kind:
                    problems.append(f"{name}.{col} is {kind} at {local_campus} but "
                                    f"{theirs_kind} at {peer_campus}")
    for name in theirs:
        if name not in local:
            problems.append(f"table {name!r} is replicated at {peer_campus} but not at "
                            f"{local_campus}")
    if problems:
        raise SchemaMismatch(
            f"schemas of {peer_campus} and {local_campus} differ: " + "; ".join(problems)
            + ". Align the tables (same columns, compatible types, same primary key) on both "
              "campuses and restart the nodes."
        )
