"""Rows counted straight from a campus's database (SQLite file, PostgreSQL DSN
or MariaDB URL), never from a node: what the demo's report and its leaves'
convergence check rely on."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from pathlib import Path

from ringsync.commands.demo.lis import mysql_connect


def row_counts(target: Path | str, tables: tuple[str, ...],
               where: Mapping[str, str] | None = None) -> dict[str, int]:
    """Rows per table; ``where``: a table's SQL condition (the same text on
    every engine), for the rows a leaf's route selects."""
    where = where or {}

    def sql(t: str, quote: str) -> str:
        cond = f" WHERE {where[t]}" if t in where else ""
        return f"SELECT count(*) FROM {quote}{t}{quote}{cond}"

    if isinstance(target, str) and target.startswith("mysql://"):
        conn = mysql_connect(target)
        try:
            with conn.cursor() as cur:
                out = {}
                for t in tables:
                    cur.execute(sql(t, "`"))
                    out[t] = int(cur.fetchone()[0])
                return out
        finally:
            conn.close()
    if isinstance(target, str):
        import psycopg

        with psycopg.connect(target) as pg:
            return {t: pg.execute(sql(t, '"')).fetchone()[0]  # type: ignore[index]
                    for t in tables}
    conn = sqlite3.connect(f"file:{target}?mode=ro", uri=True)
    try:
        return {t: conn.execute(sql(t, '"')).fetchone()[0] for t in tables}
    finally:
        conn.close()
