"""What the benchmark observes: rows arriving at a receiver, and node processes.

``ArrivalProbe`` polls one receiving database (PostgreSQL, SQLite or
MariaDB: a DSN, a file, a ``mysql://`` URL) every
few milliseconds from its own thread. For each watched id block it asks for
``max(id)`` (one index descent), and when that advances it reads the new
rows' ``created_epoch`` to record each row's lag: the poll time at which
the row was first visible minus the time it was written at the source. The
polling interval bounds the resolution (a few ms), which is far below the
lags the targets care about.

``ProcessMeter`` samples CPU time and resident memory of a set of process
ids from /proc, so the figures cover exactly the processes doing the
replication work (the nodes, or PostgreSQL's walsender and apply worker).
Its ``Usage`` carries the raw CPU seconds of the window as well as the
percentage, so the scenarios can divide them by the rows and transactions
the window carried.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from ringsync.commands.bench.workload import TABLE, Block
from ringsync.errors import RingsyncError

POLL_SECONDS = 0.005
ANSWER_POLL_SECONDS = 0.01


def poll_until(answers: Callable[[], bool], timeout: float, what: str) -> float:
    """Ask ``answers`` every few ms; the wall time it first said yes."""
    deadline = time.monotonic() + timeout
    while not answers():
        if time.monotonic() > deadline:
            raise RingsyncError(f"{what} did not answer within {timeout:.0f}s")
        time.sleep(ANSWER_POLL_SECONDS)
    return time.time()


class ArrivalProbe:
    def __init__(self, target: Path | str, name: str) -> None:
        self.target = target
        self.name = name
        self._lock = threading.Lock()
        self._blocks: dict[Block, int] = {}  # block -> highest id seen
        self._advanced_at: dict[Block, float] = {}  # block -> when it last advanced
        self._with_lags: set[Block] = set()
        # (first-visible time, lag seconds, origin) per arrived row with lags on
        self.samples: list[tuple[float, float, str]] = []
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"probe-{name}", daemon=True)
        self._thread.start()

    # -- what the scenarios call --------------------------------------------

    def watch(self, blocks: list[Block], lags: bool = True) -> None:
        with self._lock:
            for b in blocks:
                self._blocks.setdefault(b, b.lo)
                if lags:
                    self._with_lags.add(b)

    def seen(self, block: Block) -> int:
        with self._lock:
            return self._blocks.get(block, block.lo)

    def wait_for(self, last_ids: dict[Block, int], timeout: float, what: str) -> float:
        """Wait until every block reached its last id; the wall time it was first seen."""
        deadline = time.monotonic() + timeout
        while True:
            self._raise_error()
            if all(self.seen(b) >= last for b, last in last_ids.items()):
                with self._lock:  # a finished writer's block stops advancing at its last id
                    return max(self._advanced_at.get(b, 0.0) for b in last_ids)
            if time.monotonic() > deadline:
                behind = {f"{b.origin}+{b.lo}": last - self.seen(b)
                          for b, last in last_ids.items() if self.seen(b) < last}
                raise RingsyncError(
                    f"{self.name}: {what} did not arrive within {timeout:.0f}s "
                    f"(rows still missing per writer: {behind})")
            time.sleep(POLL_SECONDS)

    def lags_between(self, start: float, end: float,
                     origin: str | None = None) -> list[float]:
        with self._lock:
            return [lag for t, lag, o in self.samples
                    if start <= t <= end and (origin is None or o == origin)]

    def samples_since(self, start: float) -> list[tuple[float, float, str]]:
        with self._lock:
            return [s for s in self.samples if s[0] >= start]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    # -- the polling thread ---------------------------------------------------

    def _raise_error(self) -> None:
        if self._error is not None:
            raise RingsyncError(f"{self.name}: the arrival probe failed: {self._error}")

    def _run(self) -> None:
        try:
            if isinstance(self.target, str) and self.target.startswith("mysql://"):
                query_max, query_new, close = _connect_mariadb(self.target)
            elif isinstance(self.target, str):
                query_max, query_new, close = _connect_postgres(self.target)
            else:
                query_max, query_new, close = _connect_sqlite(self.target)
            try:
                while not self._stop.is_set():
                    self._poll(query_max, query_new)
                    time.sleep(POLL_SECONDS)
            finally:
                close()
        except BaseException as e:  # reported to the scenario by wait_for
            self._error = e

    def _poll(self, query_max: Callable[[list[Block]], list[int | None]],
              query_new: Callable[[Block, int, int], list[float]]) -> None:
        with self._lock:
            blocks = list(self._blocks.items())
        if not blocks:
            return
        maxima = query_max([b for b, _ in blocks])
        now = time.time()
        advanced = [(b, seen, top) for (b, seen), top in zip(blocks, maxima, strict=True)
                    if top is not None and top > seen]
        fresh: list[tuple[float, float, str]] = []
        for b, seen, top in advanced:
            if b in self._with_lags:
                fresh.extend((now, now - created, b.origin) for created in query_new(b, seen, top))
        with self._lock:
            for b, _seen, top in advanced:
                self._blocks[b] = top
                self._advanced_at[b] = now
            self.samples.extend(fresh)


def _connect_postgres(dsn: str) -> tuple[Any, Any, Any]:
    import psycopg

    conn = psycopg.connect(dsn, autocommit=True)
    max_sql = (f"SELECT (SELECT max(id) FROM {TABLE} WHERE id > r.lo AND id < r.hi) "
               "FROM unnest(%s::bigint[], %s::bigint[]) WITH ORDINALITY AS r(lo, hi, n) "
               "ORDER BY r.n")
    new_sql = f"SELECT created_epoch FROM {TABLE} WHERE id > %s AND id <= %s"

    def query_max(blocks: list[Block]) -> list[int | None]:
        rows = conn.execute(max_sql, ([b.lo for b in blocks], [b.hi for b in blocks])).fetchall()
        return [r[0] for r in rows]

    def query_new(b: Block, seen: int, top: int) -> list[float]:
        return [r[0] for r in conn.execute(new_sql, (seen, top))]

    return query_max, query_new, conn.close


def _connect_sqlite(path: Path) -> tuple[Any, Any, Any]:
    import sqlite3

    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None,
                           check_same_thread=False)
    conn.execute("PRAGMA busy_timeout=5000")

    def query_max(blocks: list[Block]) -> list[int | None]:
        return [conn.execute(f"SELECT max(id) FROM {TABLE} WHERE id > ? AND id < ?",
                             (b.lo, b.hi)).fetchone()[0] for b in blocks]

    def query_new(b: Block, seen: int, top: int) -> list[float]:
        return [r[0] for r in conn.execute(
            f"SELECT created_epoch FROM {TABLE} WHERE id > ? AND id <= ?", (seen, top))]

    return query_max, query_new, conn.close


def _connect_mariadb(url: str) -> tuple[Any, Any, Any]:
    from ringsync.commands.demo.lis import mysql_connect

    conn = mysql_connect(url)  # autocommit: every read sees what has committed
    cur = conn.cursor()

    def query_max(blocks: list[Block]) -> list[int | None]:
        found: list[int | None] = []
        for b in blocks:
            cur.execute(f"SELECT MAX(id) FROM {TABLE} WHERE id > %s AND id < %s", (b.lo, b.hi))
            top = cur.fetchone()[0]
            found.append(None if top is None else int(top))
        return found

    def query_new(b: Block, seen: int, top: int) -> list[float]:
        cur.execute(f"SELECT created_epoch FROM {TABLE} WHERE id > %s AND id <= %s", (seen, top))
        return [float(r[0]) for r in cur.fetchall()]

    return query_max, query_new, conn.close


class Usage(NamedTuple):
    """What the replication processes used over one metered window."""

    cpu_percent: float  # of one core, summed over the processes
    peak_rss_mb: float  # of the largest memory process
    cpu_seconds: float  # user + system, summed over the processes


class ProcessMeter:
    """CPU and resident memory of the processes doing replication work."""

    def __init__(self, cpu_pids: Callable[[], list[int]],
                 rss_pids: Callable[[], list[int]]) -> None:
        self._cpu_pids = cpu_pids
        self._rss_pids = rss_pids
        self._ticks = os.sysconf("SC_CLK_TCK")
        self._start_cpu: dict[int, float] = {}
        self._start = 0.0
        self._peak_kb = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.rss_timeline: list[tuple[float, float]] = []  # (time, MB summed over pids)

    def start(self) -> None:
        self._start = time.monotonic()
        self._start_cpu = {p: _cpu_seconds(p, self._ticks) for p in self._cpu_pids()}
        self._peak_kb = 0
        self.rss_timeline = []
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, name="meter", daemon=True)
        self._thread.start()

    def stop(self) -> Usage:
        """CPU and peak memory since ``start``."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        elapsed = max(1e-6, time.monotonic() - self._start)
        used = 0.0
        for pid in self._cpu_pids():
            # a process restarted during the window (catch-up) counts from zero
            used += _cpu_seconds(pid, self._ticks) - self._start_cpu.get(pid, 0.0)
        return Usage(100.0 * used / elapsed, self._peak_kb / 1024.0, used)

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                sizes = [_rss_kb(p) for p in self._rss_pids()]
            except Exception:  # the setup is being torn down under us
                return
            self._peak_kb = max([self._peak_kb, *sizes])
            self.rss_timeline.append((time.time(), sum(sizes) / 1024.0))
            self._stop.wait(0.2)


def cpu_percent_over(pids: Callable[[], list[int]], seconds: float) -> float:
    """CPU used by ``pids`` over the next ``seconds`` (percent of one core)."""
    ticks = os.sysconf("SC_CLK_TCK")
    before = {p: _cpu_seconds(p, ticks) for p in pids()}
    time.sleep(seconds)
    used = sum(_cpu_seconds(p, ticks) - before.get(p, 0.0) for p in pids())
    return 100.0 * used / seconds


def _cpu_seconds(pid: int, ticks: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0
