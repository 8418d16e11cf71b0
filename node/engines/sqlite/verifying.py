"""The SQLite engine's part of verification: rows hashed in Python.

``SQLiteVerifier`` answers the same two questions as the PostgreSQL one
(node.engines.postgres.verifying), on a connection of its own in one read
transaction (WAL: apply keeps writing meanwhile), with the applied vector
read in it. SQLite has no SHA-256 in SQL, so each row is read as canonical
values (node.engines.sqlite.values) and hashed by node.verify.rowhash: the
definition the SQL on PostgreSQL matches. SQLite campuses are the small
ones; the cost is one pass of Python per row.

With ``[verify] incremental`` (node.engines.sqlite.digests) the bucket
digests are read from the ones the database keeps, unless a stock check is
asked for; a stock check also compares them with the rows, in the same
snapshot, and rebuilds them when they drifted.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from node.engines.sqlite.connections import SQLiteContext, write_transaction
from node.engines.sqlite.digests import fold, read_digests, seed
from node.engines.sqlite.snapshot import q
from node.engines.sqlite.values import from_sqlite
from node.model import TableShape
from node.verify.rowhash import Digest, RowHash, buckets_differ, hash_row
from node.verify.snapshot import TableVerify
from ringsync.errors import EngineError

log = logging.getLogger(__name__)

Row = tuple[Any, ...]


class SQLiteVerifier:
    """Verification questions about one SQLite campus database."""

    def __init__(self, ctx: SQLiteContext) -> None:
        self.ctx = ctx
        # table -> a view of its canonical rows (node.dictionary's code maps):
        # such a table is hashed through the view, never from kept digests
        self.views: dict[str, Callable[[Row], Row]] = {}

    @contextmanager
    def _snapshot(self, shape: TableShape) -> Iterator[tuple[sqlite3.Connection, dict[str, int]]]:
        """One read transaction on a connection of its own, and the applied
        vector read in it."""
        conn = self.ctx.connect()
        try:
            conn.execute("BEGIN")
            yield conn, {o: int(s) for o, s in conn.execute("SELECT origin, seq FROM _rs_applied")}
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            raise EngineError(f"verification read of {shape.name} failed: {e}") from e
        finally:
            conn.close()

    def _read(self, shape: TableShape, bits: int, keep: set[int] | None, kept: bool = False
              ) -> tuple[dict[str, int], dict[int, Digest], list[RowHash], dict[int, Digest]]:
        """One read snapshot: the applied vector, and either the bucket digests
        (keep None; with ``kept``, the kept digests too) or some buckets' rows."""
        buckets: dict[int, Digest] = {}
        rows: list[RowHash] = []
        held: dict[int, Digest] = {}
        with self._snapshot(shape) as (conn, applied):
            if kept:
                held = read_digests(conn, shape, bits)
            cols = ", ".join(q(c) for c in shape.columns)
            view = self.views.get(shape.name)
            for row in conn.execute(f"SELECT {cols} FROM {q(shape.name)}"):
                values = from_sqlite(shape.kinds, row)
                rh = hash_row(shape.kinds, shape.key_indexes,
                              view(values) if view is not None else values, bits)
                if keep is None:
                    buckets.setdefault(rh.bucket, Digest()).add(rh.digest)
                elif rh.bucket in keep:
                    rows.append(rh)
        return applied, buckets, rows, held

    def bucket_digests(self, table: str, bits: int, incremental: bool = False) -> TableVerify:
        shape = self.ctx.shape_of(table)
        kept = table in self.ctx.digest_tables and table not in self.views
        if incremental and kept:
            with self._snapshot(shape) as (conn, applied):
                return TableVerify(table, bits, applied, buckets=read_digests(conn, shape, bits),
                                   mode="incremental")
        applied, buckets, _, held = self._read(shape, bits, None, kept)
        drift = kept and buckets_differ(buckets, held)
        if drift:
            log.warning("the incremental digests of %s disagree with its rows (a write the "
                        "triggers did not see, or a restored file); rebuilt", table)
            self._rebuild(shape)
        return TableVerify(table, bits, applied, buckets=buckets, drift=drift)

    def _rebuild(self, shape: TableShape) -> None:
        conn = self.ctx.connect()
        try:
            with write_transaction(conn):
                seed(conn, shape)
        except sqlite3.Error as e:
            raise EngineError(f"could not rebuild the digests of {shape.name}: {e}") from e
        finally:
            conn.close()

    def fold_digests(self) -> int:
        """Fold every covered table's dirty keys into its digests; entries folded."""
        if not self.ctx.digest_tables:
            return 0
        conn = self.ctx.connect()
        try:
            return sum(fold(conn, self.ctx.shape_of(t)) for t in sorted(self.ctx.digest_tables))
        except sqlite3.Error as e:
            raise EngineError(f"folding verification digests failed: {e}") from e
        finally:
            conn.close()

    def row_hashes(self, table: str, bits: int, buckets: Sequence[int]) -> TableVerify:
        applied, _, rows, _ = self._read(self.ctx.shape_of(table), bits, set(buckets))
        return TableVerify(table, bits, applied, rows=rows)

