"""Shared test helpers: reading campus databases directly, waiting for things."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ringsync.commands.demo.lis import TABLES, mysql_connect


def table_rows(db: Path, tables: tuple[str, ...] = TABLES) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, sorted: the ground truth for convergence."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return {t: sorted(conn.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr)
                for t in tables}
    finally:
        conn.close()


def wait_until(predicate: Callable[[], bool], timeout: float, what: str,
               interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def async_wait_until(predicate: Callable[[], Awaitable[bool]], timeout: float,
                           what: str, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def campus_rows(target: Path | str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every LIS table, from SQLite (a path), PostgreSQL (a DSN)
    or MariaDB (a mysql:// URL), sorted, in one form comparable across engines."""
    if isinstance(target, Path):
        return table_rows(target)
    if target.startswith("mysql://"):
        conn = mysql_connect(target)
        try:
            out = {}
            with conn.cursor() as cur:
                for t in TABLES:
                    cur.execute(f"SELECT * FROM `{t}`")
                    out[t] = sorted((tuple(r) for r in cur.fetchall()), key=repr)
            return out
        finally:
            conn.close()
    import psycopg

    with psycopg.connect(target) as conn:
        return {t: sorted(conn.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr)
                for t in TABLES}


def preload_patients(target: Path | str, campus: str, count: int, prefix: str = "legacy") -> None:
    """Rows written before any node ran: in no journal, so only a copy carries them."""
    from ringsync.commands.demo.lis import CampusDb

    db = CampusDb(target)
    try:
        db.begin()
        for i in range(count):
            db.execute("INSERT INTO patients VALUES (?, ?, ?, NULL, 'F', ?, ?)",
                       (f"{prefix}-{i}", f"MRN{i:07d}", f"Patient {prefix} {i}", campus,
                        "2020-01-01T00:00:00.000000Z"))
        db.execute("COMMIT")
    finally:
        db.conn.close()


def coded_rows(target: Path | str, campus: str) -> dict[str, list[tuple[Any, ...]]]:
    """campus_rows with the demo's local test codes (ringsync.commands.demo.codes)
    read back as canonical ones, so campuses with their own codes compare."""
    from ringsync.commands.demo.cluster import CAMPUS_NAMES
    from ringsync.commands.demo.codes import local_codes

    back = {v: k for k, v in local_codes(CAMPUS_NAMES, campus).items()}
    rows = campus_rows(target)
    rows["lab_orders"] = sorted(((r[0], r[1], back.get(r[2], f"UNMAPPED:{r[2]}"), *r[3:])
                                 for r in rows["lab_orders"]), key=repr)
    return rows
