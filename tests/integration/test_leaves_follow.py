"""Child rows that follow their parent row to a PostgreSQL subset leaf ([leaf.follows]).

A ring of two SQLite campuses carries a SQLite satellite taking everything
and a PostgreSQL clinic whose route takes the patients of one home campus,
their lab orders (following the patient) and the orders' specimens
(following the order). Writers at both ring campuses admit patients, move
them between home campuses (their orders and specimens must move with
them), move orders to other patients, and delete orders and patients with
their children. The clinic must hold exactly the rows an independent SQL
join at the ring selects; then its route is changed in the cluster file
while the writers go on, every node restarted, and it must hold the new
route's subset.
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
from pathlib import Path

from tests.helpers import campus_rows, wait_until
from tests.integration.conftest import ctl, wait_ready

FOLLOWS = {"lab_orders": {"parent": "patients", "by": "patient_id"},
           "specimens": {"parent": "lab_orders", "by": ["order_id"]}}
CLINIC = {"name": "clinic", "engine": "postgres", "parents": ["chaohui", "wangjiangshan"],
          "tables": ["patients", "lab_orders", "specimens"],
          "filter": {"patients": 'home_campus == "fuyang"'}, "follows": FOLLOWS}
HOMES = ("fuyang", "chaohui", "yuecheng")


def subset_sql(home: str) -> dict[str, str]:
    """What the clinic's route selects, written as SQL joins (not by ringsync)."""
    patients = f"SELECT patient_id FROM patients WHERE home_campus = '{home}'"
    orders = f"SELECT order_id FROM lab_orders WHERE patient_id IN ({patients})"
    return {"patients": f"SELECT * FROM patients WHERE home_campus = '{home}'",
            "lab_orders": f"SELECT * FROM lab_orders WHERE patient_id IN ({patients})",
            "specimens": f"SELECT * FROM specimens WHERE order_id IN ({orders})"}


def expected(db: Path, home: str) -> dict[str, list[tuple]]:
    conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=30)
    try:
        return {t: sorted(conn.execute(sql).fetchall(), key=repr)
                for t, sql in subset_sql(home).items()}
    finally:
        conn.close()


class Writer(threading.Thread):
    """Random clinical writes at one ring campus, moving rows in and out of
    every route: admissions, a patient's home campus changing, an order
    moved to another patient, an order or a patient deleted with its children."""

    def __init__(self, db: Path, prefix: str, seed: int) -> None:
        super().__init__(daemon=True, name=f"writer-{prefix}")
        self.db, self.prefix, self.rng = db, prefix, random.Random(seed)
        self.stop_now = threading.Event()
        self.done = 0
        self.errors: list[str] = []
        self.n = 0

    def run(self) -> None:
        conn = sqlite3.connect(self.db, isolation_level=None, timeout=30)
        try:
            while not self.stop_now.wait(0.02):
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    self._one(conn)
                    conn.execute("COMMIT")
                    self.done += 1
                except sqlite3.Error as e:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    self.errors.append(str(e))
        finally:
            conn.close()

    def _ids(self, conn: sqlite3.Connection, table: str, key: str) -> list[str]:
        return [r[0] for r in conn.execute(
            f"SELECT {key} FROM {table} WHERE {key} LIKE ? ORDER BY {key}", (f"{self.prefix}%",))]

    def _one(self, conn: sqlite3.Connection) -> None:
        rng, roll = self.rng, self.rng.random()
        patients = self._ids(conn, "patients", "patient_id")
        orders = self._ids(conn, "lab_orders", "order_id")
        if roll < 0.45 or len(patients) < 3:
            self.n += 1
            p, o, s = (f"{self.prefix}{kind}{self.n}" for kind in ("p", "o", "s"))
            conn.execute("INSERT INTO patients VALUES (?, ?, 'name', NULL, 'F', ?, 't')",
                         (p, f"mrn-{p}", rng.choice(HOMES)))
            conn.execute("INSERT INTO lab_orders VALUES (?, ?, 'GLU', 'STAT', 'ordered', "
                         "'chaohui', 't')", (o, p))
            conn.execute("INSERT INTO specimens VALUES (?, ?, 'serum', 't', 'chaohui')", (s, o))
        elif roll < 0.6:  # the patient (and so their orders and specimens) moves
            conn.execute("UPDATE patients SET home_campus = ? WHERE patient_id = ?",
                         (rng.choice(HOMES), rng.choice(patients)))
        elif roll < 0.7 and orders:  # an order moves to another patient
            conn.execute("UPDATE lab_orders SET patient_id = ? WHERE order_id = ?",
                         (rng.choice(patients), rng.choice(orders)))
        elif roll < 0.8 and orders:  # an order changes, staying where it is
            conn.execute("UPDATE lab_orders SET status = 'resulted' WHERE order_id = ?",
                         (rng.choice(orders),))
        elif roll < 0.9 and orders:  # an order is cancelled with its specimens
            o = rng.choice(orders)
            conn.execute("DELETE FROM specimens WHERE order_id = ?", (o,))
            conn.execute("DELETE FROM lab_orders WHERE order_id = ?", (o,))
        else:  # a patient is removed with everything of theirs
            p = rng.choice(patients)
            conn.execute("DELETE FROM specimens WHERE order_id IN "
                         "(SELECT order_id FROM lab_orders WHERE patient_id = ?)", (p,))
            conn.execute("DELETE FROM lab_orders WHERE patient_id = ?", (p,))
            conn.execute("DELETE FROM patients WHERE patient_id = ?", (p,))


def test_orders_and_specimens_follow_their_patient_to_a_postgres_leaf(make_cluster):
    cluster = make_cluster(2, leaves=[CLINIC, {"name": "sat", "parents": ["wangjiangshan"]}])
    ring_db, other_db = (c.database for c in cluster.campuses)
    clinic = cluster.campus("clinic").target
    writers = [Writer(ring_db, "a-", 1), Writer(other_db, "b-", 2)]
    every = list(writers)
    try:
        for c in cluster.campuses:
            cluster.start(c.name)
        wait_ready(cluster)
        writers[0].start()  # rows before the leaves' initial loads
        wait_until(lambda: writers[0].done >= 30, 60, "the ring to have rows to copy")
        cluster.start("clinic")
        cluster.start("sat")
        wait_ready(cluster)
        writers[1].start()
        wait_until(lambda: all(w.done >= 150 for w in writers), 300,
                   "both ring campuses to write while the leaves follow")
        _stop(writers)

        def settled(home: str) -> bool:
            ring = campus_rows(ring_db)
            held = campus_rows(clinic)
            want = expected(ring_db, home)
            return (ring == campus_rows(other_db) == campus_rows(cluster.campus("sat").database)
                    and {t: held[t] for t in want} == want and held["lab_results"] == [])

        wait_until(lambda: settled("fuyang"), 300,
                   "the clinic to hold its patients with their orders and specimens")
        want = expected(ring_db, "fuyang")
        assert want["patients"] and want["lab_orders"] and want["specimens"]
        print(f"\nclinic holds {', '.join(f'{len(v)} {t}' for t, v in want.items())} "
              f"after {sum(w.done for w in writers)} transactions")
        # One more move, after the rest settled: a patient of the clinic, with orders, leaves.
        mover = next(r[1] for r in want["lab_orders"])
        conn = sqlite3.connect(ring_db, timeout=30)
        with conn:
            conn.execute("UPDATE patients SET home_campus = 'chaohui' WHERE patient_id = ?",
                         (mover,))
        conn.close()
        wait_until(lambda: settled("fuyang"), 300, "the moved patient's orders to leave too")
        want = expected(ring_db, "fuyang")
        status = json.loads(ctl(cluster, "status", "--json").stdout)
        seen = [x for n in status["nodes"] if n["role"] == "member"
                for x in n["leaves"] if x["name"] == "clinic"]
        cascades = sum(x["cascades"] for x in seen)
        assert cascades >= 1  # patients moved: copied again
        print(f"re-seeds for moved parent rows: {cascades}")
        checked = json.loads(ctl(cluster, "verify", "--json").stdout)["leaves"]["clinic"]
        assert checked["consistent"], checked
        assert checked["tables"]["specimens"]["leaf_rows"] == len(want["specimens"])

        # A new route, while the ring campuses go on writing.
        writers = [Writer(ring_db, "a-", 3), Writer(other_db, "b-", 4)]
        every += writers
        for w in writers:
            w.n = 10_000
            w.start()
        cluster.stop_all()
        text = cluster.cluster_file.read_text()
        cluster.cluster_file.write_text(text.replace('home_campus == \\"fuyang\\"',
                                                     'home_campus == \\"yuecheng\\"'))
        assert cluster.cluster_file.read_text() != text
        cluster.start_all()
        wait_ready(cluster)
        done = [w.done for w in writers]
        wait_until(lambda: all(w.done >= d + 60 for w, d in zip(writers, done, strict=True)),
                   300, "the ring campuses to write after the route changed")
        _stop(writers)
        wait_until(lambda: settled("yuecheng"), 300, "the clinic to hold the new route's subset")
        assert "changed since it copied its subset" in cluster.campus("clinic").log.read_text()
        assert [e for w in every for e in w.errors] == []
    finally:
        _stop(every)


def _stop(writers: list[Writer]) -> None:
    for w in writers:
        w.stop_now.set()
        if w.is_alive():
            w.join(30)
