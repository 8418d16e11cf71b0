"""Bulk statements on PostgreSQL: COPY into a temporary staging table, then one statement.

Apply writes and reads rows in runs (node.conflicts.driver). A run of a few
rows is cheapest as plain statements; a long one (a bulk transaction, a
catch-up backlog) is far cheaper as ``COPY ... FROM STDIN`` into a
temporary table followed by one ``INSERT ... SELECT ... ON CONFLICT`` or
one statement that probes the table's primary key for every staged key
(``probe``): no per-row statement, no giant parameter list for the server
to parse, and no plan that depends on statistics a bulk load has outgrown.

Staging tables are per connection (``ON COMMIT DELETE ROWS``: empty at the
start of every transaction), typed exactly like the table they stage for
(``CREATE TABLE ... AS SELECT ... WITH NO DATA``), created on first use, and
never WAL-logged or published, so capture never sees them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from node.model import TableShape

# Runs at least this long go through a staging table.
STAGE_MIN_ROWS = 64


def upsert_action(shape: TableShape) -> sql.Composable:
    """The ON CONFLICT action that makes an insert an upsert of every non-key column."""
    rest = [c for c in shape.columns if c not in shape.key_columns]
    if not rest:
        return sql.SQL("DO NOTHING")
    return sql.SQL("DO UPDATE SET {}").format(sql.SQL(", ").join(
        sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in rest))


def _idents(columns: Sequence[str]) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(c) for c in columns)


class Stager:
    """The staging tables of one connection (make a new Stager for a new
    connection), and which the open transaction used."""

    def __init__(self) -> None:
        self._created: set[str] = set()
        self._created_now: set[str] = set()  # in the open transaction: gone on rollback
        self._used: set[str] = set()

    def end(self, committed: bool) -> None:
        """Call when the transaction ends."""
        if not committed:
            self.rolled_back()
        self._created_now.clear()
        self._used.clear()

    def rolled_back(self) -> None:
        """A rollback (to a savepoint, too) may have undone a CREATE: check
        again on next use (``IF NOT EXISTS``). What this transaction used is
        still truncated before reuse."""
        self._created -= self._created_now
        self._created_now.clear()

    def load(self, cur: psycopg.Cursor[Any], source: sql.Composable, source_name: str,
             columns: Sequence[str], rows: Sequence[Any],
             extra: Sequence[tuple[str, str]] = (), text: bytes | None = None,
             ) -> sql.Identifier:
        """COPY ``rows`` (values for ``columns``, then for the ``extra`` columns,
        given as (name, SQL type)) into the staging table for ``source``;
        return its name. ``text``: the rows as COPY text instead (``rows``
        then only says how many)."""
        spec = ",".join(f"{n} {t}" for n, t in extra)
        digest = hashlib.sha1(f"{source_name}|{','.join(columns)}|{spec}".encode()
                              ).hexdigest()[:16]
        name = f"rs_stage_{digest}"
        stage = sql.Identifier(name)
        if name not in self._created:
            added = sql.SQL("").join(
                sql.SQL(", NULL::{} AS {}").format(sql.SQL(t), sql.Identifier(n))
                for n, t in extra)
            cur.execute(sql.SQL(
                "CREATE TEMPORARY TABLE IF NOT EXISTS {} ON COMMIT DELETE ROWS AS "
                "SELECT {}{} FROM {} WITH NO DATA").format(stage, _idents(columns), added,
                                                           source))
            self._created.add(name)
            self._created_now.add(name)
            if name in self._used:
                # created before a savepoint this transaction rolled back to:
                # it still holds what was loaded before the savepoint
                cur.execute(sql.SQL("TRUNCATE {}").format(stage))
        elif name in self._used:
            cur.execute(sql.SQL("TRUNCATE {}").format(stage))
        self._used.add(name)
        copied = (*columns, *(n for n, _ in extra))
        with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(stage, _idents(copied))) as cp:
            if text is not None:
                cp.write(text)
            else:
                for row in rows:
                    cp.write_row(row)
        return stage


def probe(shape: TableShape, stage: sql.Identifier, target: sql.Composable,
          inner: sql.Composable, lock: bool = False, ordered: bool = False) -> sql.Composed:
    """``SELECT t.* FROM stage`` joined, key by key, to what ``inner`` (a
    select list over ``target`` as ``rs_t``) gives for that key; ``lock``: FOR
    UPDATE; ``ordered``: the keys taken (so rows locked) in key order.

    Each staged key is a primary-key probe of ``target`` whatever the
    statistics say: the lateral subquery is fenced (``OFFSET 0``), so the
    planner cannot turn it into a join that scans ``target``. A plain
    ``IN (SELECT ...)`` semi-join is planned from statistics, and a table
    that grows inside the apply transaction (a bulk load into a new table)
    keeps the statistics of an empty one: one staged run after another then
    scans the whole table, a cost that grows with every run.
    """
    keys = sql.SQL(", ").join(sql.Identifier(c) for c in shape.key_columns)
    source = (sql.SQL("(SELECT * FROM {} ORDER BY {})").format(stage, keys) if ordered
              else stage)
    return sql.SQL("SELECT t.* FROM {} rs_s CROSS JOIN LATERAL (SELECT {} FROM {} rs_t "
                   "WHERE {} OFFSET 0{}) t").format(
        source, inner, target, probe_match(shape), sql.SQL(" FOR UPDATE" if lock else ""))


def probe_match(shape: TableShape) -> sql.Composed:
    """``rs_t.k1 = rs_s.k1 AND ...``: a row of the probed table (``rs_t``)
    with the key of a staged row (``rs_s``)."""
    return sql.SQL(" AND ").join(
        sql.SQL("{} = {}").format(sql.Identifier("rs_t", c), sql.Identifier("rs_s", c))
        for c in shape.key_columns)


def insert_from(target: sql.Composable, columns: Sequence[str], stage: sql.Identifier,
                conflict: sql.Composable) -> sql.Composed:
    return sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} {}").format(
        target, _idents(columns), _idents(columns), stage, conflict)
