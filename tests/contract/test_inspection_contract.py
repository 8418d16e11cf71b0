"""The Inspection contract, on every engine: checksums that depend on content
only (the same on every engine), and the snapshot a joining campus copies,
split from capture exactly at its position."""

from __future__ import annotations

from typing import Any

from node.model import Change, Json, Op
from tests.contract.campuses import (
    TYPED_COLUMNS,
    Campus,
    MariaDBCampus,
    PostgresCampus,
    SQLiteCampus,
)
from tests.contract.typed import apply, fresh_sqlite_sums


class InspectionContract(Campus):
    def test_checksum_depends_on_content_only(self, engine: Any) -> None:
        apply(engine, [Change("typed", Op.INSERT, new=r) for r in self.typed_rows()])
        sums, applied = engine.inspect.checksums(list(self.TABLES))
        assert sums["typed"][0] == len(self.typed_rows()) and applied == {"x": 1}
        other = fresh_sqlite_sums(self.typed_rows())
        assert sums["typed"] == other

    def test_snapshot_splits_local_transactions_exactly_at_its_position(
            self, engine: Any) -> None:
        self.app_write("INSERT INTO kv VALUES ('before', 1)")
        apply(engine, [Change("kv", Op.INSERT, new=("foreign", 9))], "x", 4)
        with engine.inspect.snapshot() as snap:
            self.app_write("INSERT INTO kv VALUES ('after', 2)")
            rows = sorted(r for batch in snap.batches("kv", 1) for r in batch)
            assert rows == [("before", 1), ("foreign", 9)]
            assert snap.applied == {"x": 4}
            assert snap.row_counts() == {"typed": 0, "kv": 2}
            assert snap.digest("kv") == fresh_sqlite_sums([("before", 1), ("foreign", 9)], "kv")
            position = snap.position
        positions = {c.changes[0].new[0]: c.position for c in self.capture_all(engine)}
        assert set(positions) == {"before", "after"}
        assert positions["before"] <= position < positions["after"]
        assert engine.source.captured_through() >= positions["after"]


    def test_a_json_null_is_not_a_sql_null(self, engine: Any) -> None:
        """The JSON document ``null`` and SQL NULL are two values: read back,
        captured and checksummed apart, as on every engine."""
        rows = [(1, *([None] * 9), Json("null")), (2, *([None] * 10))]
        self.app_insert("typed", len(TYPED_COLUMNS), rows)
        assert sorted(engine.inspect.rows("typed"), key=lambda r: r[0]) == rows
        captured = [c.new for chunk in self.capture_all(engine) for c in chunk.changes]
        assert sorted(captured, key=lambda r: r[0]) == rows
        assert engine.inspect.checksums(["typed"])[0]["typed"] == fresh_sqlite_sums(rows)


class TestSQLiteInspection(SQLiteCampus, InspectionContract):
    pass


class TestPostgresInspection(PostgresCampus, InspectionContract):
    pass


class TestMariaDBInspection(MariaDBCampus, InspectionContract):
    pass
