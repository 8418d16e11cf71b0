"""The cluster file's [verify] section: when the ring verifies itself.

    [verify]
    every_minutes = 60        # a verification every hour (0: not by interval)
    daily_at = "02:30"        # and/or once a day at this UTC time ("": not daily)
    tables = ["lab_results"]  # default: every replicated table
    settle_seconds = 30       # the confirm pass's wait for changes in flight
    keep_reports = 30         # reports each node keeps (the newest)
    incremental = true        # every campus keeps bucket digests as it writes:
                              # a verification reads them instead of hashing every row
    full_every_days = 7       # with incremental: a scheduled run is a stock (--full)
                              # one when none was in this many days (0: never)

Without the section nothing runs on a schedule; ``ctl verify`` still runs on
demand. When a verification is due, the first campus in ring order whose
node answers runs it (node.verify.schedule) and sends the report to every
node, which keeps it: ``ctl status`` shows each node's last one, and one that
found diverged rows is an alert.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ringsync.errors import ConfigError

VERIFY_KEYS = {"every_minutes", "daily_at", "tables", "settle_seconds", "keep_reports",
               "incremental", "full_every_days"}
_DAILY = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True)
class VerifySchedule:
    every_minutes: float = 0.0
    daily_at: str = ""             # "HH:MM", UTC
    tables: tuple[str, ...] = ()   # empty: every replicated table
    settle_seconds: float = 30.0
    keep_reports: int = 30
    incremental: bool = False      # campuses keep bucket digests as they write
    full_every_days: int = 7       # a scheduled stock check at least this often (0: never)

    @property
    def enabled(self) -> bool:
        return self.every_minutes > 0 or bool(self.daily_at)

    def next_due(self, last: float | None, now: float) -> float | None:
        """When the next verification is due (Unix seconds), given when the
        last one started (None: never); None when nothing is scheduled.

        Interval: ``every_minutes`` after the last (at once if there was none).
        Daily: today's time if today's run has not happened (at once if that
        time has passed: the node was down then), else tomorrow's; a cluster
        that never ran waits for the next such time."""
        due: list[float] = []
        if self.every_minutes > 0:
            due.append(now if last is None else last + 60.0 * self.every_minutes)
        if self.daily_at:
            hour, minute = (int(x) for x in self.daily_at.split(":"))
            midnight = dt.datetime.fromtimestamp(now, dt.UTC).replace(
                hour=0, minute=0, second=0, microsecond=0).timestamp()
            today = midnight + 3600 * hour + 60 * minute
            if now < today:
                due.append(today)
            elif last is not None and last < today:
                due.append(now)  # missed today's
            else:
                due.append(today + 86400.0)
        return min(due) if due else None

    def wants_full(self, reports: list[dict[str, Any]], now: float) -> bool:
        """Whether a scheduled run now should hash every row (``--full``): with
        kept digests, when no full report is younger than full_every_days.
        Without them every check is a stock one already."""
        if not self.incremental or self.full_every_days <= 0:
            return False
        since = now - 86400.0 * self.full_every_days
        return not any(r.get("full") and isinstance(r.get("at"), int | float) and
                       r["at"] >= since for r in reports)


def parse_verify(section: dict[str, Any], tables: tuple[str, ...], path: Path) -> VerifySchedule:
    if not section:
        return VerifySchedule()
    every = section.get("every_minutes", 0.0)
    if isinstance(every, bool) or not isinstance(every, int | float) or every < 0:
        raise ConfigError(f"{path}: verify.every_minutes must be a number of minutes >= 0 "
                          f"(0: no interval), not {every!r}")
    if 0 < every < 1:
        raise ConfigError(f"{path}: verify.every_minutes = {every} is under a minute: each "
                          f"verification reads every row at every campus; use 1 or more")
    daily = section.get("daily_at", "")
    if not isinstance(daily, str) or (daily and not _DAILY.match(daily)):
        raise ConfigError(f"{path}: verify.daily_at must be a UTC time as \"HH:MM\" "
                          f"(e.g. \"02:30\"), not {daily!r}")
    chosen = section.get("tables", [])
    if not isinstance(chosen, list) or not all(isinstance(t, str) for t in chosen):
        raise ConfigError(f"{path}: verify.tables must be a list of table names")
    unknown = [t for t in chosen if t not in tables]
    if unknown:
        raise ConfigError(f"{path}: verify.tables {unknown} are not in cluster.tables "
                          f"{list(tables)}")
    settle = section.get("settle_seconds", 30.0)
    if isinstance(settle, bool) or not isinstance(settle, int | float) or not 0 <= settle <= 3600:
        raise ConfigError(f"{path}: verify.settle_seconds must be 0..3600, not {settle!r}")
    keep = section.get("keep_reports", 30)
    if isinstance(keep, bool) or not isinstance(keep, int) or not 1 <= keep <= 10_000:
        raise ConfigError(f"{path}: verify.keep_reports must be 1..10000, not {keep!r}")
    incremental = section.get("incremental", False)
    if not isinstance(incremental, bool):
        raise ConfigError(f"{path}: verify.incremental must be true or false, not "
                          f"{incremental!r}")
    full_days = section.get("full_every_days", 7)
    if isinstance(full_days, bool) or not isinstance(full_days, int) or not 0 <= full_days <= 366:
        raise ConfigError(f"{path}: verify.full_every_days must be 0..366 days (0: never a "
                          f"scheduled full check), not {full_days!r}")
    schedule = VerifySchedule(float(every), daily, tuple(chosen), float(settle), keep,
                              incremental, full_days)
    if not schedule.enabled and not incremental:
        raise ConfigError(f"{path}: [verify] says nothing: set every_minutes > 0, daily_at "
                          f"or incremental = true, or remove the section")
    return schedule
