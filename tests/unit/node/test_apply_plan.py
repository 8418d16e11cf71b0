"""Planning apply from a real journal: an incomplete transaction holds back
only its own origin and the transactions that saw it, never the others."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from node.codec import build_frame
from node.dr.sets import SetGuard
from node.model import Change, Op, TableShape
from node.replication.applier import Applier
from node.replication.journal import Journal
from node.replication.resources import NodeResources
from node.replication.state import INCOMPLETE_ALERT_SECONDS, ReplicationState
from ringsync.v1 import values_pb2 as pb

SHAPES = {"t": TableShape("t", ("id", "v"), (0,))}


def frame(origin: str, seq: int, chunk: int = 0, final: bool = True,
          deps: dict[str, int] | None = None) -> tuple[pb.TxnFrame, bytes]:
    f = build_frame(origin, seq, chunk, final, 1.0,
                    [Change("t", Op.INSERT, new=(f"{origin}{seq}.{chunk}", seq))], SHAPES,
                    deps=deps or {})
    return f, f.SerializeToString()


@pytest.fixture
def journal(tmp_path: Path) -> Any:
    j = Journal(tmp_path / "journal.db", "c")
    j.open()
    yield j
    j.close()


def applier(journal: Journal) -> Applier:
    # Planning reads only the journal (on the calling thread) and the state.
    res = cast(NodeResources, SimpleNamespace(journal=journal))
    return Applier(res, ReplicationState("c", ("c",)), SetGuard((), "c"),
                   resolver=None)  # type: ignore[arg-type]


def planned(a: Applier) -> list[tuple[str, int]]:
    plan, _ = a._plan()
    return [(t.origin, t.seq) for t in plan]


def test_an_incomplete_transaction_holds_back_only_its_origin_and_those_that_saw_it(
        journal: Journal) -> None:
    journal.append_remote([frame("a", 1, 0, final=False)])   # a/1: its first chunk only
    journal.append_remote([frame("b", 1)])                    # independent of a/1
    journal.append_remote([frame("b", 2, deps={"a": 1})])     # b saw a/1 when it committed
    journal.append_remote([frame("d", 1)])
    a = applier(journal)
    assert planned(a) == [("b", 1), ("d", 1)]
    assert set(a.state.incomplete) == {("a", 1)}
    _, cursor = a._plan()
    assert cursor == 0  # it stays before the incomplete transaction

    # Once applied, the next plan skips what it took, and waits on.
    a.state.applied.update(b=1, d=1)
    assert planned(a) == []
    journal.append_remote([frame("a", 1, 1, final=True)])
    assert planned(a) == [("a", 1), ("b", 2)]
    assert a.state.incomplete == {}


def test_the_window_limits_foreign_transactions_only(journal: Journal) -> None:
    journal.append_remote([frame("b", n) for n in range(1, 6)])
    a = applier(journal)
    a.machine.window = 2
    assert planned(a) == [("b", 1), ("b", 2)]


def test_an_incomplete_transaction_becomes_an_alert_after_the_threshold() -> None:
    rt = ReplicationState("c", ("c",))
    rt.incomplete = {("a", 1): time.time() - INCOMPLETE_ALERT_SECONDS - 5}
    assert "a/1 incomplete for" in rt.incomplete_alert()
    rt.incomplete = {("a", 1): time.time()}
    assert rt.incomplete_alert() == ""
