"""Incremental verification digests on PostgreSQL: after any history of writes
(applications' multi-row statements, upserts, COPY, TRUNCATE, a replica-role
session, rolled-back transactions, and apply), the digests the database
kept equal a full hash of the rows at every depth, before and after a fold;
a write that bypasses them is caught by a stock check, which rebuilds them."""

from __future__ import annotations

import random
from typing import Any

import psycopg

from node.engines.postgres.engine import PostgresEngine
from node.model import Change, Op
from tests.contract.campuses import TYPED_POSTGRES_DDL, PostgresCampus
from tests.contract.test_verify_contract import PLAIN_POSTGRES, PLAIN_ROWS, as_hex
from tests.contract.typed import TYPED_ROWS, apply

DEPTHS = (0, 5, 14)


class TestIncrementalDigests(PostgresCampus):
    POSTGRES_DDL = TYPED_POSTGRES_DDL + PLAIN_POSTGRES
    TABLES = ("typed", "kv", "plain")

    def new_engine(self, sets: dict[str, str] | None = None) -> PostgresEngine:
        return PostgresEngine(self.dsn, self.TABLES, self.campus, sets=sets, digests=True)

    def assert_kept_equal_rows(self, engine: Any, table: str = "plain") -> None:
        for bits in DEPTHS:
            kept = engine.verifier.bucket_digests(table, bits, incremental=True)
            full = engine.verifier.bucket_digests(table, bits)
            assert kept.mode == "incremental" and full.mode == "stock" and not full.drift
            assert as_hex(kept.buckets) == as_hex(full.buckets), bits
            assert kept.applied == full.applied

    def test_kept_digests_follow_every_kind_of_write(self, engine: Any) -> None:
        rng = random.Random(5)
        rows = list(PLAIN_ROWS)
        apply(engine, [Change("plain", Op.INSERT, new=r) for r in rows[:20]])
        self.assert_kept_equal_rows(engine)
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("UPDATE plain SET t = coalesce(t, '') || '!' WHERE id % 3 = 0")
            conn.execute("DELETE FROM plain WHERE id % 7 = 1")
            conn.execute("INSERT INTO plain (id, tag, i) VALUES (9001, 'a', 1), (9002, 'b', 2) "
                         "ON CONFLICT (id, tag) DO UPDATE SET i = excluded.i")
            conn.execute("INSERT INTO plain (id, tag, i) VALUES (9001, 'a', 5) "
                         "ON CONFLICT (id, tag) DO UPDATE SET i = excluded.i")
            with conn.cursor().copy("COPY plain (id, tag, ts, dt) FROM STDIN") as copy:
                copy.write_row((9100, "copied", "1969-12-31 23:59:59.5+00", "2000-02-29"))
            with conn.transaction():  # a replica-role session: ordinary triggers skip it
                conn.execute("SET LOCAL session_replication_role = replica")
                conn.execute("UPDATE plain SET i = 42 WHERE id = 9002")
            try:
                with conn.transaction():
                    conn.execute("DELETE FROM plain")
                    raise RuntimeError("roll it back")
            except RuntimeError:
                pass
        self.assert_kept_equal_rows(engine)
        victim = rng.choice([r for r in rows[:20] if r[0] % 7 != 1 and r[0] % 3 != 0])
        apply(engine, [Change("plain", Op.DELETE, old=victim),
                       Change("plain", Op.INSERT, new=rows[30])], "x", 2)
        self.assert_kept_equal_rows(engine)
        assert engine.verifier.fold_digests() > 0
        self.assert_kept_equal_rows(engine)
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("TRUNCATE plain")
            conn.execute("INSERT INTO plain (id, tag) VALUES (1, 'after-truncate')")
        self.assert_kept_equal_rows(engine)

    def test_an_application_role_without_rights_on_ringsync_still_writes(
            self, engine: Any) -> None:
        role = f"app_{self.campus.replace('-', '_')}"
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f'CREATE ROLE "{role}" LOGIN')
            conn.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON plain TO "{role}"')
        try:
            with psycopg.connect(self.dsn.replace("user=ringsync", f"user={role}"),
                                 autocommit=True) as app:
                app.execute("INSERT INTO plain (id, tag, i) VALUES (7, 'app', 1)")
                app.execute("UPDATE plain SET i = 2 WHERE id = 7")
                app.execute("DELETE FROM plain WHERE id = 7 AND tag = 'app'")
                app.execute("INSERT INTO plain (id, tag) VALUES (8, 'app')")
            self.assert_kept_equal_rows(engine)
        finally:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                conn.execute(f'DROP OWNED BY "{role}"')
                conn.execute(f'DROP ROLE "{role}"')

    def test_a_write_past_the_triggers_is_caught_and_the_digests_rebuilt(
            self, engine: Any) -> None:
        apply(engine, [Change("plain", Op.INSERT, new=r) for r in PLAIN_ROWS[:10]])
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("ALTER TABLE plain DISABLE TRIGGER rs_vdu_plain")  # a DBA's doing
            conn.execute("UPDATE plain SET i = -1 WHERE id = %s", (PLAIN_ROWS[0][0],))
            conn.execute("ALTER TABLE plain ENABLE ALWAYS TRIGGER rs_vdu_plain")
        kept = engine.verifier.bucket_digests("plain", 14, incremental=True)
        full = engine.verifier.bucket_digests("plain", 14)
        assert full.drift and as_hex(kept.buckets) != as_hex(full.buckets)
        self.assert_kept_equal_rows(engine)  # rebuilt from the rows

    def test_digests_of_an_older_hash_definition_are_rebuilt_at_start(
            self, engine: Any) -> None:
        """Kept digests built before decimals lost their trailing zeros
        (definition 1) would differ from every stock hash: a start rebuilds
        those of tables with a decimal column, once."""
        apply(engine, [Change("plain", Op.INSERT, new=r) for r in PLAIN_ROWS[:10]])
        engine.close()
        with psycopg.connect(self.dsn, autocommit=True) as conn:  # as an older node left them
            conn.execute("UPDATE ringsync.vdigest_base SET w0 = 0 WHERE tbl = 'plain'")
            conn.execute("UPDATE ringsync.vdigest_definition SET version = 1")
        again = self.new_engine()
        again.open()
        try:
            self.assert_kept_equal_rows(again)
            with psycopg.connect(self.dsn) as conn:
                assert conn.execute("SELECT version FROM ringsync.vdigest_definition"
                                    ).fetchall() == [(2,)]
        finally:
            again.close()

    def test_a_table_with_json_is_hashed_from_its_rows(self, engine: Any) -> None:
        apply(engine, [Change("typed", Op.INSERT, new=r) for r in TYPED_ROWS])
        got = engine.verifier.bucket_digests("typed", 3, incremental=True)
        assert got.mode == "stock" and sum(d.rows for d in got.buckets.values()) == 4

    def test_turned_off_the_triggers_and_digests_go(self, engine: Any) -> None:
        engine.close()
        off = PostgresEngine(self.dsn, self.TABLES, self.campus, digests=False)
        off.open()
        try:
            with psycopg.connect(self.dsn) as conn:
                assert conn.execute("SELECT count(*) FROM pg_trigger WHERE tgname LIKE "
                                    "'rs_vd%%'").fetchone() == (0,)
                assert conn.execute("SELECT count(*) FROM ringsync.vdigest_base"
                                    ).fetchone() == (0,)
            assert off.verifier.bucket_digests("plain", 3, incremental=True).mode == "stock"
        finally:
            off.close()
