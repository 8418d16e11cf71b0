"""A poison row: a constraint one campus has and the others lack.

The rows that break it are parked in that campus's dead-letter queue (with
the error), a later change of the same row parks behind them, everything
else keeps flowing; once the constraint is fixed, `ctl dlq retry` applies
them in order and the campuses hold the same rows again. From a SQLite
origin and from a PostgreSQL one (whose INSERTs travel as COPY text).
"""

from __future__ import annotations

import json
import subprocess
import sys

import psycopg
import pytest

from tests.helpers import campus_rows, wait_until
from tests.integration.conftest import wait_ready
from tests.integration.test_conflicts import converged, ctl, execute


def audit(cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ringsync.commands.cli", "audit", *args],
                          capture_output=True, text=True, timeout=60, cwd=cluster.root)


def result(rid: str, value: float) -> tuple[str, tuple]:
    return ("INSERT INTO lab_results VALUES (?, 'o1', 'GLU', ?, NULL, 'mmol/L', NULL, "
            "'resulted', '2026-11-23', 1)", (rid, value))


@pytest.mark.parametrize("origin", ["sqlite", "postgres"])
def test_poison_rows_park_while_the_rest_flows_then_retry_applies_them(make_cluster,
                                                                      origin: str) -> None:
    """From a PostgreSQL origin the poison transaction's INSERTs arrive as COPY
    text (TxnFrame.raw_inserts): the batch's set-wise write fails at b, and
    isolating it decodes the text and parks the one row, as from SQLite."""
    cluster = make_cluster(2, engines=[origin, "postgres"])
    try:
        cluster.start_all()
        wait_ready(cluster)
        a, b = cluster.campuses
        with psycopg.connect(b.target, autocommit=True) as conn:
            conn.execute("ALTER TABLE lab_results ADD CONSTRAINT sane_value "
                         "CHECK (value_num < 1000)")
        # One transaction: two good rows and one that b's constraint refuses.
        execute(a.target, [result("r1", 5.1), result("r2", 5000.0), result("r3", 7.2)])
        # A later change of the poison row, then unrelated traffic.
        execute(a.target, [("UPDATE lab_results SET status = 'verified' WHERE result_id = 'r2'",
                            ())])
        execute(a.target, [("INSERT INTO patients VALUES ('p9', 'MRN9', 'Zhou Min', "
                            "'1980-02-02', 'M', ?, '2026-11-23')", (a.name,))])

        def b_has(table: str, key: str) -> bool:
            return any(r[0] == key for r in campus_rows(b.target)[table])

        wait_until(lambda: b_has("patients", "p9"), 60, "traffic after the poison row to flow")
        assert b_has("lab_results", "r1") and b_has("lab_results", "r3")
        assert not b_has("lab_results", "r2")

        listed = json.loads(ctl(cluster, "dlq", "list", "--json").stdout)
        parked = [e for e in listed["dead_letters"] if e["at_campus"] == b.name]
        assert [(e["op"], e["key"], e["state"]) for e in parked] == [
            ("insert", ["r2"], "parked"), ("update", ["r2"], "parked")]
        assert "sane_value" in parked[0]["error"]
        assert "waiting behind" in parked[1]["error"]
        assert parked[0]["row"]["value_num"] == 5000.0
        assert not [e for e in listed["dead_letters"] if e["at_campus"] == a.name]
        def books() -> dict:
            return json.loads(ctl(cluster, "status", "--json").stdout)["nodes"][1]["accounting"]

        # Every change a sent is accounted for at b: 3 + 1 + 1 received, 3 applied, 2 parked.
        wait_until(lambda: books() == {"received": 5, "applied": 3, "dead_lettered": 2,
                                       "in_flight": 0, "balanced": True}, 10,
                   "status to account for every change")
        assert json.loads(ctl(cluster, "status", "--json").stdout)["nodes"][1][
            "dead_letters"]["parked"] == 2
        if origin == "postgres":  # a recorded p9's row from its COPY text (the poison
            # transaction's rows go exact: r2 changed again before a recorded them)
            wait_until(lambda: json.loads(ctl(cluster, "status", "--json").stdout)["nodes"][0][
                "apply"]["fresh_rows"] >= 1, 30, "a to record its own rows set-wise")

        still = ctl(cluster, "dlq", "retry", str(parked[0]["id"]), "--at", b.name)
        assert still.returncode == 1  # the constraint is still there
        assert json.loads(still.stdout)["outcome"][0]["state"] == "parked"

        with psycopg.connect(b.target, autocommit=True) as conn:
            conn.execute("ALTER TABLE lab_results DROP CONSTRAINT sane_value")
        done = ctl(cluster, "dlq", "retry", str(parked[0]["id"]), "--at", b.name)
        assert done.returncode == 0, done.stdout + done.stderr
        assert [o["state"] for o in json.loads(done.stdout)["outcome"]] == ["applied", "applied"]
        wait_until(lambda: converged(cluster), 60, "the campuses to hold the same rows")
        r2 = next(r for r in campus_rows(b.target)["lab_results"] if r[0] == "r2")
        assert r2[7] == "verified"  # the update that waited behind it applied after it
        entry = json.loads(ctl(cluster, "dlq", "show", str(parked[0]["id"]), "--at",
                               b.name).stdout)
        assert entry["state"] == "applied"
        assert [x["action"] for x in entry["actions"]] == ["parked", "retry", "retry"]
        assert entry["actions"][-1]["by"] == "console"
        # b's audit trail holds both retries, by the operator's identity, the row
        # named only by its keyed hash; a copy verifies offline against the CA.
        trail = b.dir / "audit"
        found = audit(cluster, "query", "--path", str(trail), "--table", "lab_results",
                      "--key", '["r2"]', "--key-file", str(b.dir / "audit.key"), "--json")
        assert found.returncode == 0, found.stderr
        assert [(e["action"], e["dlq_action"], e["outcome"], e["who"], e["id"])
                for e in json.loads(found.stdout)["entries"]] == [
            ("dead-letter", "retry", "parked", "operator/console", parked[0]["id"]),
            ("dead-letter", "retry", "applied,applied", "operator/console", parked[0]["id"])]
        assert "r2" not in (trail / "trail.jsonl").read_text()
        checked = audit(cluster, "verify", "--path", str(trail), "--ca",
                        str(cluster.pki_dir / "ca.crt"), "--json")
        assert checked.returncode == 0 and json.loads(checked.stdout)["entries"] == 2, (
            checked.stdout)
    finally:
        cluster.stop_all()
        cluster.stop_databases()
