"""The SQLite engine's CaptureSource role: the trigger-fed change log.

``install_capture`` puts AFTER triggers on a replicated table that append
each changed row to ``_rs_log`` (with its images in ``_rs_img_<table>``)
unless an apply session is running (``_rs_state.applying``), and number
transactions through ``_rs_state.tx``/``claimed`` (node.engines.sqlite.engine
says how). ``SQLiteCaptureSource`` reads the log on the capture connection,
on the capture thread, and deletes what is journaled and recorded.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from node.engines.sqlite.connections import SQLiteContext
from node.engines.sqlite.snapshot import q
from node.engines.sqlite.values import from_sqlite
from node.model import CapturedChunk, Change, Op, TableShape
from ringsync.errors import EngineError, SchemaError

_UNIX_NOW = "(julianday('now') - 2440587.5) * 86400.0"


def install_capture(conn: sqlite3.Connection, shape: TableShape) -> None:
    """The change-log image table and the AFTER triggers of one replicated
    table (the triggers recreated at every open; the image table only when
    its columns changed, and never while it holds changes not yet journaled)."""
    img = q(f"_rs_img_{shape.name}")
    wanted = ["log_id"] + [f"n_{c}" for c in shape.columns] + [f"o_{c}" for c in shape.columns]
    have = [r[1] for r in conn.execute(f"PRAGMA table_info({img})")]
    if have and have != wanted:
        pending = conn.execute(
            "SELECT count(*) FROM _rs_log WHERE tbl = ?", (shape.name,)
        ).fetchone()[0]
        if pending:
            raise SchemaError(
                f"table {shape.name!r} changed columns while {pending} captured changes were "
                f"not yet journaled; start the node once with the old schema to drain them"
            )
        conn.execute(f"DROP TABLE {img}")
        have = []
    if not have:
        cols = ", ".join(q(c) for c in wanted[1:])
        conn.execute(f"CREATE TABLE {img}(log_id INTEGER PRIMARY KEY, {cols})")
    t = q(shape.name)
    new_cols = ", ".join(q(f"n_{c}") for c in shape.columns)
    old_cols = ", ".join(q(f"o_{c}") for c in shape.columns)
    new_vals = ", ".join(f"NEW.{q(c)}" for c in shape.columns)
    old_vals = ", ".join(f"OLD.{q(c)}" for c in shape.columns)
    name_lit = "'" + shape.name.replace("'", "''") + "'"
    bodies = {
        "INSERT": ("I", f"({new_cols}) VALUES (last_insert_rowid(), {new_vals})"),
        "UPDATE": (
            "U",
            f"({new_cols}, {old_cols}) VALUES (last_insert_rowid(), {new_vals}, {old_vals})",
        ),
        "DELETE": ("D", f"({old_cols}) VALUES (last_insert_rowid(), {old_vals})"),
    }
    for event, (op, values) in bodies.items():
        trig = q(f"_rs_{op.lower()}_{shape.name}")
        cols_values = values.replace("(", "(log_id, ", 1)
        conn.execute(f"DROP TRIGGER IF EXISTS {trig}")
        conn.execute(
            f"CREATE TRIGGER {trig} AFTER {event} ON {t} "
            f"WHEN (SELECT applying FROM _rs_state WHERE id = 1) = 0 BEGIN "
            f"UPDATE _rs_state SET tx = tx + 1, claimed = 0 WHERE id = 1 AND claimed = 1; "
            f"INSERT INTO _rs_log(tx, tbl, op, ts) SELECT tx, {name_lit}, '{op}', {_UNIX_NOW} "
            f"FROM _rs_state WHERE id = 1; "
            f"INSERT INTO {img}{cols_values}; "
            f"END"
        )


class SQLiteCaptureSource:
    """The campus's own committed transactions, from the change log."""

    def __init__(self, ctx: SQLiteContext) -> None:
        self.ctx = ctx
        self._released = 0
        self._seen_version: int | None = None
        self._backlog = False
        self._handed_out = 0  # position of the last chunk capture returned
        self._through = 0  # every change-log id up to this was returned by capture

    def start_capture(self, position: int) -> None:
        """Nothing to set up: the triggers were installed at open."""

    def capture(self, position: int, max_changes: int) -> list[CapturedChunk]:
        conn = self.ctx.capture_conn()
        # data_version moves when another connection commits: a cheap poll
        # that avoids taking the write lock when nothing happened.
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        releasable = min(position, self.ctx.recorded_position)
        if (
            version == self._seen_version
            and not self._backlog
            and position >= self._handed_out  # what we handed out was journaled
            and releasable <= self._released
        ):
            return []
        conn.execute("BEGIN IMMEDIATE")
        try:
            if releasable > self._released:
                self._release_locked(releasable)
            rows = conn.execute(
                "SELECT id, tx, tbl, op, ts FROM _rs_log WHERE id > ? ORDER BY id LIMIT ?",
                (position, max_changes + 1),
            ).fetchall()
            self._seen_version = version
            self._backlog = len(rows) > max_changes
            if not self._backlog:
                last = conn.execute(
                    "SELECT seq FROM sqlite_sequence WHERE name = '_rs_log'").fetchone()
                self._through = int(last[0]) if last else 0
            if not rows:
                conn.execute("COMMIT")
                return []
            conn.execute("UPDATE _rs_state SET claimed = 1 WHERE id = 1 AND claimed = 0")
            extra = rows[max_changes] if len(rows) > max_changes else None
            rows = rows[:max_changes]
            images = self._read_images(rows)
            # Read under the write lock: everything applied before these
            # local changes committed is in it (their dependency vector).
            deps = dict(conn.execute("SELECT origin, seq FROM _rs_applied").fetchall())
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        chunks: list[CapturedChunk] = []
        current_tx = None
        for log_id, tx, tbl, op, ts in rows:
            if tx != current_tx:
                chunks.append(CapturedChunk([], True, ts, log_id, deps=deps))
                current_tx = tx
            chunk = chunks[-1]
            shape = self.ctx.shapes[tbl]
            width = len(shape.columns)
            image = images[log_id]
            new = from_sqlite(shape.kinds, image[:width])
            old = from_sqlite(shape.kinds, image[width:])
            if op == "I":
                chunk.changes.append(Change(tbl, Op.INSERT, new=new))
            elif op == "U":
                chunk.changes.append(Change(tbl, Op.UPDATE, new=new, old=old))
            else:
                chunk.changes.append(Change(tbl, Op.DELETE, old=old))
            chunk.commit_time = max(chunk.commit_time, ts)
            chunk.position = log_id
        if extra is not None and extra[1] == current_tx:
            chunks[-1].final = False
        self._handed_out = chunks[-1].position
        return chunks

    def sync_release(self, acked_position: int | None) -> None:
        """SQLite campuses are asynchronous only (config refuses sync)."""

    def captured_through(self) -> int:
        return self._through

    def commit_position(self) -> int:
        """The highest change-log id ever issued: every committed local change
        has one at or below it (AUTOINCREMENT never reuses an id)."""
        row = self.ctx.conn.execute(
            "SELECT seq FROM sqlite_sequence WHERE name = '_rs_log'").fetchone()
        return int(row[0]) if row else 0

    def _read_images(self, rows: list[tuple[Any, ...]]) -> dict[int, tuple[Any, ...]]:
        conn = self.ctx.capture_conn()
        lo, hi = rows[0][0], rows[-1][0]
        images: dict[int, tuple[Any, ...]] = {}
        for tbl in {r[2] for r in rows}:
            shape = self.ctx.shape_of(tbl)
            cols = [f"n_{c}" for c in shape.columns] + [f"o_{c}" for c in shape.columns]
            sql = (
                f"SELECT log_id, {', '.join(q(c) for c in cols)} FROM {q('_rs_img_' + tbl)} "
                f"WHERE log_id BETWEEN ? AND ?"
            )
            for rec in conn.execute(sql, (lo, hi)):
                images[rec[0]] = tuple(rec[1:])
        missing = [r[0] for r in rows if r[0] not in images]
        if missing:
            raise EngineError(f"change log rows {missing[:5]} have no row image in {self.ctx.path}")
        return images

    def local_recorded(self, position: int) -> None:
        """Local changes up to ``position`` have their versions recorded: the
        change log may forget them once they are journaled too."""
        self.ctx.recorded_position = max(self.ctx.recorded_position, position)

    def release(self, position: int) -> None:
        position = min(position, self.ctx.recorded_position)
        if position <= self._released:
            return
        conn = self.ctx.capture_conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            self._release_locked(position)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _release_locked(self, position: int) -> None:
        conn = self.ctx.capture_conn()
        conn.execute("DELETE FROM _rs_log WHERE id <= ?", (position,))
        for shape in self.ctx.shapes.values():
            conn.execute(
                f"DELETE FROM {q('_rs_img_' + shape.name)} WHERE log_id <= ?", (position,)
            )
        self._released = position
