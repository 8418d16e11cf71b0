"""A MariaDB campus's change that capture cannot convert (a zero date written
by a legacy application) is not sent and does not stop capture: it is kept
in that campus's dead-letter queue as ``rejected`` with an error naming the
table, column and row; everything else keeps flowing; the row's correction
replicates, and the entry is skipped. Real node processes and servers."""

from __future__ import annotations

import json
from pathlib import Path

from ringsync.commands.demo.cluster import LocalCluster, Schema
from ringsync.commands.demo.lis import (
    create_mariadb_schema,
    create_postgres_schema,
    create_sqlite_database,
    mysql_connect,
)
from tests.helpers import wait_until
from tests.integration.conftest import wait_ready
from tests.integration.test_conflicts import ctl
from tests.mariadb_fixtures import need_mariadb

SQLITE_DDL = "CREATE TABLE visits(id INTEGER PRIMARY KEY, day DATE, note TEXT);"
MARIADB_DDL = ("CREATE TABLE visits(id BIGINT PRIMARY KEY, day DATE NULL, note TEXT) "
               "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;")
SCHEMA = Schema(("visits",), create_postgres_schema,
                lambda path: create_sqlite_database(path, SQLITE_DDL),
                lambda url: create_mariadb_schema(url, MARIADB_DDL))


def legacy_write(url: str, *statements: str) -> None:
    """One transaction as a legacy application writes it: zero dates allowed."""
    conn = mysql_connect(url, autocommit=False)
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION sql_mode = ''")
            for statement in statements:
                cur.execute(statement)
        conn.commit()
    finally:
        conn.close()


def sqlite_rows(path: Path) -> dict[int, tuple]:
    import sqlite3

    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {r[0]: r for r in conn.execute("SELECT id, day, note FROM visits")}
    finally:
        conn.close()


def test_a_zero_date_is_rejected_and_kept_while_capture_goes_on(tmp_path: Path) -> None:
    need_mariadb()
    cluster = LocalCluster.create(tmp_path / "c", 2, engines=["mariadb", "sqlite"],
                                  schema=SCHEMA, conflict_policies="",
                                  replication={"heal_after_seconds": 2.0})
    try:
        cluster.start_all()
        wait_ready(cluster)
        m, s = cluster.campuses
        legacy_write(m.target, "INSERT INTO visits VALUES (1, '0000-00-00', 'zero')")
        legacy_write(m.target, "INSERT INTO visits VALUES (2, '2026-01-02', 'fine')")
        legacy_write(m.target, "INSERT INTO visits VALUES (3, '2026-00-15', 'part zero')",
                     "INSERT INTO visits VALUES (4, '2026-01-03', 'same txn')")
        wait_until(lambda: {2, 4} <= set(sqlite_rows(s.database)), 60,
                   "the convertible rows to flow past the rejected ones")
        assert not {1, 3} & set(sqlite_rows(s.database))

        listed = json.loads(ctl(cluster, "dlq", "list", "--state", "rejected",
                                "--json").stdout)["dead_letters"]
        assert sorted(e["key"] for e in listed) == [[1], [3]]
        assert {e["at_campus"] for e in listed} == {m.name}
        one = next(e for e in listed if e["key"] == [1])
        assert "column 'day' of table 'visits' in the row with id=1" in one["error"]
        assert "0000-00-00" in one["error"] and "not sent" in one["error"]
        assert "ctl dlq skip" in one["error"]
        assert one["row"] == {"id": 1, "day": None, "note": "zero"}  # as far as it converts
        wait_until(lambda: json.loads(ctl(cluster, "status", "--json").stdout)["nodes"][0][
            "dead_letters"]["rejected"] == 2, 30, "status to count the rejected changes")
        node = json.loads(ctl(cluster, "status", "--json").stdout)["nodes"][0]
        assert node["healthy"]
        assert node["accounting"]["balanced"]
        assert any("could not convert 2 change(s)" in a for a in node["alerts"])

        refused = ctl(cluster, "dlq", "retry", str(one["id"]), "--at", m.name)
        assert refused.returncode != 0
        assert "cannot be retried" in refused.stdout + refused.stderr

        # the corrections replicate: an UPDATE whose old image holds the zero
        # date, and a DELETE of the other row
        legacy_write(m.target, "UPDATE visits SET day = '2026-02-01' WHERE id = 1",
                     "DELETE FROM visits WHERE id = 3")
        wait_until(lambda: 1 in sqlite_rows(s.database), 60, "the corrected row to arrive")
        assert sqlite_rows(s.database)[1] == (1, "2026-02-01", "zero")
        for entry in listed:
            done = ctl(cluster, "dlq", "skip", str(entry["id"]), "--at", m.name)
            assert done.returncode == 0, done.stdout + done.stderr
        conn = mysql_connect(m.target)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT id, CAST(day AS CHAR), note FROM visits ORDER BY id")
                held = {r[0]: tuple(r) for r in cur.fetchall()}
        finally:
            conn.close()
        wait_until(lambda: sqlite_rows(s.database) == held, 30, "both campuses to agree")

        def counts() -> dict:
            return json.loads(ctl(cluster, "status", "--json").stdout)["nodes"][0]["dead_letters"]

        # status reads the queue's counts every few seconds
        wait_until(lambda: counts()["rejected"] == 0 and counts()["skipped"] == 2, 30,
                   "status to count both entries skipped")
        # never received, so not in the books, skipped or not
        assert json.loads(ctl(cluster, "status", "--json").stdout)["nodes"][0][
            "accounting"]["balanced"]
        # the entry names where in the binary log the change was
        assert "(binary log " in one["error"]
    finally:
        cluster.stop_all()
        cluster.stop_databases()
