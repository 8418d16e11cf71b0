"""Row versions and the conflict log in a MariaDB campus database.

MariaVersionStore is the version-store half of an apply session
(node.engines.mariadb.apply); MariaConflictStore is the engine's
ConflictStore role (the conflict log and dead letters as the servicers ask
for them, and an operator's local write).

``_rs_meta_<table>`` holds each row's recorded versions keyed like the
table, plus the stamp of the row version they describe (``xid``,
node.engines.mariadb.stamps) and whether the row exists. Rows already there
when ringsync first starts (or copied in when a campus joins) get a base
entry (``meta`` NULL). All of it is written in the apply transaction.

As on PostgreSQL, capture reads the log, so a user's change is not seen by
the node when it commits; apply detects it instead: a key whose stamp is
not the one its entry records has a local change whose versions are not
recorded yet, so it is *pending*. Apply locks the rows it reads (FOR UPDATE;
InnoDB's next-key locks also hold the place of a key that has no row), so
no local write reaches them before it writes, and reads their stamps and
entries by locking reads too: the session is REPEATABLE READ, so a plain
read would answer from the snapshot of its first read, older than the row.
The fast path's set-wise writes are not done here yet: ``insert_fresh`` and
``record_fresh`` say False, and every run takes the exact path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pymysql

from node.conflicts.deadletter import DeadLetterQuery
from node.conflicts.driver import Key, PendingLocalChange, Row, StoredRow, TxnInfo
from node.conflicts.entries import ConflictEntry, DeadLetterEntry
from node.conflicts.fresh import FreshRun
from node.conflicts.log import ConflictQuery
from node.engines.dialect import write_local_rows
from node.engines.mariadb.connections import Cursor, MariaContext
from node.engines.mariadb.stamps import keyed_copy_ddl, stamp_table
from node.engines.mariadb.tables import CONFLICT_LOG, DLQ, MARIA
from node.engines.mariadb.values import RowReader, quote, row_reader, to_mariadb
from node.engines.sessionbase import ApplySessionBase
from node.model import TableShape
from ringsync.errors import EngineError

# Keys per statement that reads or writes by key.
KEYS_PER_STATEMENT = 500
# MariaDB's error for a SIGNAL raised by a trigger (the fence guards).
ER_SIGNAL_EXCEPTION = 1644
ER_DUP_ENTRY = 1062


def meta_table(table: str) -> str:
    return f"_rs_meta_{table}"


def install_versions(cur: Any, shape: TableShape) -> None:
    """The version table, and a base entry for every row that has none."""
    cur.execute(keyed_copy_ddl(meta_table(shape.name), shape,
                               "xid BIGINT NOT NULL DEFAULT 0, live BOOLEAN NOT NULL DEFAULT TRUE, "
                               "meta LONGTEXT"))
    mark_base_versions(cur, shape)


def mark_base_versions(cur: Any, shape: TableShape) -> None:
    keys = ", ".join(f"t.{quote(c)}" for c in shape.key_columns)
    join = " AND ".join(f"s.{quote(c)} = t.{quote(c)}" for c in shape.key_columns)
    cur.execute(f"INSERT IGNORE INTO {quote(meta_table(shape.name))} "
                f"({', '.join(quote(c) for c in shape.key_columns)}, xid, live, meta) "
                f"SELECT {keys}, COALESCE(s.stamp, 0), TRUE, NULL FROM {quote(shape.name)} t "
                f"LEFT JOIN {quote(stamp_table(shape.name))} s ON {join}")


def _keys_in(shape: TableShape, n: int, alias: str = "") -> str:
    cols = ", ".join(f"{alias}{quote(c)}" for c in shape.key_columns)
    one = "(" + ", ".join("%s" for _ in shape.key_columns) + ")"
    return f"({cols}) IN ({', '.join(one for _ in range(n))})"


class MariaVersionStore(ApplySessionBase):
    """The version-store half of a MariaDB apply session."""

    def __init__(self, ctx: MariaContext, cur: Cursor) -> None:
        super().__init__(cur, MARIA, ctx.shape_of, ctx.upsert_sql, ctx.delete_sql)
        self.ctx, self.cur = ctx, cur

    def _key_reader(self, shape: TableShape) -> RowReader:
        """Key columns as canonical values, read from any table keyed like ``shape``."""
        types = self.ctx.table(shape.name).column_types
        return row_reader(shape.name, shape.key_columns,
                          tuple(shape.kinds[i] for i in shape.key_indexes),
                          tuple(types[i] for i in shape.key_indexes), shape.key_columns)

    def _by_key(self, shape: TableShape, table: str, columns: str, keys: list[Key],
                lock: str) -> list[tuple[Any, ...]]:
        """``columns`` of ``table``'s rows with these keys, a run at a time, by
        a locking read (``lock``: FOR UPDATE or LOCK IN SHARE MODE)."""
        out: list[tuple[Any, ...]] = []
        for i in range(0, len(keys), KEYS_PER_STATEMENT):
            run = keys[i:i + KEYS_PER_STATEMENT]
            out += self.cur.execute(
                f"SELECT {columns} FROM {quote(table)} WHERE {_keys_in(shape, len(run))} {lock}",
                [to_mariadb(v) for k in run for v in k]).fetchall()
        return out

    def _keyed(self, shape: TableShape, table: str, extra: str, keys: list[Key],
               lock: str) -> dict[Key, tuple[Any, ...]]:
        width = len(shape.key_columns)
        reader = self._key_reader(shape)
        cols = ", ".join(quote(c) for c in shape.key_columns) + ", " + extra
        return {reader.from_query(rec[:width]): tuple(rec[width:])
                for rec in self._by_key(shape, table, cols, keys, lock)}

    def stamps(self, shape: TableShape, keys: list[Key]) -> dict[Key, int]:
        """The keys' stamps as last committed. A locking read: the session is
        REPEATABLE READ, and a plain read would answer from the snapshot its
        first read fixed, so a user's change committed since (to a row apply
        has just locked and read as it is now) would look recorded, and be
        overwritten. Shared locks: a user's write to these keys already waits
        for apply's lock on the row itself."""
        return {k: int(v[0]) for k, v in
                self._keyed(shape, stamp_table(shape.name), "stamp", keys,
                            "LOCK IN SHARE MODE").items()}

    def read_versions(self, shape: TableShape,
                      keys: Mapping[Key, TxnInfo]) -> dict[Key, StoredRow]:
        wanted = list(keys)
        reader = self.ctx.table(shape.name).reader
        found = {}
        for rec in self._by_key(shape, shape.name, reader.select_list, wanted, "FOR UPDATE"):
            row = reader.from_query(rec)
            found[shape.key_of(row)] = row
        stamps = self.stamps(shape, wanted)
        # Locked too (this session writes them next): every read apply decides
        # on is of the latest committed state, none from the snapshot.
        metas = self._keyed(shape, meta_table(shape.name), "xid, live, meta", wanted,
                            "FOR UPDATE")
        out: dict[Key, StoredRow] = {}
        for key, txn in keys.items():
            current, stamp, entry = found.get(key), stamps.get(key, 0), metas.get(key)
            if txn.local:  # a later local write holds the row (its stamp is higher)
                pending = stamp > (txn.xid or 0)
            else:
                recorded = int(entry[0]) if entry else 0
                pending = stamp != recorded or (current is not None and entry is None)
            out[key] = StoredRow(current, entry[2] if entry else None, pending, stamp)
        return out

    def write_rows(self, shape: TableShape, rows: Mapping[Key, Row | None],
                   absent: frozenset[Key] = frozenset()) -> None:
        deletes = [tuple(to_mariadb(v) for v in k) for k, r in rows.items() if r is None]
        upserts = [tuple(to_mariadb(v) for v in r) for k, r in rows.items()
                   if r is not None and k not in absent]
        inserts = [tuple(to_mariadb(v) for v in r) for k, r in rows.items()
                   if r is not None and k in absent]
        if deletes:
            self.cur.executemany(self._delete_sql(shape), deletes)
        if upserts:
            self.cur.executemany(self._upsert_sql(shape), upserts)
        if inserts:
            self._insert_new(shape, inserts)

    def _insert_new(self, shape: TableShape, rows: list[tuple[Any, ...]]) -> None:
        """Rows of keys that had no row when read. The locking read took a gap
        lock on each (the apply session is REPEATABLE READ), so no local insert
        can have come since; should one have, it is never overwritten."""
        cols = ", ".join(quote(c) for c in shape.columns)
        marks = ", ".join("%s" for _ in shape.columns)
        try:
            self.cur.execute("SAVEPOINT rs_insert")
            self.cur.executemany(f"INSERT INTO {quote(shape.name)} ({cols}) VALUES ({marks})",
                                 rows)
            self.cur.execute("RELEASE SAVEPOINT rs_insert")
        except pymysql.err.IntegrityError as e:
            if not e.args or e.args[0] != ER_DUP_ENTRY:
                raise
            self.cur.execute("ROLLBACK TO SAVEPOINT rs_insert")
            raise PendingLocalChange(f"{shape.name}: a row appeared locally since apply read "
                                     f"it; waiting for capture") from e

    def write_versions(self, shape: TableShape, metas: Mapping[Key, tuple[str | None, bool]],
                       stored: Mapping[Key, StoredRow], written: set[Key],
                       owners: Mapping[Key, TxnInfo]) -> None:
        records = []
        for key, (text, live) in metas.items():
            here = stored[key]
            if owners[key].local and here.pending:
                stamp = owners[key].xid or 0  # a later local write stays pending
            else:
                stamp = here.tag or 0  # apply leaves stamps alone
            records.append((*(to_mariadb(v) for v in key), stamp, live, text))
        self._store_entries(shape, records)

    def _store_entries(self, shape: TableShape, records: list[tuple[Any, ...]]) -> None:
        """Version entries (key values, stamp, live, meta text), upserted."""
        if not records:
            return
        keys = ", ".join(quote(c) for c in shape.key_columns)
        marks = ", ".join("%s" for _ in range(len(shape.key_columns) + 3))
        self.cur.executemany(
            f"INSERT INTO {quote(meta_table(shape.name))} ({keys}, xid, live, meta) "
            f"VALUES ({marks}) ON DUPLICATE KEY UPDATE xid = VALUES(xid), "
            f"live = VALUES(live), meta = VALUES(meta)", records)

    def insert_fresh(self, shape: TableShape, run: FreshRun) -> bool:
        return False  # every run takes the exact path (set-wise writes: not yet)

    def record_fresh(self, shape: TableShape, run: FreshRun) -> bool:
        return False

    def dead_letters(self, query: DeadLetterQuery) -> list[DeadLetterEntry]:
        return DLQ.query(self.cur, query)

    def savepoint(self) -> None:
        self.cur.execute("SAVEPOINT rs_change")

    def release_savepoint(self) -> None:
        self.cur.execute("RELEASE SAVEPOINT rs_change")

    def rollback_to_savepoint(self) -> None:
        self.cur.execute("ROLLBACK TO SAVEPOINT rs_change")
        self.cur.execute("RELEASE SAVEPOINT rs_change")

    def reset_versions(self, shape: TableShape, rows: Mapping[Key, bool]) -> None:
        """A restored row gets a base entry recording its stamp now; a removed
        one loses its entry."""
        keys = list(rows)
        stamps = self.stamps(shape, keys)
        gone = [k for k, exists in rows.items() if not exists]
        for i in range(0, len(gone), KEYS_PER_STATEMENT):
            run = gone[i:i + KEYS_PER_STATEMENT]
            self.cur.execute(f"DELETE FROM {quote(meta_table(shape.name))} WHERE "
                             f"{_keys_in(shape, len(run))}",
                             [to_mariadb(v) for k in run for v in k])
        self._store_entries(shape, [(*(to_mariadb(v) for v in k), stamps.get(k, 0), True, None)
                                    for k, exists in rows.items() if exists])

    def clear_versions(self, shape: TableShape) -> None:
        self.cur.execute(f"DELETE FROM {quote(meta_table(shape.name))}")


class MariaConflictStore:
    """The ConflictStore role of MariaEngine: the conflict log and dead-letter
    queries and an operator's local write, on the engine's main connection."""

    def __init__(self, ctx: MariaContext) -> None:
        self.ctx = ctx

    def conflicts(self, query: ConflictQuery) -> list[ConflictEntry]:
        return CONFLICT_LOG.query(self.ctx.conn, query)

    def conflict_counts(self) -> dict[str, int]:
        return CONFLICT_LOG.counts(self.ctx.conn)

    def prune_conflicts(self, keep_rows: int, keep_days: int) -> None:
        CONFLICT_LOG.prune(self.ctx.conn, keep_rows, keep_days)

    def read_version(self, table: str, key: tuple[Any, ...]) -> tuple[tuple[Any, ...] | None,
                                                                     str | None]:
        shape = self.ctx.shape_of(table)
        reader = self.ctx.table(table).reader
        where = " AND ".join(f"{quote(c)} = %s" for c in shape.key_columns)
        params = tuple(to_mariadb(v) for v in key)
        rows = self.ctx.query(f"SELECT {reader.select_list} FROM {quote(table)} WHERE {where}",
                              params)
        metas = self.ctx.query(f"SELECT meta FROM {quote(meta_table(table))} WHERE {where}",
                               params)
        return (reader.from_query(rows[0]) if rows else None), (metas[0][0] if metas else None)

    def write_local(self, table: str, key: tuple[Any, ...], row: tuple[Any, ...] | None,
                    prior: tuple[Any, ...] | None = None) -> None:
        """An ordinary local write (not under the apply domain: captured like a
        user's). An operator's resolution, so while fenced the database refuses
        it like an application's (as EngineError).

        MariaDB logs no row event for a write that changes nothing, so a row
        written as it already is (a repair reasserting it) is deleted and
        inserted again in the one transaction: the campus's copy then travels
        as a new version. A ``prior`` equal to the row already there is not
        logged either (the delete that follows still is)."""
        shape = self.ctx.shape_of(table)
        conn = self.ctx.connect(autocommit=False)
        try:
            cur = Cursor(conn.cursor())
            if row is not None and prior is None and self._current(cur, shape, key) == row:
                cur.execute(self.ctx.delete_sql(shape), MARIA.values(key))
                cur.execute(f"INSERT INTO {quote(table)} "
                            f"({', '.join(quote(c) for c in shape.columns)}) VALUES "
                            f"({', '.join('%s' for _ in shape.columns)})", MARIA.values(row))
            else:
                write_local_rows(cur, MARIA, self.ctx.upsert_sql(shape),
                                 self.ctx.delete_sql(shape), key, row, prior)
            conn.commit()
        except pymysql.err.MySQLError as e:
            conn.rollback()
            if e.args and e.args[0] == ER_SIGNAL_EXCEPTION:
                raise EngineError(str(e.args[1])) from e
            raise EngineError(f"the local write to {table} failed on MariaDB: {e}") from e
        finally:
            conn.close()

    def _current(self, cur: Cursor, shape: TableShape, key: tuple[Any, ...]) -> Row | None:
        reader = self.ctx.table(shape.name).reader
        where = " AND ".join(f"{quote(c)} = %s" for c in shape.key_columns)
        rows = cur.execute(f"SELECT {reader.select_list} FROM {quote(shape.name)} WHERE "
                           f"{where} FOR UPDATE", MARIA.values(key)).fetchall()
        return reader.from_query(rows[0]) if rows else None

    def mark_conflict(self, conflict_id: int, state: str, resolution: str) -> None:
        self.ctx.conn.execute(MARIA.mark_conflict_sql(), (state, resolution, conflict_id))

    def dead_letter_list(self, query: DeadLetterQuery) -> list[DeadLetterEntry]:
        return DLQ.query(self.ctx.conn, query)

    def dead_letter_counts(self) -> dict[str, int]:
        return DLQ.counts(self.ctx.conn, self.ctx.campus)
