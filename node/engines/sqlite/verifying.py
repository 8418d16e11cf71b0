"""The SQLite engine's part of verification: rows hashed in Python.

``SQLiteVerifier`` answers the same two questions as the PostgreSQL one
(node.engines.postgres.verifying), on a connection of its own in one read
transaction (WAL: apply keeps writing meanwhile), with the applied vector
read in it. SQLite has no SHA-256 in SQL, so each row is read as canonical
values (node.engines.sqlite.values) and hashed by node.verify.rowhash: the
definition the SQL on PostgreSQL matches. SQLite campuses are the small
ones; the cost is one pass of Python per row.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from node.engines.sqlite.connections import SQLiteContext
from node.engines.sqlite.snapshot import q
from node.engines.sqlite.values import from_sqlite
from node.model import TableShape
from node.verify.rowhash import Digest, RowHash, hash_row
from node.verify.snapshot import TableVerify
from ringsync.errors import EngineError


class SQLiteVerifier:
    """Verification questions about one SQLite campus database."""

    def __init__(self, ctx: SQLiteContext) -> None:
        self.ctx = ctx

    def _read(self, shape: TableShape, bits: int,
              keep: set[int] | None) -> tuple[dict[str, int], dict[int, Digest], list[RowHash]]:
        conn = self.ctx.connect()
        buckets: dict[int, Digest] = {}
        rows: list[RowHash] = []
        try:
            conn.execute("BEGIN")  # one read snapshot: the vector and the rows
            applied = {o: int(s) for o, s in conn.execute("SELECT origin, seq FROM _rs_applied")}
            cols = ", ".join(q(c) for c in shape.columns)
            for row in conn.execute(f"SELECT {cols} FROM {q(shape.name)}"):
                rh = hash_row(shape.kinds, shape.key_indexes, from_sqlite(shape.kinds, row), bits)
                if keep is None:
                    buckets.setdefault(rh.bucket, Digest()).add(rh.digest)
                elif rh.bucket in keep:
                    rows.append(rh)
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            raise EngineError(f"verification read of {shape.name} failed: {e}") from e
        finally:
            conn.close()
        return applied, buckets, rows

    def bucket_digests(self, table: str, bits: int, incremental: bool = False) -> TableVerify:
        """Always hashed from the rows: SQLite keeps no incremental digests."""
        applied, buckets, _ = self._read(self.ctx.shape_of(table), bits, None)
        return TableVerify(table, bits, applied, buckets=buckets)

    def fold_digests(self) -> int:
        return 0

    def row_hashes(self, table: str, bits: int, buckets: Sequence[int]) -> TableVerify:
        applied, _, rows = self._read(self.ctx.shape_of(table), bits, set(buckets))
        return TableVerify(table, bits, applied, rows=rows)
