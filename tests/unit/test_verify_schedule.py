"""[verify]: parsing and when the next verification is due."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from ringsync.errors import ConfigError
from ringsync.verify_schedule import VerifySchedule, parse_verify

TABLES = ("patients", "lab_orders")
PATH = Path("cluster.toml")


def at(hh: int, mm: int, day: int = 2) -> float:
    return dt.datetime(2026, 12, day, hh, mm, tzinfo=dt.UTC).timestamp()


def test_an_interval_runs_at_once_then_every_interval() -> None:
    s = VerifySchedule(every_minutes=60)
    assert s.next_due(None, at(10, 0)) == at(10, 0)
    assert s.next_due(at(10, 0), at(10, 5)) == at(11, 0)


def test_daily_runs_at_its_time_catches_up_a_missed_one_and_never_twice() -> None:
    s = VerifySchedule(daily_at="02:30")
    assert s.next_due(None, at(1, 0)) == at(2, 30)
    assert s.next_due(None, at(9, 0)) == at(2, 30, day=3)      # never ran: next time
    assert s.next_due(at(2, 30, day=1), at(9, 0)) == at(9, 0)  # today's was missed
    assert s.next_due(at(2, 30), at(9, 0)) == at(2, 30, day=3)


def test_both_take_the_earlier() -> None:
    s = VerifySchedule(every_minutes=600, daily_at="02:30")
    assert s.next_due(at(0, 0), at(1, 0)) == at(2, 30)
    assert VerifySchedule().next_due(None, at(1, 0)) is None


@pytest.mark.parametrize("section, message", [
    ({"every_minutes": -1}, "every_minutes"),
    ({"every_minutes": 0.5}, "under a minute"),
    ({"daily_at": "25:00"}, "HH:MM"),
    ({"every_minutes": 5, "tables": ["nope"]}, "not in cluster.tables"),
    ({"every_minutes": 5, "settle_seconds": -1}, "settle_seconds"),
    ({"every_minutes": 5, "keep_reports": 0}, "keep_reports"),
    ({"tables": ["patients"]}, "says nothing"),
    ({"every_minutes": 5, "full_every_days": -1}, "full_every_days"),
    ({"every_minutes": 5, "full_every_days": 1.5}, "full_every_days"),
])
def test_bad_sections_are_refused_saying_what_to_write(section: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_verify(section, TABLES, PATH)


def test_a_good_section() -> None:
    s = parse_verify({"every_minutes": 30, "daily_at": "23:59", "tables": ["patients"],
                      "settle_seconds": 10, "keep_reports": 5}, TABLES, PATH)
    assert s == VerifySchedule(30.0, "23:59", ("patients",), 10.0, 5) and s.enabled
    assert parse_verify({}, TABLES, PATH) == VerifySchedule()


def test_with_kept_digests_a_scheduled_run_is_full_when_none_was_lately() -> None:
    s = VerifySchedule(every_minutes=60, incremental=True, full_every_days=7)
    now = at(1, 0) + 30 * 86400
    assert s.wants_full([], now)
    assert s.wants_full([{"at": now - 8 * 86400, "full": True}, {"at": now - 60}], now)
    assert not s.wants_full([{"at": now - 6 * 86400, "full": True}], now)
    assert not VerifySchedule(every_minutes=60, incremental=True,
                              full_every_days=0).wants_full([], now)
    assert not VerifySchedule(every_minutes=60).wants_full([], now)  # stock every time
