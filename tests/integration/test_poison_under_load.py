"""A poison row while every campus writes.

A rule only one campus has (a trigger refusing some names) refuses a row
written at another campus. The receiving campus is busy writing its own
rows at the same time, so every apply plan carries own transactions still
to record: before the apply loop was rebuilt, that kept the plan a 'batch'
forever ("retrying them one by one" 11,000 times in 70 s, nothing applied,
nothing parked). Now the failing transaction is found, its refused change
parked at that campus only, everything else keeps flowing, and ``dlq
retry`` applies it once the rule is fixed.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import psycopg

from tests.helpers import campus_rows, wait_until
from tests.integration.conftest import ctl, wait_ready
from tests.integration.test_conflicts import converged, execute

WRITES = 60
REFUSE_POISON = """
CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.name LIKE 'POISON%' THEN
    RAISE EXCEPTION 'local rule: names starting POISON are not accepted here';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER refuse_poison BEFORE INSERT OR UPDATE ON patients
  FOR EACH ROW EXECUTE FUNCTION refuse_poison()
"""


def patient(pid: str, name: str, home: str) -> tuple[str, tuple[Any, ...]]:
    return ("INSERT INTO patients VALUES (?, ?, ?, '1980-02-02', 'F', ?, '2026-11-23')",
            (pid, f"MRN-{pid}", name, home))


class Writer(threading.Thread):
    def __init__(self, campus: Any, poison_at: int | None = None) -> None:
        super().__init__(name=f"writer-{campus.name}", daemon=True)
        self.campus, self.poison_at = campus, poison_at
        self.errors: list[str] = []

    def run(self) -> None:
        for i in range(WRITES):
            name = "POISON Pill" if i == self.poison_at else "Li Na"
            try:
                execute(self.campus.target, [patient(f"{self.campus.name}-{i}", name,
                                                     self.campus.name)])
            except Exception as e:
                self.errors.append(f"{type(e).__name__}: {e}")


def test_a_row_one_campus_refuses_parks_there_while_every_campus_keeps_writing(
        make_cluster) -> None:
    cluster = make_cluster(3, engines=["sqlite", "postgres", "sqlite"])
    cluster.start_all()
    wait_ready(cluster)
    a, b, c = cluster.campuses
    with psycopg.connect(b.target, autocommit=True) as conn:
        for statement in REFUSE_POISON.split(";\nCREATE TRIGGER"):
            conn.execute(statement if statement.startswith("\nCREATE FUNCTION")
                         else "CREATE TRIGGER" + statement)
    writers = [Writer(a, poison_at=WRITES // 2), Writer(b), Writer(c)]
    for w in writers:
        w.start()
    for w in writers:
        w.join(timeout=120)
        assert not w.is_alive() and w.errors == [], (w.name, w.errors[:3])
    poison = f"{a.name}-{WRITES // 2}"
    everyone = {f"{x.name}-{i}" for x in cluster.campuses for i in range(WRITES)}

    def patients_at(target: Any) -> set[str]:
        return {r[0] for r in campus_rows(target)["patients"]}

    # Everything but the refused row reaches b; a and c hold every row.
    wait_until(lambda: patients_at(b.target) == everyone - {poison}, 90,
               "every other campus's rows to reach the campus with the rule")
    wait_until(lambda: all(patients_at(x.target) == everyone for x in (a, c)), 90,
               "the other campuses to hold every row")

    listed = json.loads(ctl(cluster, "dlq", "list", "--json").stdout)["dead_letters"]
    assert [(e["at_campus"], e["key"], e["state"]) for e in listed] == [
        (b.name, [poison], "parked")]
    assert "names starting POISON" in listed[0]["error"]

    def status_of_b() -> dict[str, Any]:
        nodes = json.loads(ctl(cluster, "status", "--json").stdout)["nodes"]
        return next(n for n in nodes if n["campus"] == b.name)

    # Status reads the books once a second: wait for the read after the park.
    wait_until(lambda: status_of_b()["accounting"]["dead_lettered"] == 1, 30,
               "status to count the parked change")
    nodes = {b.name: status_of_b()}
    assert nodes[b.name]["accounting"]["balanced"]
    assert nodes[b.name]["apply"]["state"] in ("idle", "batch"), nodes[b.name]["apply"]

    with psycopg.connect(b.target, autocommit=True) as conn:
        conn.execute("DROP TRIGGER refuse_poison ON patients")
    done = ctl(cluster, "dlq", "retry", str(listed[0]["id"]), "--at", b.name)
    assert done.returncode == 0, done.stdout + done.stderr
    wait_until(lambda: converged(cluster), 60, "the campuses to hold the same rows")
