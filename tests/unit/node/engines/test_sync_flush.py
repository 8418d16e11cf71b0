"""The flush position the pgoutput reader reports in synchronous mode: it
releases PostgreSQL's waiting commits, so it must never pass a local
transaction no peer has acknowledged (node.engines.postgres.capture)."""

from __future__ import annotations

from node.engines.postgres.capture import PgoutputReader
from node.model import TableShape


def reader() -> PgoutputReader:
    r = PgoutputReader("host=nowhere", "slot", "pub", lambda t: TableShape(t, ("id",), (0,)), 10)
    r._flushed, r._handed_out = 500, 500  # journal holds everything handed out
    return r


def test_async_reports_what_the_journal_holds():
    r = reader()
    r.acked_end = 0
    assert r.reported_flush() == 500


def test_sync_holds_back_to_the_last_acknowledged_transaction():
    r = reader()
    r.sync, r.acked_end = True, 300
    assert r.reported_flush() == 300
    r.acked_end = 500
    assert r.reported_flush() == 500


def test_sync_follows_the_server_when_everything_handed_out_is_acknowledged():
    r = reader()
    r.sync, r.acked_end = True, 500
    r._flushed = 800  # idle: keepalives moved the journal's flush past the last commit
    assert r.reported_flush() == 800


def test_a_transaction_handed_out_after_the_ack_is_not_released():
    r = reader()
    r.sync, r.acked_end = True, 500
    r._handed_out = 650  # decoded after the acknowledgement was computed
    r._flushed = 650  # and even journaled already
    assert r.reported_flush() == 500


def test_degraded_sync_reports_the_journal():
    r = reader()
    r.sync, r.acked_end, r._handed_out = False, 100, 500
    assert r.reported_flush() == 500
