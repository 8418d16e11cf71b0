"""Incremental verification digests on SQLite ([verify] incremental = true).

The SQLite counterpart of node.engines.postgres.digests: bucket digests kept
by the database, so a verification after N changes costs O(buckets + N)
instead of hashing the table. SQLite has no SHA-256 in SQL and no
statement-level triggers, and a trigger may only call what every connection
has (an application's connection has none of ringsync's Python functions),
so the work is split:

* in the writer's own transaction, AFTER triggers on every replicated
  table append the *keys* a write touched to ``_rs_vdirty_<table>`` (an
  update whose key changed appends both). They are not gated on
  ``_rs_state.applying``: they see apply, applications, and a DBA's session
  alike. Appending a key is all they do;
* ``_rs_vrow(tbl, key, bucket, h)``: per row, the hash the digests count
  for it (its canonical key text, bucket at MAX_BITS, row hash);
* ``_rs_vdigest(tbl, bucket, rows, w0..w3)``: per bucket, the row count and
  the word sums of those hashes (stored as signed 64-bit integers, the same
  value modulo 2^64).

The digests *as of any snapshot* are ``_rs_vdigest`` plus, for each distinct
dirty key, the current row's hash minus the hash ``_rs_vrow`` holds for it:
exact whatever happened to the key in between (inserted then deleted,
updated many times, an ``INSERT OR REPLACE`` over it, moved to another key).
``fold`` makes that correction permanent under the write lock, a batch of
dirty entries at a time, and forgets them. Installing on a table with rows
seeds ``_rs_vrow`` and ``_rs_vdigest`` from a full hash in the engine's
opening write transaction; a changed table shape (or, for a table with a
decimal column, a changed row hash definition) seeds again; turning the
setting off drops the triggers and the digests.

A write the triggers cannot see (a row deleted by ``REPLACE`` for a
conflict on another UNIQUE index, a file restored under the node) is what
a stock check (``--full``) exists to find: it compares these digests with
the rows and rebuilds them where they drifted.
"""

from __future__ import annotations

import sqlite3
import struct
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from node.engines.sqlite.snapshot import q
from node.engines.sqlite.values import from_sqlite
from node.model import TableShape
from node.verify.rowhash import HASH_DEFINITION, MAX_BITS, Digest, field_text, hash_row, record_text

_WORD = 1 << 64
_HALF = 1 << 63
FOLD_BATCH = 1_000  # dirty entries folded per write transaction (about 30 ms of the lock)
FOLD_PAUSE_SECONDS = 0.1  # between two such transactions: the others' turn
DDL = (
    "CREATE TABLE IF NOT EXISTS _rs_vdigest(tbl TEXT NOT NULL, bucket INTEGER NOT NULL, "
    "rows INTEGER NOT NULL, w0 INTEGER NOT NULL, w1 INTEGER NOT NULL, w2 INTEGER NOT NULL, "
    "w3 INTEGER NOT NULL, PRIMARY KEY (tbl, bucket)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS _rs_vrow(tbl TEXT NOT NULL, key TEXT NOT NULL, "
    "bucket INTEGER NOT NULL, h BLOB NOT NULL, PRIMARY KEY (tbl, key)) WITHOUT ROWID",
)
_OPS = ("i", "u", "d")


def _signed(word: int) -> int:
    word %= _WORD
    return word - _WORD if word >= _HALF else word


def _stored(row: Sequence[Any]) -> Digest:
    """A _rs_vdigest row's (rows, w0..w3) as a Digest (words back to unsigned)."""
    return Digest(int(row[0]), [int(w) % _WORD for w in row[1:]])


def _words(h: bytes) -> tuple[int, ...]:
    return struct.unpack(">4Q", h)


def _dirty(table: str) -> str:
    return q(f"_rs_vdirty_{table}")


def _trigger(op: str, table: str) -> str:
    return q(f"_rs_vd{op}_{table}")


def _signature(shape: TableShape) -> str:
    """What the table's kept digests were built for: its shape, and the row
    hash definition where a decimal column makes it matter (seeded again
    when either changes)."""
    text = repr((shape.columns, shape.kinds, shape.key_indexes))
    return text + (f" hash{HASH_DEFINITION}" if "decimal" in shape.kinds else "")


def _mark(table: str) -> str:
    return f"vdigest:{table}"


def install_digests(conn: sqlite3.Connection, shapes: Mapping[str, TableShape],
                    enabled: bool) -> set[str]:
    """Install (or, disabled, remove) the digests, in the caller's write
    transaction; the tables they cover (all of them)."""
    if not enabled:
        for shape in shapes.values():
            _remove(conn, shape.name)
        return set()
    for ddl in DDL:
        conn.execute(ddl)
    for shape in shapes.values():
        seeded = conn.execute("SELECT value FROM _rs_meta WHERE key = ?",
                              (_mark(shape.name),)).fetchone()
        fresh = seeded is None or seeded[0] != _signature(shape)
        if fresh:
            _remove(conn, shape.name)
        _install_triggers(conn, shape)
        if fresh:
            seed(conn, shape)
            conn.execute("INSERT OR REPLACE INTO _rs_meta(key, value) VALUES (?, ?)",
                         (_mark(shape.name), _signature(shape)))
    return set(shapes)


def _remove(conn: sqlite3.Connection, table: str) -> None:
    for op in _OPS:
        conn.execute(f"DROP TRIGGER IF EXISTS {_trigger(op, table)}")
    conn.execute(f"DROP TABLE IF EXISTS {_dirty(table)}")
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = '_rs_vrow'").fetchone():
        conn.execute("DELETE FROM _rs_vrow WHERE tbl = ?", (table,))
        conn.execute("DELETE FROM _rs_vdigest WHERE tbl = ?", (table,))
    conn.execute("DELETE FROM _rs_meta WHERE key = ?", (_mark(table),))


def _install_triggers(conn: sqlite3.Connection, shape: TableShape) -> None:
    """The key log and its three triggers (recreated at every open)."""
    keys = shape.key_columns
    conn.execute(f"CREATE TABLE IF NOT EXISTS {_dirty(shape.name)}(id INTEGER PRIMARY KEY, "
                 + ", ".join(q(f"k_{c}") for c in keys) + ")")
    cols = ", ".join(q(f"k_{c}") for c in keys)
    new = ", ".join(f"NEW.{q(c)}" for c in keys)
    old = ", ".join(f"OLD.{q(c)}" for c in keys)
    moved = "NOT (" + " AND ".join(f"OLD.{q(c)} IS NEW.{q(c)}" for c in keys) + ")"
    log = f"INSERT INTO {_dirty(shape.name)}({cols})"
    bodies = {
        "i": ("INSERT", f"{log} VALUES ({new});"),
        "u": ("UPDATE", f"{log} VALUES ({new}); {log} SELECT {old} WHERE {moved};"),
        "d": ("DELETE", f"{log} VALUES ({old});"),
    }
    for op, (event, body) in bodies.items():
        conn.execute(f"DROP TRIGGER IF EXISTS {_trigger(op, shape.name)}")
        conn.execute(f"CREATE TRIGGER {_trigger(op, shape.name)} AFTER {event} ON "
                     f"{q(shape.name)} BEGIN {body} END")


def seed(conn: sqlite3.Connection, shape: TableShape) -> None:
    """Replace the table's digests by a full hash of its rows (in the caller's
    write transaction)."""
    conn.execute("DELETE FROM _rs_vrow WHERE tbl = ?", (shape.name,))
    conn.execute("DELETE FROM _rs_vdigest WHERE tbl = ?", (shape.name,))
    conn.execute(f"DELETE FROM {_dirty(shape.name)}")
    buckets: dict[int, Digest] = {}
    cols = ", ".join(q(c) for c in shape.columns)
    batch: list[tuple[str, str, int, bytes]] = []
    for row in conn.execute(f"SELECT {cols} FROM {q(shape.name)}").fetchall():
        rh = hash_row(shape.kinds, shape.key_indexes, from_sqlite(shape.kinds, row), MAX_BITS)
        buckets.setdefault(rh.bucket, Digest()).add(rh.digest)
        batch.append((shape.name, rh.key_text, rh.bucket, rh.digest))
    conn.executemany("INSERT INTO _rs_vrow(tbl, key, bucket, h) VALUES (?, ?, ?, ?)", batch)
    conn.executemany(
        "INSERT INTO _rs_vdigest(tbl, bucket, rows, w0, w1, w2, w3) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(shape.name, b, d.rows, *map(_signed, d.words)) for b, d in buckets.items()])


def _key_text(shape: TableShape, key: Sequence[Any]) -> str:
    kinds = tuple(shape.kinds[i] for i in shape.key_indexes)
    return record_text(field_text(k, v) for k, v in zip(kinds, from_sqlite(kinds, key),
                                                        strict=True))


def _corrections(conn: sqlite3.Connection, shape: TableShape, limit: int | None
                 ) -> Iterator[tuple[str, tuple[int, bytes] | None, tuple[int, bytes] | None]]:
    """Per distinct dirty key (the first ``limit`` dirty entries; None: all):
    (key text, what _rs_vrow holds for it, what the row is now), each a
    (bucket, hash) or None for no row."""
    keys = ", ".join(q(f"k_{c}") for c in shape.key_columns)
    where = " AND ".join(f"{q(c)} IS ?" for c in shape.key_columns)
    cols = ", ".join(q(c) for c in shape.columns)
    bound = "" if limit is None else f" WHERE id <= {int(limit)}"
    current = f"SELECT {cols} FROM {q(shape.name)} WHERE {where}"
    for key in conn.execute(f"SELECT DISTINCT {keys} FROM {_dirty(shape.name)}{bound}"
                            ).fetchall():
        text = _key_text(shape, key)
        held = conn.execute("SELECT bucket, h FROM _rs_vrow WHERE tbl = ? AND key = ?",
                            (shape.name, text)).fetchone()
        row = conn.execute(current, key).fetchone()
        now = None
        if row is not None:
            rh = hash_row(shape.kinds, shape.key_indexes, from_sqlite(shape.kinds, row),
                          MAX_BITS)
            now = (rh.bucket, rh.digest)
        was = (int(held[0]), bytes(held[1])) if held is not None else None
        if was != now:
            yield text, was, now


def _apply(changes: dict[int, Digest], was: tuple[int, bytes] | None,
           now: tuple[int, bytes] | None) -> None:
    if was is not None:
        changes.setdefault(was[0], Digest()).add_sums(-1, [-w for w in _words(was[1])])
    if now is not None:
        changes.setdefault(now[0], Digest()).add_sums(1, _words(now[1]))


def read_digests(conn: sqlite3.Connection, shape: TableShape, bits: int) -> dict[int, Digest]:
    """The table's bucket digests at ``bits`` as of the caller's snapshot."""
    at_max = {int(bucket): _stored(rest) for bucket, *rest in conn.execute(
        "SELECT bucket, rows, w0, w1, w2, w3 FROM _rs_vdigest WHERE tbl = ?", (shape.name,))}
    for _, was, now in _corrections(conn, shape, None):
        _apply(at_max, was, now)
    out: dict[int, Digest] = {}
    for bucket, digest in at_max.items():
        out.setdefault(bucket >> (MAX_BITS - bits), Digest()).merge(digest)
    return {b: d for b, d in out.items() if d.rows}


def fold(conn: sqlite3.Connection, shape: TableShape, batch: int = FOLD_BATCH,
         pause: float = FOLD_PAUSE_SECONDS) -> int:
    """Make the dirty keys' corrections permanent, ``batch`` entries per write
    transaction, ``pause`` seconds between two, so that apply and the
    applications, waiting in SQLite's busy handler, get the lock in between
    (re-taken at once, it starved them: a stream's lag went from 70 ms to 6 s
    while a bulk load's keys were folded); the number of entries folded."""
    folded = 0
    while True:
        if conn.execute(f"SELECT 1 FROM {_dirty(shape.name)} LIMIT 1").fetchone() is None:
            return folded  # nothing (more) to fold: no write lock taken
        if folded:
            time.sleep(pause)
        conn.execute("BEGIN IMMEDIATE")
        try:
            last, entries = conn.execute(
                f"SELECT max(id), count(*) FROM (SELECT id FROM {_dirty(shape.name)} "
                f"ORDER BY id LIMIT ?)", (batch,)).fetchone()
            if not entries:
                conn.execute("COMMIT")
                return folded
            changes: dict[int, Digest] = {}
            for text, was, now in list(_corrections(conn, shape, last)):
                _apply(changes, was, now)
                if now is None:
                    conn.execute("DELETE FROM _rs_vrow WHERE tbl = ? AND key = ?",
                                 (shape.name, text))
                else:
                    conn.execute("INSERT OR REPLACE INTO _rs_vrow(tbl, key, bucket, h) "
                                 "VALUES (?, ?, ?, ?)", (shape.name, text, *now))
            for bucket, d in changes.items():
                held = conn.execute(
                    "SELECT rows, w0, w1, w2, w3 FROM _rs_vdigest WHERE tbl = ? AND bucket = ?",
                    (shape.name, bucket)).fetchone()
                total = _stored(held) if held is not None else Digest()
                total.merge(d)
                conn.execute(
                    "INSERT OR REPLACE INTO _rs_vdigest(tbl, bucket, rows, w0, w1, w2, w3) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (shape.name, bucket, total.rows, *map(_signed, total.words)))
            conn.execute(f"DELETE FROM {_dirty(shape.name)} WHERE id <= ?", (last,))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        folded += entries
