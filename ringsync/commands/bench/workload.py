"""The benchmark's table and the load that is written into it.

One table, ``bench_results``, shaped like a laboratory result row. Every id
is allocated so that a receiver can tell, with one index lookup, how far a
writer's stream has arrived: each writer (one pgbench client of one run at
one origin campus) owns a block of ids and writes them in increasing order,
one transaction after another. Since replication applies an origin's
transactions in commit order, ``max(id)`` inside a block is exactly the
writer's last transaction visible at the receiver.

Each row carries ``created_epoch``, the source server's clock when the row
was written, so a receiver computes a row's lag as "now - created_epoch"
(same machine, same clock).

Streams are written by PostgreSQL's own ``pgbench`` (C, throttled with
``--rate``), so the load generator costs little CPU and behaves the same
for every mode being measured; a MariaDB origin is written by a stored
procedure of the same shape (ringsync.commands.bench.mariadb). Both are a
``Source``: where a setup's writers write, and how their rows and
transactions are counted afterwards. Asked to, pgbench also logs every
transaction's latency (``pgbench -l``), which is how the sync workload reads
the origin's commit latency.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ringsync.commands.demo.lis import create_sqlite_database
from ringsync.commands.demo.postgres import SUPERUSER, find_bin
from ringsync.errors import RingsyncError

TABLE = "bench_results"

COLUMNS = """
    id bigint PRIMARY KEY,
    order_no text NOT NULL,
    analyte text NOT NULL,
    value_num double precision,
    unit text,
    flag text,
    status text NOT NULL,
    created_epoch double precision NOT NULL
"""
POSTGRES_DDL = f"CREATE TABLE IF NOT EXISTS {TABLE} ({COLUMNS})"
SQLITE_DDL = (f"CREATE TABLE IF NOT EXISTS {TABLE} ("
              + COLUMNS.replace("bigint", "INTEGER").replace("double precision", "REAL") + ")")

# Id blocks: origin campus, then pgbench run, then client. A client writes at
# most CLIENT_SPAN ids in one run.
ORIGIN_SPAN = 10**15
RUN_SPAN = 10**12
CLIENT_SPAN = 10**9

# A lab result, 1-3 rows per transaction: what a stream of small clinical
# transactions looks like. :base, :client_id and :n are pgbench variables;
# :n persists per client across transactions.
_STREAM_SCRIPT = f"""\\set k random(1, 3)
\\set first :base + :client_id * {CLIENT_SPAN} + :n
INSERT INTO {TABLE} (id, order_no, analyte, value_num, unit, flag, status, created_epoch)
SELECT :first + g, 'ORD-' || (:n + g), 'GLU',
       4.0 + g * 0.1, 'mmol/L', 'N', 'resulted',
       extract(epoch from clock_timestamp())
FROM generate_series(1, :k) g;
\\set n :n + :k
"""

BULK_SQL = f"""
INSERT INTO {TABLE} (id, order_no, analyte, value_num, unit, flag, status, created_epoch)
SELECT %(base)s + g, 'ORD-' || g, (ARRAY['WBC','HGB','PLT','NA','K','GLU'])[1 + g %% 6],
       round((random() * 100)::numeric, 2)::double precision, 'mmol/L',
       CASE WHEN g %% 17 = 0 THEN 'H' ELSE 'N' END, 'resulted',
       extract(epoch from clock_timestamp())
FROM generate_series(1, %(rows)s) g
"""


@dataclass(frozen=True)
class Block:
    """The ids one writer owns, written in increasing order from lo + 1."""

    lo: int
    hi: int
    origin: str


class IdAllocator:
    """Hands every pgbench run (or bulk load) at an origin a fresh block."""

    def __init__(self, origins: list[str]) -> None:
        self.origins = origins
        self.runs = dict.fromkeys(origins, 0)

    def run_base(self, origin: str) -> int:
        self.runs[origin] += 1
        return self.origins.index(origin) * ORIGIN_SPAN + self.runs[origin] * RUN_SPAN

    @staticmethod
    def client_blocks(base: int, clients: int, origin: str) -> list[Block]:
        return [Block(base + c * CLIENT_SPAN, base + (c + 1) * CLIENT_SPAN, origin)
                for c in range(clients)]


class Stream(Protocol):
    """One running stream of small transactions (pgbench, or MariaDB's procedure)."""

    blocks: list[Block]

    def wait(self) -> float: ...  # the transactions/s really achieved
    def stop(self) -> None: ...
    def transaction_times(self) -> list[tuple[float, float]]: ...


class Source(Protocol):
    """An origin database the benchmark writes into and counts at."""

    def start_stream(self, base: int, origin: str, rate: float, seconds: float,
                     clients: int = ..., log_latencies: bool = False) -> Stream: ...
    def bulk_insert(self, base: int, rows: int) -> tuple[float, float]: ...
    def last_ids(self, blocks: list[Block]) -> dict[Block, int]: ...
    def transactions(self, last_ids: dict[Block, int]) -> int: ...


def create_postgres_table(dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(POSTGRES_DDL)


def create_sqlite_table(path: Path) -> None:
    create_sqlite_database(path, SQLITE_DDL)


def bulk_insert(dsn: str, base: int, rows: int) -> tuple[float, float]:
    """One transaction of ``rows`` rows; returns (started, committed) wall times."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        started = time.time()
        with conn.transaction():
            conn.execute(BULK_SQL, {"base": base, "rows": rows})
        return started, time.time()


def transaction_times(log: str) -> list[tuple[float, float]]:
    """(ms the transaction took, ms it started behind schedule) per line of a
    pgbench per-transaction log written with ``--rate``: ``client_id
    transaction_no latency_us script_no epoch_s epoch_us schedule_lag_us``.
    pgbench measures a throttled transaction's latency from its scheduled
    start, so the transaction's own time is the latency minus the lag."""
    times = []
    for line in log.splitlines():
        fields = line.split()
        if len(fields) < 7 or not fields[2].isdigit():  # "skipped": only with --latency-limit
            continue
        latency_us, lag_us = float(fields[2]), float(fields[6])
        times.append(((latency_us - lag_us) / 1000, lag_us / 1000))
    return times


@dataclass
class StreamRun:
    """One pgbench process writing small transactions at a fixed rate."""

    proc: subprocess.Popen[str]
    script: Path
    blocks: list[Block]
    rate: float
    seconds: float
    latency_log: Path | None = None  # the directory pgbench logs every transaction into

    def wait(self) -> float:
        """Wait for pgbench to finish; the transactions/s it really achieved."""
        try:
            out, err = self.proc.communicate(timeout=self.seconds + 120)
        finally:
            self.script.unlink(missing_ok=True)
        if self.proc.returncode != 0:
            raise RingsyncError(f"pgbench failed ({self.proc.returncode}): {err.strip()[-800:]}")
        found = re.search(r"^tps = ([0-9.]+)", out, re.MULTILINE)
        if not found:
            raise RingsyncError(f"pgbench printed no tps line:\n{out[-800:]}")
        return float(found.group(1))

    def transaction_times(self) -> list[tuple[float, float]]:
        """Every transaction's (own ms, schedule lag ms) from pgbench's log (one
        file per pgbench thread), read once pgbench finished; the log is removed."""
        if self.latency_log is None:
            raise RingsyncError("this pgbench run was started without a latency log")
        try:
            return [t for f in sorted(self.latency_log.iterdir())
                    for t in transaction_times(f.read_text())]
        finally:
            shutil.rmtree(self.latency_log, ignore_errors=True)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.script.unlink(missing_ok=True)
        if self.latency_log is not None:
            shutil.rmtree(self.latency_log, ignore_errors=True)


# pgbench clients per stream: enough for group commit to let the source reach
# the rates asked for (with fsync on, 4 clients topped out near 2,300-3,600 tx/s
# here), few enough to leave the cores to replication.
STREAM_CLIENTS = 8


def start_stream(port: int, base: int, origin: str, rate: float, seconds: float,
                 clients: int = STREAM_CLIENTS, log_latencies: bool = False) -> StreamRun:
    """Start pgbench against 127.0.0.1:port, ``rate`` transactions/s for ``seconds``;
    ``log_latencies``: pgbench also logs every transaction (``StreamRun.transaction_times``)."""
    fd, name = tempfile.mkstemp(prefix="ringsync-bench-", suffix=".sql")
    script = Path(name)
    with open(fd, "w") as fh:
        fh.write(_STREAM_SCRIPT)
    args = [str(find_bin("pgbench")), "-n", "-h", "127.0.0.1", "-p", str(port),
            "-U", SUPERUSER, "-c", str(clients), "-j", str(min(clients, 2)),
            "-T", str(max(1, round(seconds))), "-R", str(rate),
            "-D", "n=0", "-D", f"base={base}", "-f", str(script)]
    latency_log = None
    if log_latencies:
        latency_log = Path(tempfile.mkdtemp(prefix="ringsync-bench-latency-"))
        args += ["-l", f"--log-prefix={latency_log / 'txn'}"]
    proc = subprocess.Popen(args + ["postgres"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, stdin=subprocess.DEVNULL)
    return StreamRun(proc, script, IdAllocator.client_blocks(base, clients, origin), rate,
                     seconds, latency_log)


@dataclass(frozen=True)
class PostgresSource:
    """A PostgreSQL origin: pgbench streams, one INSERT ... SELECT bulk load,
    transactions counted as the distinct ``xmin`` of the rows written."""

    port: int
    dsn: str

    def start_stream(self, base: int, origin: str, rate: float, seconds: float,
                     clients: int = STREAM_CLIENTS, log_latencies: bool = False) -> StreamRun:
        return start_stream(self.port, base, origin, rate, seconds, clients, log_latencies)

    def bulk_insert(self, base: int, rows: int) -> tuple[float, float]:
        return bulk_insert(self.dsn, base, rows)

    def last_ids(self, blocks: list[Block]) -> dict[Block, int]:
        """The last id each writer committed (its block's lo if none)."""
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            return {b: int(conn.execute(f"SELECT coalesce(max(id), %s) FROM {TABLE} "
                                        "WHERE id > %s AND id < %s",
                                        (b.lo, b.lo, b.hi)).fetchone()[0])  # type: ignore[index]
                    for b in blocks}

    def transactions(self, last_ids: dict[Block, int]) -> int:
        """How many transactions committed each writer's rows up to its last
        id: the distinct ids of the inserting transactions."""
        import psycopg

        txns = 0
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            for b, top in last_ids.items():
                row = conn.execute(f"SELECT count(DISTINCT xmin::text) FROM {TABLE} "
                                   "WHERE id > %s AND id <= %s", (b.lo, top)).fetchone()
                txns += int(row[0]) if row else 0
        return txns
