"""The ApplyTarget contract, on every engine: foreign changes of every type
applied through the wire model, key changes and deletes, and the applied
vector committed with the rows or not at all."""

from __future__ import annotations

from typing import Any

import pytest

from node.model import Change, Op
from tests.contract.campuses import Campus, MariaDBCampus, PostgresCampus, SQLiteCampus
from tests.contract.typed import apply, wire


class ApplyContract(Campus):
    def test_every_type_round_trips_through_apply_and_the_wire(self, engine: Any) -> None:
        changes = [Change("typed", Op.INSERT, new=r) for r in self.typed_rows()]
        apply(engine, wire(engine, changes))
        assert sorted(engine.inspect.rows("typed"), key=lambda r: r[0]) == self.typed_rows()

    def test_vector_commits_with_the_rows_or_not_at_all(self, engine: Any) -> None:
        apply(engine, [Change("kv", Op.INSERT, new=("k1", 1))], "x", 1)
        with pytest.raises(RuntimeError), engine.target.apply_session() as s:
            s.apply([Change("kv", Op.INSERT, new=("k2", 2))])
            s.advance("x", 2)
            raise RuntimeError("crash")
        assert engine.target.applied_vector() == {"x": 1}
        assert engine.inspect.rows("kv") == [("k1", 1)]

    def test_key_change_and_delete_apply(self, engine: Any) -> None:
        apply(engine, [Change("kv", Op.INSERT, new=("a", 1)),
                       Change("kv", Op.UPDATE, new=("b", 1), old=("a", 1)),
                       Change("kv", Op.INSERT, new=("c", 3)),
                       Change("kv", Op.DELETE, old=("c", 3))])
        assert engine.inspect.rows("kv") == [("b", 1)]


class TestSQLiteApply(SQLiteCampus, ApplyContract):
    pass


class TestPostgresApply(PostgresCampus, ApplyContract):
    pass


class TestMariaDBApply(MariaDBCampus, ApplyContract):
    pass
