"""Incremental verification digests, on every engine: after random histories of
application writes (multi-row updates and deletes, upserts, key changes, a
rolled-back transaction, and on SQLite ``INSERT OR REPLACE``) mixed with
ringsync's own apply, the digests the database kept equal a full hash of the
rows at every depth, before and after folds; one value changed behind the
triggers' back shows as drift in a stock check, which rebuilds them; turning
the setting off removes them."""

from __future__ import annotations

import random
import sqlite3
from typing import Any

import psycopg
import pytest

from node.engines.postgres.engine import PostgresEngine
from node.engines.sqlite.engine import SQLiteEngine
from node.model import Change, Op
from tests.contract.campuses import Campus, PostgresCampus, SQLiteCampus
from tests.contract.test_verify_contract import as_hex
from tests.contract.typed import apply

DEPTHS = (0, 3, 9, 14)
SQLITE_DDL = "CREATE TABLE hist(id INTEGER, tag TEXT, v INTEGER, t TEXT, PRIMARY KEY (id, tag))"
POSTGRES_DDL = "CREATE TABLE hist(id bigint, tag text, v bigint, t text, PRIMARY KEY (id, tag))"
HISTORIES = 3
STEPS = 40


def random_statement(rng: random.Random, sqlite: bool) -> list[str]:
    """One application transaction of a random kind."""
    i, j = rng.randrange(60), rng.randrange(60)
    tag = rng.choice(["a", "b", "c,d", ""])
    roll = rng.random()
    if roll < 0.3:
        return [f"INSERT INTO hist VALUES ({i}, '{tag}', {j}, 'x{j}') "
                f"ON CONFLICT (id, tag) DO UPDATE SET v = excluded.v"]
    if roll < 0.45:
        return [f"UPDATE hist SET v = v + 1, t = t || '!' WHERE id % 5 = {i % 5}"]
    if roll < 0.55:
        return [f"DELETE FROM hist WHERE id % 7 = {i % 7} AND v % 2 = {j % 2}"]
    if roll < 0.65:  # moves rows to other keys (so other buckets)
        return [f"UPDATE hist SET id = id + 1000 WHERE id = {i} AND id < 5000"]
    if roll < 0.75 and sqlite:
        return [f"INSERT OR REPLACE INTO hist VALUES ({i}, '{tag}', -{j}, 'replaced')"]
    if roll < 0.85:
        return [f"INSERT INTO hist VALUES ({i + 2000}, '{tag}', 1, 'p') ON CONFLICT DO NOTHING",
                f"DELETE FROM hist WHERE id = {i + 2000}"]
    return [f"INSERT INTO hist VALUES ({i + 3000}, 'n', {j}, NULL) ON CONFLICT DO NOTHING"]


class DigestsContract(Campus):
    TABLES = ("hist",)
    sqlite = False

    def kept_equal_rows(self, engine: Any) -> None:
        for bits in DEPTHS:
            kept = engine.verifier.bucket_digests("hist", bits, incremental=True)
            full = engine.verifier.bucket_digests("hist", bits)
            assert kept.mode == "incremental" and full.mode == "stock"
            assert not full.drift, bits
            assert as_hex(kept.buckets) == as_hex(full.buckets), bits
            assert kept.applied == full.applied

    def rolled_back(self) -> None:
        raise NotImplementedError

    def behind_the_triggers(self, engine: Any) -> None:
        raise NotImplementedError

    @pytest.mark.parametrize("history", range(HISTORIES))
    def test_kept_digests_equal_a_full_hash_after_random_histories(
            self, engine: Any, history: int) -> None:
        rng = random.Random(1000 + history)
        seq = 0
        for step in range(STEPS):
            roll = rng.random()
            if roll < 0.2:  # ringsync's own apply: no capture, digests all the same
                seq += 1
                k = rng.randrange(60)
                apply(engine, [Change("hist", Op.INSERT, new=(5000 + seq, "r", k, "applied"))],
                      "x", seq)
            elif roll < 0.25:
                self.rolled_back()
            else:
                self.app_write(*random_statement(rng, self.sqlite))
            if step % 10 == 9:
                self.kept_equal_rows(engine)
            if rng.random() < 0.3:
                engine.verifier.fold_digests()
        self.kept_equal_rows(engine)
        engine.verifier.fold_digests()
        self.kept_equal_rows(engine)

    def test_a_write_past_the_triggers_shows_as_drift_and_is_rebuilt(self, engine: Any) -> None:
        self.app_write(*(f"INSERT INTO hist VALUES ({i}, 'a', {i}, 't')" for i in range(30)))
        engine.verifier.fold_digests()
        self.behind_the_triggers(engine)
        kept = engine.verifier.bucket_digests("hist", 14, incremental=True)
        full = engine.verifier.bucket_digests("hist", 14)
        assert full.drift and as_hex(kept.buckets) != as_hex(full.buckets)
        self.kept_equal_rows(engine)  # rebuilt from the rows

    def test_rows_moved_to_other_keys_and_replaced_after_a_fold(self, engine: Any) -> None:
        self.app_write(*(f"INSERT INTO hist VALUES ({i}, 'a', {i}, 't')" for i in range(30)))
        engine.verifier.fold_digests()
        self.app_write("UPDATE hist SET id = id + 500 WHERE id < 10")
        self.kept_equal_rows(engine)
        engine.verifier.fold_digests()
        self.app_write("UPDATE hist SET tag = 'b' WHERE id > 500", "DELETE FROM hist WHERE id = 20")
        self.kept_equal_rows(engine)
        engine.verifier.fold_digests()
        self.kept_equal_rows(engine)

    def test_a_campus_opened_on_rows_seeds_its_digests(self, engine: Any) -> None:
        engine.close()
        self.app_write(*(f"INSERT INTO hist VALUES ({i}, 'b', {i}, 'seed')" for i in range(50)))
        engine.open()
        self.kept_equal_rows(engine)


class TestSQLiteDigests(DigestsContract, SQLiteCampus):
    SQLITE_DDL = SQLITE_DDL
    sqlite = True

    def new_engine(self, sets: dict[str, str] | None = None) -> SQLiteEngine:
        return SQLiteEngine(self.path, self.TABLES, self.campus, sets=sets, digests=True)

    def rolled_back(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            conn.execute("BEGIN")
            conn.execute("DELETE FROM hist")
            conn.execute("ROLLBACK")
        finally:
            conn.close()

    def behind_the_triggers(self, engine: Any) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:  # what the digests cannot see: the triggers dropped for a moment
            sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = '_rs_vdu_hist'"
                               ).fetchone()[0]
            conn.execute("BEGIN")
            conn.execute("DROP TRIGGER _rs_vdu_hist")
            conn.execute("UPDATE hist SET v = -1 WHERE id = 3")
            conn.execute(sql)
            conn.execute("COMMIT")
        finally:
            conn.close()

    def test_a_fold_in_small_batches_keeps_them_exact(self, engine: Any) -> None:
        from node.engines.sqlite.digests import fold

        self.app_write(*(f"INSERT INTO hist VALUES ({i}, 'a', {i}, 't')" for i in range(40)))
        self.app_write("UPDATE hist SET id = id + 100 WHERE id < 20", "DELETE FROM hist "
                       "WHERE id % 3 = 0")
        conn = engine.ctx.connect()
        try:
            assert fold(conn, engine.ctx.shape_of("hist"), batch=7, pause=0.0) > 40
        finally:
            conn.close()
        self.kept_equal_rows(engine)

    def test_turned_off_the_triggers_and_digests_go(self, engine: Any) -> None:
        engine.close()
        off = SQLiteEngine(self.path, self.TABLES, self.campus, digests=False)
        off.open()
        try:
            conn = sqlite3.connect(self.path)
            try:
                assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name LIKE "
                                    "'_rs_vd%'").fetchone() == (1,)  # only _rs_vdigest
                assert conn.execute("SELECT count(*) FROM _rs_vrow").fetchone() == (0,)
            finally:
                conn.close()
            self.app_write("INSERT INTO hist VALUES (1, 'z', 1, 'after')")
            assert off.verifier.bucket_digests("hist", 3, incremental=True).mode == "stock"
        finally:
            off.close()


class TestPostgresDigests(DigestsContract, PostgresCampus):
    POSTGRES_DDL = POSTGRES_DDL

    def new_engine(self, sets: dict[str, str] | None = None) -> PostgresEngine:
        return PostgresEngine(self.dsn, self.TABLES, self.campus, sets=sets, digests=True)

    def rolled_back(self) -> None:
        with psycopg.connect(self.dsn) as conn:
            conn.execute("DELETE FROM hist")
            conn.rollback()

    def test_a_big_fold_vacuums_what_it_deleted(self, engine: Any,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
        from node.engines.postgres import verifying

        monkeypatch.setattr(verifying, "VACUUM_AFTER_DEAD", 1)
        self.app_write(*(f"INSERT INTO hist VALUES ({i}, 'a', {i}, 't')" for i in range(30)))
        assert engine.verifier.fold_digests() > 0  # VACUUM ran: it refuses a transaction
        self.kept_equal_rows(engine)

    def behind_the_triggers(self, engine: Any) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("ALTER TABLE hist DISABLE TRIGGER rs_vdu_hist")
            conn.execute("UPDATE hist SET v = -1 WHERE id = 3")
            conn.execute("ALTER TABLE hist ENABLE ALWAYS TRIGGER rs_vdu_hist")
