"""Hot rows: every campus runs a TPC-B-like workload at once on a handful of
shared counter rows (balances configured as ``delta`` columns).

Before the apply loop was rebuilt this stopped every campus for good within
seconds: apply deadlocked against the applications' own transactions, fell
back to one transaction at a time, then retried a pending local change
forever. Now apply locks rows in one order and yields, and a batch that
meets a hot row holds it while capture catches up. Asserted with our own
SQL on every campus: every history row everywhere, every balance equal to
the sum of its history deltas, every table identical, no restart, and no
application transaction failed because of replication.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ringsync.commands.demo.cluster import LocalCluster, Schema
from tests.helpers import wait_until
from tests.integration.conftest import ctl, wait_ready

LONG = os.environ.get("RINGSYNC_LONG_TESTS") == "1"
TXNS_PER_CAMPUS = 2000 if LONG else 250
TABLES = ("accounts", "tellers", "branches", "history")
BRANCHES, TELLERS, ACCOUNTS = 1, 3, 6

POLICIES = """\
[conflicts.tables.accounts]
delta = ["abalance"]

[conflicts.tables.tellers]
delta = ["tbalance"]

[conflicts.tables.branches]
delta = ["bbalance"]
"""

DDL = """
CREATE TABLE branches(bid integer PRIMARY KEY, bbalance bigint NOT NULL, name text NOT NULL);
CREATE TABLE tellers(tid integer PRIMARY KEY, bid integer NOT NULL, tbalance bigint NOT NULL);
CREATE TABLE accounts(aid integer PRIMARY KEY, bid integer NOT NULL, abalance bigint NOT NULL);
CREATE TABLE history(hid text PRIMARY KEY, tid integer NOT NULL, bid integer NOT NULL,
                     aid integer NOT NULL, delta bigint NOT NULL)
"""


def seed_statements() -> list[str]:
    out = [f"INSERT INTO branches VALUES ({b}, 0, 'branch {b}')" for b in range(1, BRANCHES + 1)]
    out += [f"INSERT INTO tellers VALUES ({t}, 1, 0)" for t in range(1, TELLERS + 1)]
    out += [f"INSERT INTO accounts VALUES ({a}, 1, 0)" for a in range(1, ACCOUNTS + 1)]
    return out


def create_postgres(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in DDL.split(";") + seed_statements():
            if statement.strip():
                conn.execute(statement)


def create_sqlite(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(DDL + ";\n" + ";\n".join(seed_statements()) + ";")
        conn.commit()
    finally:
        conn.close()


TPCB = Schema(TABLES, create_postgres, create_sqlite)


class Teller(threading.Thread):
    """One campus's application: TPC-B transactions, each on its own
    connection's transaction; any error is an application failure."""

    def __init__(self, campus: str, target: Path | str, engine: str, seed: int) -> None:
        super().__init__(name=f"tpcb-{campus}", daemon=True)
        self.campus, self.target, self.engine = campus, target, engine
        self.rng = random.Random(seed)
        self.failures: list[str] = []
        self.done = 0

    def run(self) -> None:
        if self.engine == "postgres":
            with psycopg.connect(str(self.target)) as conn:
                self._loop(conn, "%s")
        else:
            conn = sqlite3.connect(self.target, timeout=30, isolation_level=None)
            try:
                self._loop(conn, "?")
            finally:
                conn.close()

    def _loop(self, conn: Any, m: str) -> None:
        for i in range(TXNS_PER_CAMPUS):
            aid = self.rng.randint(1, ACCOUNTS)
            tid = self.rng.randint(1, TELLERS)
            delta = self.rng.randint(-5000, 5000)
            statements = [
                (f"UPDATE accounts SET abalance = abalance + {m} WHERE aid = {m}", (delta, aid)),
                (f"UPDATE tellers SET tbalance = tbalance + {m} WHERE tid = {m}", (delta, tid)),
                (f"UPDATE branches SET bbalance = bbalance + {m} WHERE bid = 1", (delta,)),
                (f"INSERT INTO history VALUES ({m}, {m}, 1, {m}, {m})",
                 (f"{self.campus}-{i}", tid, aid, delta)),
            ]
            try:
                if self.engine == "postgres":
                    with conn.transaction():
                        for sql, params in statements:
                            conn.execute(sql, params)
                else:
                    conn.execute("BEGIN IMMEDIATE")
                    for sql, params in statements:
                        conn.execute(sql, params)
                    conn.execute("COMMIT")
                self.done += 1
            except Exception as e:  # an application transaction that failed
                if self.engine != "postgres":
                    conn.execute("ROLLBACK")
                self.failures.append(f"{type(e).__name__}: {e}")


def rows(c: Any) -> dict[str, list[tuple[Any, ...]]]:
    order = {"accounts": "aid", "tellers": "tid", "branches": "bid", "history": "hid"}
    out = {}
    if c.engine == "postgres":
        with psycopg.connect(c.target) as conn:
            for t in TABLES:
                out[t] = [tuple(r) for r in conn.execute(f"SELECT * FROM {t} ORDER BY {order[t]}")]
    else:
        conn = sqlite3.connect(c.target)
        try:
            for t in TABLES:
                out[t] = [tuple(r) for r in conn.execute(f"SELECT * FROM {t} ORDER BY {order[t]}")]
        finally:
            conn.close()
    return out


def balances_match_history(held: dict[str, list[tuple[Any, ...]]]) -> None:
    history = held["history"]
    for table, index, balance in (("accounts", 3, 2), ("tellers", 1, 2), ("branches", 2, 1)):
        sums: dict[int, int] = {}
        for h in history:
            sums[h[index]] = sums.get(h[index], 0) + h[4]
        for row in held[table]:
            assert row[balance] == sums.get(row[0], 0), (table, row, sums.get(row[0], 0))


@pytest.mark.parametrize("engines", [["postgres"] * 3, ["postgres", "postgres", "sqlite"]],
                         ids=["3xpostgres", "2xpostgres+sqlite"])
def test_hot_counter_rows_written_everywhere_converge_without_failing_an_application(
        tmp_path: Path, engines: list[str]) -> None:
    cluster = LocalCluster.create(
        tmp_path / "tpcb", 3, engines=engines, schema=TPCB, conflict_policies=POLICIES,
        replication={"heal_after_seconds": 2.0, "probe_interval_seconds": 0.5})
    try:
        cluster.start_all()
        wait_ready(cluster)
        tellers = [Teller(c.name, c.target, c.engine, seed=n)
                   for n, c in enumerate(cluster.campuses)]
        for t in tellers:
            t.start()
        for t in tellers:
            t.join(timeout=600)
            assert not t.is_alive(), f"{t.name} did not finish"
        failures = [f for t in tellers for f in t.failures]
        assert failures == [], f"{len(failures)} application transactions failed: {failures[:3]}"
        total = sum(t.done for t in tellers)
        assert total == 3 * TXNS_PER_CAMPUS

        def converged() -> bool:
            held = [rows(c) for c in cluster.campuses]
            return len(held[0]["history"]) == total and all(h == held[0] for h in held)

        # No restart: the nodes that ran the whole workload converge by themselves.
        wait_until(converged, 240, "every campus to hold every history row and equal tables")
        cluster.check_alive()
        held = rows(cluster.campuses[0])
        balances_match_history(held)
        assert sum(r[2] for r in held["accounts"]) == sum(h[4] for h in held["history"])

        status = json.loads(ctl(cluster, "status", "--json").stdout)
        for node in status["nodes"]:
            assert node["accounting"]["balanced"], node["campus"]
            assert node["apply"]["state"] in ("idle", "batch"), node["apply"]
            assert not node["apply"].get("alert"), node["apply"]
    finally:
        cluster.stop_all()
        cluster.stop_databases()


def test_a_foreign_change_reaches_a_row_the_campus_writes_without_pause(
        tmp_path: Path) -> None:
    """One campus's users update one row in a tight loop. A foreign change to
    that row must apply while they go on: the batch holds the row while
    capture journals what committed before it took the lock (waiting outside
    the transaction never finds the row quiet)."""
    cluster = LocalCluster.create(
        tmp_path / "hot", 2, engines=["postgres", "postgres"], schema=TPCB,
        conflict_policies=POLICIES,
        replication={"heal_after_seconds": 2.0, "probe_interval_seconds": 0.5})
    stop = threading.Event()
    writes = [0]

    def hammer(dsn: str) -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            while not stop.is_set():
                conn.execute("UPDATE accounts SET abalance = abalance + 1 WHERE aid = 1")
                writes[0] += 1

    try:
        cluster.start_all()
        wait_ready(cluster)
        a, b = cluster.campuses
        writer = threading.Thread(target=hammer, args=(b.target,), daemon=True)
        writer.start()
        wait_until(lambda: writes[0] > 200, 60, "the local writer to be running")
        with psycopg.connect(a.target) as conn, conn.transaction():
            conn.execute("UPDATE accounts SET abalance = abalance + 1000 WHERE aid = 1")
            conn.execute("INSERT INTO history VALUES ('a-1', 1, 1, 1, 1000)")

        def arrived() -> bool:
            with psycopg.connect(b.target) as conn:
                found = conn.execute("SELECT 1 FROM history WHERE hid = 'a-1'").fetchone()
            return found is not None

        wait_until(arrived, 90, "the foreign change to apply while the local writer runs")
        assert writer.is_alive() and not stop.is_set()
        stop.set()
        writer.join(timeout=30)
        wait_until(lambda: rows(a) == rows(b), 60, "both campuses to hold the same rows")
        (balance,) = [r[2] for r in rows(a)["accounts"] if r[0] == 1]
        assert balance == 1000 + writes[0]
    finally:
        stop.set()
        cluster.stop_all()
        cluster.stop_databases()
