"""Code dictionaries: each campus codes lab tests its own way; the ring carries
canonical codes (node.dictionary, ringsync.dictionaries).

Real node processes on PostgreSQL, SQLite and (where installed) MariaDB,
with the demo's maps (ringsync.commands.demo.codes): the first campus uses
the canonical codes, the others their own. Convergence is proven on the rows
each database holds, read back through that campus's own map, and by
``ctl verify`` (which compares canonical codes).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ringsync.commands.demo.cluster import CAMPUS_NAMES, LocalCluster
from ringsync.commands.demo.codes import DICTIONARY, MAP_TABLE, local_codes
from ringsync.commands.demo.lis import CampusDb, LisWorkload
from ringsync.commands.demo.mariadb import installed as mariadb_installed
from tests.helpers import campus_rows, wait_until
from tests.integration.conftest import wait_ready
from tests.integration.test_conflicts import ctl

# MariaDB too where installed (CI installs it: tests/integration/test_mariadb_ring.py
# fails there without it)
ENGINES = ["postgres", "sqlite", "mariadb" if mariadb_installed() else "sqlite"]


def run(target: Path | str, *statements: tuple[str, tuple[Any, ...]]) -> None:
    """Statements in one transaction at a campus database (any engine)."""
    db = CampusDb(target)
    try:
        db.begin()
        for sql, params in statements:
            db.execute(sql, params)
        db.execute("COMMIT")
    finally:
        db.conn.close()


def map_row(campus: str, local: str, canonical: str) -> tuple[str, tuple[Any, ...]]:
    return (f"INSERT INTO {MAP_TABLE} VALUES (?, ?, ?, ?, 0)",
            (campus, DICTIONARY, local, canonical))


def order(order_id: str, code: str, campus: str) -> tuple[str, tuple[Any, ...]]:
    return ("INSERT INTO lab_orders VALUES (?, 'p1', ?, 'routine', 'ordered', ?, "
            "'2026-12-03T10:00:00Z')", (order_id, code, campus))


def orders(target: Path | str) -> dict[str, tuple[Any, ...]]:
    return {r[0]: tuple(r) for r in campus_rows(target)["lab_orders"]}


def canonical_orders(cluster: LocalCluster, name: str,
                     extra: dict[str, str] | None = None) -> dict[str, tuple[Any, ...]]:
    """A campus's orders with its local test codes read back as canonical ones."""
    back = {v: k for k, v in local_codes(CAMPUS_NAMES, name).items()} | (extra or {})
    return {k: (r[0], r[1], back.get(r[2], f"UNKNOWN:{r[2]}"), *r[3:])
            for k, r in orders(cluster.campus(name).target).items()}


def wait_every_order_everywhere(cluster: LocalCluster,
                                extra: dict[str, str] | None = None) -> None:
    """Until every campus holds the same orders, read back in canonical codes."""
    def same() -> bool:
        views = [canonical_orders(cluster, c.name, extra) for c in cluster.campuses]
        return all(v == views[0] for v in views[1:])

    wait_until(same, 90, "every campus to hold every order", interval=0.5)


def statuses(cluster: LocalCluster) -> list[dict[str, Any]]:
    return json.loads(ctl(cluster, "status", "--json").stdout)["nodes"]


def dead_letters(cluster: LocalCluster, campus: str) -> list[dict[str, Any]]:
    listed = json.loads(ctl(cluster, "dlq", "list", "--json").stdout)["dead_letters"]
    return sorted((e for e in listed if e["at_campus"] == campus and e["state"] == "parked"),
                  key=lambda e: e["id"])


def test_three_campuses_with_their_own_codes_converge_in_canonical_space(make_cluster) -> None:
    """A workload at each campus writes its own codes; every campus ends up with
    every order, each in *its* codes, and verification finds them the same."""
    cluster = make_cluster(3, engines=ENGINES, dictionaries=True)
    cluster.start_all()
    wait_ready(cluster)
    workloads = [LisWorkload(c.name, c.target, 20.0, seed=i + 1,
                             codes=local_codes(CAMPUS_NAMES, c.name))
                 for i, c in enumerate(cluster.campuses)]
    for w in workloads:
        w.start()
    try:
        wait_until(lambda: all(w.transactions >= 40 for w in workloads), 90,
                   "each campus to write 40 transactions")
    finally:
        for w in workloads:
            w.stop()
    assert not any(w.errors for w in workloads), [w.last_error for w in workloads]
    names = [c.name for c in cluster.campuses]

    wait_every_order_everywhere(cluster)
    first = canonical_orders(cluster, names[0])
    assert len(first) >= 40 and not any(r[2].startswith("UNKNOWN") for r in first.values())
    for name in names:  # each campus holds its own codes only, whoever wrote the order
        own = set(local_codes(CAMPUS_NAMES, name).values())
        assert {r[2] for r in orders(cluster.campus(name).target).values()} <= own, name
    # the second campus's codes are not the first's: the ring really translated
    assert set(local_codes(CAMPUS_NAMES, names[1]).values()).isdisjoint(
        local_codes(CAMPUS_NAMES, names[0]).values())
    checked = ctl(cluster, "verify", "--json")
    report = json.loads(checked.stdout)
    assert checked.returncode == 0 and report["consistent"], checked.stdout[-2000:]
    for node in statuses(cluster):
        d = node["dictionaries"]
        assert d["table"] == MAP_TABLE and d["columns"] == [DICTIONARY]
        assert d["entries"] >= 12 and d["parked"] == 0 and d["map_errors"] == []


def test_unmapped_codes_park_naming_campus_column_and_code_then_retry_applies(
        make_cluster) -> None:
    """A canonical code the receiver has no local code for, and a local code its
    origin has no canonical code for, both park (later changes of the row
    behind them), the rest flows; once the maps have the codes, ``dlq retry``
    applies them in each campus's codes."""
    cluster = make_cluster(3, engines=ENGINES, dictionaries=True)
    cluster.start_all()
    wait_ready(cluster)
    a, b, c = cluster.campuses
    # a maps a new canonical code for itself only, then orders by it
    run(a.target, map_row(a.name, "HBA1C", "HBA1C"))
    run(a.target, order("o-a1c", "HBA1C", a.name))
    run(a.target, ("UPDATE lab_orders SET priority = 'STAT' WHERE order_id = 'o-a1c'", ()))
    # b orders by a local code it never mapped
    run(b.target, order("o-newb", "NEWB", b.name))
    # and traffic that translates fine keeps flowing behind both
    run(c.target, order("o-fine", local_codes(CAMPUS_NAMES, c.name)["CBC"], c.name))
    wait_until(lambda: "o-fine" in orders(a.target) and "o-fine" in orders(b.target), 60,
               "mapped traffic to flow past the unmapped changes")
    wait_until(lambda: len(dead_letters(cluster, b.name)) == 2
               and len(dead_letters(cluster, c.name)) == 3
               and len(dead_letters(cluster, a.name)) == 1, 60,
               "the unmapped changes to park")
    at_b = dead_letters(cluster, b.name)
    assert [(e["op"], e["key"]) for e in at_b] == [("insert", ["o-a1c"]), ("update", ["o-a1c"])]
    assert f"campus {b.name} has no local code for canonical code 'HBA1C'" in at_b[0]["error"]
    assert DICTIONARY in at_b[0]["error"] and "dlq retry" in at_b[0]["error"]
    assert "waiting behind" in at_b[1]["error"]
    at_a = dead_letters(cluster, a.name)
    assert at_a[0]["key"] == ["o-newb"]
    assert (f"campus {b.name} has no canonical code for its local code 'NEWB' of "
            f"{DICTIONARY}") in at_a[0]["error"]
    assert "o-a1c" not in orders(b.target) and "o-newb" not in orders(a.target)
    nodes = {n["campus"]: n for n in statuses(cluster)}
    assert nodes[b.name]["dictionaries"]["unmapped_captured"] >= 1
    assert "NEWB" in nodes[b.name]["dictionaries"]["last_unmapped"]
    assert nodes[c.name]["dictionaries"]["parked"] >= 2
    wait_until(lambda: any("dictionaries:" in alert for alert in  # status counts every
                           {n["campus"]: n for n in statuses(cluster)}[c.name]["alerts"]),
               30, "the alert")  # few seconds

    # still unmapped: a retry fails again and says so
    still = ctl(cluster, "dlq", "retry", str(at_b[0]["id"]), "--at", b.name)
    assert still.returncode == 1 and "HBA1C" in still.stdout

    # the maps learn the codes (at any campus: they replicate)
    run(c.target, map_row(b.name, "B-A1C", "HBA1C"), map_row(c.name, "C-A1C", "HBA1C"),
        map_row(b.name, "NEWB", "TSH"), map_row(a.name, "TSH", "TSH"),
        map_row(c.name, "C-TSH", "TSH"))

    def retried(campus: str) -> bool:
        for entry in dead_letters(cluster, campus):
            if "waiting behind" not in entry["error"]:
                ctl(cluster, "dlq", "retry", str(entry["id"]), "--at", campus)
        return not dead_letters(cluster, campus)

    for campus in (a.name, b.name, c.name):
        wait_until(lambda campus=campus: retried(campus), 60,
                   f"the parked changes at {campus} to apply once mapped", interval=1.0)
    extra = {"HBA1C": "HBA1C", "B-A1C": "HBA1C", "C-A1C": "HBA1C", "TSH": "TSH",
             "NEWB": "TSH", "C-TSH": "TSH"}
    views = [canonical_orders(cluster, x.name, extra) for x in (a, b, c)]
    assert views[0] == views[1] == views[2]
    assert views[0]["o-a1c"][2] == "HBA1C" and views[0]["o-a1c"][3] == "STAT"
    assert orders(b.target)["o-a1c"][2] == "B-A1C" and orders(c.target)["o-a1c"][2] == "C-A1C"
    assert orders(a.target)["o-newb"][2] == "TSH" and orders(b.target)["o-newb"][2] == "NEWB"
    checked = ctl(cluster, "verify", "--json")
    assert checked.returncode == 0 and json.loads(checked.stdout)["consistent"], checked.stdout


def test_a_map_changed_while_writes_go_on_travels_ahead_of_the_rows_that_use_it(
        make_cluster) -> None:
    """A campus adds a test to every campus's map and orders it at once, while
    the others keep writing: the map rows travel in commit order ahead of the
    orders, so nothing parks, and every campus holds the orders in its codes."""
    cluster = make_cluster(3, engines=ENGINES, dictionaries=True)
    cluster.start_all()
    wait_ready(cluster)
    a, b, c = cluster.campuses
    workloads = [LisWorkload(x.name, x.target, 20.0, seed=i + 5,
                             codes=local_codes(CAMPUS_NAMES, x.name))
                 for i, x in enumerate((b, c))]
    for w in workloads:
        w.start()
    try:
        locals_ = {a.name: "LACT", b.name: "B-LACT", c.name: "C-LACT"}
        for n in range(5):
            run(a.target, *[map_row(x, f"{code}{n}", f"LACT{n}") for x, code in locals_.items()])
            run(a.target, order(f"o-lact{n}", f"LACT{n}", a.name))
            time.sleep(0.2)
    finally:
        for w in workloads:
            w.stop()
    extra = {f"{code}{n}": f"LACT{n}" for code in ("LACT", "B-LACT", "C-LACT")
             for n in range(5)}

    wait_every_order_everywhere(cluster, extra)
    for n in range(5):
        assert orders(b.target)[f"o-lact{n}"][2] == f"B-LACT{n}"
        assert orders(c.target)[f"o-lact{n}"][2] == f"C-LACT{n}"
    assert not any(dead_letters(cluster, x.name) for x in (a, b, c))
    checked = ctl(cluster, "verify", "--json")
    assert checked.returncode == 0 and json.loads(checked.stdout)["consistent"], checked.stdout



def test_an_empty_campus_joins_by_initial_load_and_holds_the_rows_in_its_own_codes(
        make_cluster) -> None:
    """The donor's copy leaves in canonical codes and the map table comes
    first, so the joiner (with no map rows of its own yet) translates every
    order it copies into its codes, with writes going on."""
    from tests.integration.test_join import in_ring

    cluster = make_cluster(3, engines=ENGINES, dictionaries=True)
    a, b, late = cluster.campuses
    run(late.target, (f"DELETE FROM {MAP_TABLE}", ()))  # an empty database: it takes a copy
    for x in (a, b):
        cluster.start(x.name)
    wait_until(in_ring(cluster, a.name, b.name), 60, "the first two campuses to join")
    workloads = [LisWorkload(x.name, x.target, 25.0, seed=i + 9,
                             codes=local_codes(CAMPUS_NAMES, x.name))
                 for i, x in enumerate((a, b))]
    for w in workloads:
        w.start()
    try:
        wait_until(lambda: all(w.transactions >= 20 for w in workloads), 60,
                   "writes before the join")
        cluster.start(late.name)
        wait_until(in_ring(cluster, late.name), 90, f"{late.name} to join by initial load")
        time.sleep(1.0)  # and the writes go on after the hand-off
    finally:
        for w in workloads:
            w.stop()
    wait_every_order_everywhere(cluster)
    held = orders(late.target)
    assert len(held) >= 40
    assert {r[2] for r in held.values()} <= set(local_codes(CAMPUS_NAMES, late.name).values())
    assert "copying" in late.log.read_text()
    checked = ctl(cluster, "verify", "--json")
    assert checked.returncode == 0 and json.loads(checked.stdout)["consistent"], checked.stdout
