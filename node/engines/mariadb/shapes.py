"""Replicated tables' shapes, read from a MariaDB database's information_schema.

The engine reads them at open: columns in ordinal order with their canonical
kinds (node.engines.mariadb.values.column_kind), the primary key in key
order, and each column's COLUMN_TYPE, which the value converters need (SET
members, FLOAT, BINARY(n), TIMESTAMP). One query per catalog table covers
every replicated table. A table that cannot be replicated as defined (absent,
without a primary key, not InnoDB, with a column ringsync cannot carry) is
refused with a SchemaError saying what to change.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from node.engines.base import missing_table, no_primary_key
from node.engines.mariadb.values import RowReader, column_kind
from node.model import TableShape
from ringsync.errors import SchemaError

# MariaDB's JSON is LONGTEXT with this check; the name is quoted with
# backticks, or double quotes in a session with ANSI_QUOTES (the engine's).
_JSON_CHECK = re.compile(r'json_valid\((?:`((?:[^`]|``)+)`|"((?:[^"]|"")+)")\)')


@dataclass(frozen=True)
class MariaTable:
    """A replicated table: its shape, its columns' COLUMN_TYPE, its row reader."""

    shape: TableShape
    column_types: tuple[str, ...]
    reader: RowReader = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        s = self.shape
        object.__setattr__(self, "reader", RowReader(s.name, s.columns, s.kinds,
                                                     self.column_types, s.key_columns))


def not_innodb(table: str, engine: str | None) -> SchemaError:
    return SchemaError(
        f"table {table!r} uses the {engine} storage engine, which is not transactional, "
        f"so its changes cannot be captured and applied atomically; convert it "
        f"(ALTER TABLE {table} ENGINE=InnoDB) or remove it from cluster.tables")


def not_base_table(table: str, table_type: str) -> SchemaError:
    return SchemaError(
        f"{table!r} is a {table_type.lower()}, not a plain table; list only plain tables "
        f"in cluster.tables")


def _fetch(conn: Any, sql: str, database: str, tables: Sequence[str]) -> list[tuple[Any, ...]]:
    marks = ", ".join(["%s"] * len(tables))
    with conn.cursor() as cur:
        cur.execute(sql.format(marks=marks), (database, *tables))
        return list(cur.fetchall())


def read_tables(conn: Any, database: str, tables: Sequence[str],
                shown: str) -> dict[str, MariaTable]:
    """The shapes and column types of ``tables`` in ``database`` (a pymysql connection)."""
    if not tables:
        return {}
    found = {name: (engine, kind) for name, engine, kind in _fetch(
        conn, "SELECT TABLE_NAME, ENGINE, TABLE_TYPE FROM information_schema.TABLES "
              "WHERE TABLE_SCHEMA = %s AND TABLE_NAME IN ({marks})", database, tables)}
    for table in tables:
        if table not in found:
            raise missing_table(table, shown)
        engine, table_type = found[table]
        if table_type != "BASE TABLE":
            raise not_base_table(table, table_type)
        if (engine or "").lower() != "innodb":
            raise not_innodb(table, engine)

    json_columns = set()
    for table, clause in _fetch(
            conn, "SELECT TABLE_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
                  "WHERE CONSTRAINT_SCHEMA = %s AND TABLE_NAME IN ({marks})", database, tables):
        match = _JSON_CHECK.fullmatch(clause.strip())
        if match:
            name = (match.group(1) or "").replace("``", "`") or match.group(2).replace('""', '"')
            json_columns.add((table, name))

    columns: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for table, column, data_type, column_type, charset in _fetch(
            conn, "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, CHARACTER_SET_NAME "
                  "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME IN "
                  "({marks}) ORDER BY TABLE_NAME, ORDINAL_POSITION", database, tables):
        kind = column_kind(table, column, data_type, column_type, charset,
                           (table, column) in json_columns)
        columns[table].append((column, kind, column_type))

    keys: dict[str, list[str]] = defaultdict(list)
    for table, column in _fetch(
            conn, "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.STATISTICS "
                  "WHERE TABLE_SCHEMA = %s AND TABLE_NAME IN ({marks}) AND INDEX_NAME = "
                  "'PRIMARY' ORDER BY TABLE_NAME, SEQ_IN_INDEX", database, tables):
        keys[table].append(column)

    out = {}
    for table in tables:
        if not keys[table]:
            raise no_primary_key(table)
        names = tuple(c for c, _, _ in columns[table])
        shape = TableShape(table, names, tuple(names.index(k) for k in keys[table]),
                           tuple(k for _, k, _ in columns[table]))
        out[table] = MariaTable(shape, tuple(t for _, _, t in columns[table]))
    return out


def read_shapes(conn: Any, database: str, tables: Sequence[str],
                shown: str) -> dict[str, TableShape]:
    """The shapes of ``tables`` in ``database``: what the engine replicates."""
    return {name: t.shape for name, t in read_tables(conn, database, tables, shown).items()}
