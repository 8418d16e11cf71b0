"""Schema comparison between campuses names both campuses and the difference."""

import pytest

from node.model import TableShape
from node.schema import compare, sqlite_kind
from ringsync.errors import SchemaMismatch

T = TableShape("lab_results", ("id", "value", "unit"), (0,), ("text", "float", "text"))


def test_identical_schemas_pass() -> None:
    compare("a", {"lab_results": T}, "b", [T])


@pytest.mark.parametrize("peer,fragment", [
    ([], "'lab_results' is replicated at a but not at b"),
    ([TableShape("lab_results", ("id", "value"), (0,), ("text", "float"))],
     "columns ['unit'] exist at a but not at b"),
    ([TableShape("lab_results", ("id", "value", "unit"), (0,), ("text", "text", "text"))],
     "lab_results.value is float at a but text at b"),
    ([TableShape("lab_results", ("id", "value", "unit"), (2,), ("text", "float", "text"))],
     "primary key is ['id'] at a but ['unit'] at b"),
])
def test_differences_are_reported(peer, fragment) -> None:
    with pytest.raises(SchemaMismatch) as e:
        compare("a", {"lab_results": T}, "b", peer)
    assert fragment in str(e.value) and "schemas of b and a differ" in str(e.value)


@pytest.mark.parametrize("declared,kind", [
    ("INTEGER", "int"), ("bigint", "int"), ("TEXT", "text"), ("VARCHAR(20)", "text"),
    ("REAL", "float"), ("DOUBLE PRECISION", "float"), ("", "bytes"), ("BLOB", "bytes"),
    ("NUMERIC(10,2)", "decimal"), ("BOOLEAN", "bool"), ("TIMESTAMPTZ", "timestamp"),
    ("DATE", "date"), ("UUID", "uuid"), ("JSONB", "json"),
])
def test_sqlite_kinds_follow_affinity(declared: str, kind: str) -> None:
    assert sqlite_kind(declared) == kind
