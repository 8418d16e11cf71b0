"""The CaptureSource contract, on every engine: the campus's own committed
transactions, whole and in commit order, every type, never what apply wrote,
and commit positions capture can be asked to reach."""

from __future__ import annotations

import time
from typing import Any

from node.model import Change, Op
from tests.contract.campuses import (
    TYPED_COLUMNS,
    Campus,
    MariaDBCampus,
    PostgresCampus,
    SQLiteCampus,
)
from tests.contract.typed import apply, wire


class CaptureContract(Campus):
    def test_every_type_round_trips_through_capture(self, engine: Any) -> None:
        self.app_insert("typed", len(TYPED_COLUMNS), self.typed_rows())
        changes = [c for chunk in self.capture_all(engine) for c in chunk.changes]
        assert [c.new for c in wire(engine, changes)] == self.typed_rows()

    def test_capture_sees_inserts_updates_deletes_with_full_images(self, engine: Any) -> None:
        self.app_write("INSERT INTO kv VALUES ('a', 1)", "INSERT INTO kv VALUES ('b', 2)")
        self.app_write("UPDATE kv SET v = 10 WHERE k = 'a'", "DELETE FROM kv WHERE k = 'b'")
        changes = [c for chunk in self.capture_all(engine) for c in chunk.changes]
        assert [(c.op, c.new, c.old) for c in changes] == [
            (Op.INSERT, ("a", 1), None), (Op.INSERT, ("b", 2), None),
            (Op.UPDATE, ("a", 10), ("a", 1)), (Op.DELETE, None, ("b", 2)),
        ]

    def test_applied_rows_are_not_captured(self, engine: Any) -> None:
        apply(engine, [Change("kv", Op.INSERT, new=("z", 1))])
        self.app_write("INSERT INTO kv VALUES ('local', 2)")
        changes = [c for chunk in self.capture_all(engine) for c in chunk.changes]
        assert [c.new for c in changes] == [("local", 2)]

    def test_commit_position_covers_every_committed_transaction(self, engine: Any) -> None:
        self.app_write("INSERT INTO kv VALUES ('a', 1)")
        self.app_write("UPDATE kv SET v = 2 WHERE k = 'a'")
        chunks = self.capture_all(engine)
        assert len(chunks) >= 1
        last = max(c.position for c in chunks)
        position = engine.source.commit_position()
        assert position >= last
        # capture confirms it has passed the position with nothing more to capture
        deadline = time.monotonic() + 10
        while engine.source.captured_through() < position and time.monotonic() < deadline:
            assert engine.source.capture(last, 1000) == []
        assert engine.source.captured_through() >= position


class TestSQLiteCapture(SQLiteCampus, CaptureContract):
    pass


class TestPostgresCapture(PostgresCampus, CaptureContract):
    pass


class TestMariaDBCapture(MariaDBCampus, CaptureContract):
    pass
