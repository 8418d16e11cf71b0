"""node.scoping and ringsync.scopes: what a scoped identity is shown (pure logic)."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.scoping import report_in_scope, status_in_scope
from ringsync.errors import ConfigError
from ringsync.scopes import Scope, parse_scopes
from ringsync.v1 import control_pb2 as cpb

TABLES = ("patients", "lab_orders")
ORTHO = Scope("viewer/ortho", tables=frozenset({"lab_orders"}))


def test_status_keeps_its_tables_counts_and_drops_texts_that_can_quote_other_rows():
    status = cpb.NodeStatus(row_counts={"patients": 3, "lab_orders": 2},
                            alerts=["leaf sat: 1 row(s) its route's filter could not judge "
                                    "(the row filter of patients ... name='Ada')",
                                    "apply is waiting"])
    status.apply.last_error = "duplicate key (patient_id)=(p1)"
    status.leaves.add(name="sat", last_unjudged="patient_id='p1'")
    shown = status_in_scope(status, ORTHO, TABLES)
    assert dict(shown.row_counts) == {"lab_orders": 2}
    assert shown.apply.last_error == "" and shown.leaves[0].last_unjudged == ""
    assert list(shown.alerts) == ["apply is waiting", "1 alert(s) about tables outside "
                                  "viewer/ortho's scope are not shown"]
    assert status_in_scope(status, None, TABLES) is status  # unscoped: untouched
    assert dict(status.row_counts) == {"patients": 3, "lab_orders": 2}


def test_reports_keep_only_the_scopes_tables():
    report = {"at": 1.0, "differences": [{"table": "patients", "key": {"patient_id": "p1"}},
                                         {"table": "lab_orders", "key": {"order_id": "o1"}}],
              "tables": {"patients": {}, "lab_orders": {}}}
    shown = report_in_scope(report, ORTHO)
    assert [d["table"] for d in shown["differences"]] == ["lab_orders"]
    assert list(shown["tables"]) == ["lab_orders"]


def test_scopes_are_read_and_mistakes_refused():
    path = Path("cluster.toml")
    scopes = parse_scopes([{"identity": "viewer/ortho", "tables": ["lab_orders"]},
                           {"identity": "operator/oncall-b", "campuses": ["b"]}],
                          ("a", "b"), TABLES, path)
    assert scopes["viewer/ortho"].table("lab_orders") and not scopes["viewer/ortho"].table(
        "patients") and scopes["viewer/ortho"].campus("a")
    assert not scopes["operator/oncall-b"].campus("a")
    for entry, says in (({"identity": "node/a"}, "nodes are not scoped"),
                        ({"identity": "viewer/x", "tables": ["visits"]}, "visits, not one of"),
                        ({"identity": "viewer/x", "campuses": []}, "must list names")):
        with pytest.raises(ConfigError, match=says):
            parse_scopes([entry], ("a", "b"), TABLES, path)
