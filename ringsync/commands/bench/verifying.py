"""The ``verify`` workload: the stock verification pass beside a plain COPY.

On the hop (two PostgreSQL campuses, real nodes) with the bench table
holding at least ``Scale.bulk_rows`` rows (a bulk load first if it holds
fewer): each campus's server reads the table once with ``COPY ... TO
STDOUT`` (the anchor: the cheapest full read there is), then each campus's
node answers ``Control.Verify`` for the table, which hashes every row in SQL
into bucket digests (node.engines.postgres.verifying). The scan time is the
node's own (``VerifyResponse.seconds``), measured one campus at a time so
the two servers do not share the cores. A full ``ctl verify`` comparison
then has to find the campuses consistent: a bench that measured a wrong
answer would be worthless.

Then, on a second hop beside it whose campuses keep incremental digests
([verify] incremental = true; setups.digests_twin; with
``--incremental-digests`` the hop itself), at two table sizes
(``bulk_rows`` and ten times that): load the rows, make CHANGES changes
(every row once, in a smaller table) at the origin (updates of existing
rows, in transactions of 1,000), wait until the other campus holds them
and the twin's nodes are quiet (under QUIET_CPU_PERCENT of a core: the
origin still records its own rows' versions after the far campus has them,
and a check timed beside that measured the machine's contention, 0.95 to
3.5 s at 1,000,000 rows), and time a whole ``ctl verify`` comparison
(both campuses answering from their kept digests, which it checks, and
finding them consistent): the incremental check after 10,000 changes.

Result: rows/s hashed per campus (the mean of the campuses), with
``detail`` holding the COPY rate, the ratio to it, each campus's figures,
and ``incremental``: per table size, the check's seconds. The node
processes' CPU is not the cost here (the database servers do the hashing),
so ``cpu_us_per_row`` is a campus server's scan time per row and
``cpu_us_per_txn`` that of the whole scan (one read transaction).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ringsync.commands.bench.probe import cpu_percent_over
from ringsync.commands.bench.scenarios import Bench, Result, say
from ringsync.commands.bench.setups import RingsyncSetup, digests_twin
from ringsync.commands.bench.workload import TABLE, bulk_insert
from ringsync.errors import RingsyncError
from ringsync.verification import Verification, bits_for


def _count(dsn: str) -> int:
    import psycopg

    with psycopg.connect(dsn) as conn:
        (count,) = conn.execute(f"SELECT count(*) FROM {TABLE}").fetchall()[0]
        return int(count)


def _copy_seconds(dsn: str) -> float:
    """One full COPY TO STDOUT of the table, read to the end (warm cache)."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()  # warm the cache
        started = time.perf_counter()
        with conn.cursor().copy(f"COPY {TABLE} TO STDOUT") as copy:
            for _ in copy:
                pass
        return time.perf_counter() - started


async def _verify(setup: RingsyncSetup, rows: int) -> tuple[dict[str, float], dict[str, Any]]:
    client = setup._client()
    try:
        bits = bits_for(rows)
        seconds = {}
        for campus in setup.campuses:
            await client.verify(campus, TABLE, bits)  # warm, as the COPY was
            seconds[campus] = (await client.verify(campus, TABLE, bits)).seconds
        report = await Verification(client, [TABLE], settle=0.0).run()
        return seconds, report
    finally:
        await client.close()


CHANGES = 10_000
CHANGE_BATCH = 1_000
ARRIVAL_SECONDS = 600.0
QUIET_CPU_PERCENT = 10.0  # the twin's nodes together, over a second


def _changed_at(dsn: str, marker: str) -> int:
    import psycopg

    with psycopg.connect(dsn) as conn:
        (count,) = conn.execute(f"SELECT count(*) FROM {TABLE} WHERE status = %s",
                                (marker,)).fetchall()[0]
        return int(count)


def _wait_for(what: str, done: Any) -> None:
    deadline = time.monotonic() + ARRIVAL_SECONDS
    while not done():
        if time.monotonic() > deadline:
            raise RingsyncError(f"verify bench: timed out waiting for {what}")
        time.sleep(0.2)


def _incremental_check(twin: RingsyncSetup, rows: int, base: int) -> dict[str, Any]:
    """Load up to ``rows`` rows, make CHANGES changes, time the incremental check."""
    import psycopg

    origin, far = twin.campuses[0], twin.campuses[-1]
    have = _count(twin.source_dsn(origin))
    if have < rows:
        bulk_insert(twin.source_dsn(origin), base + have, rows - have)
    _wait_for(f"{rows:,} rows at {far}", lambda: _count(twin.source_dsn(far)) >= rows)
    marker = f"changed-{rows}"
    changes = min(CHANGES, rows)  # a table smaller than that (a smoke test): every row once
    with psycopg.connect(twin.source_dsn(origin), autocommit=True) as conn:
        for lo in range(0, changes, CHANGE_BATCH):
            conn.execute(f"UPDATE {TABLE} SET status = %s WHERE id IN (SELECT id FROM {TABLE} "
                         f"ORDER BY id OFFSET %s LIMIT %s)",
                         (marker, lo, min(CHANGE_BATCH, changes - lo)))
    _wait_for(f"the {changes:,} changes at {far}",
              lambda: _changed_at(twin.source_dsn(far), marker) >= changes)
    # The check's own cost, not what the nodes still do with the load (the
    # origin records its own rows' versions after they have reached the far
    # campus): wait until the twin's node processes are quiet.
    quiet_from = time.monotonic()
    _wait_for("the twin's nodes going quiet",
              lambda: cpu_percent_over(twin.cpu_pids, 1.0) < QUIET_CPU_PERCENT)
    quiet_seconds = time.monotonic() - quiet_from

    phases: list[str] = []

    async def check() -> tuple[float, dict[str, Any]]:
        client = twin._client()
        try:
            started = time.perf_counter()

            def note(line: str) -> None:  # where the check's time went, in the result
                phases.append(f"{time.perf_counter() - started:.2f} s: {line}")
                say(f"verify {rows:,} rows: {phases[-1]}")

            report = await Verification(client, [TABLE], settle=0.0, progress=note).run()
            return time.perf_counter() - started, report
        finally:
            await client.close()

    seconds, report = asyncio.run(check())
    modes = {v["mode"] for v in report["tables"][TABLE].values()}
    if not report["consistent"] or modes != {"incremental"}:
        raise RingsyncError(f"the incremental check did not find the twin consistent from "
                            f"kept digests: {report}")
    return {"rows": rows, "changes": changes, "check_seconds": seconds, "phases": phases,
            "waited_for_quiet_seconds": quiet_seconds}


def verify(bench: Bench) -> Result:
    setup = bench.setup
    if not isinstance(setup, RingsyncSetup):
        raise RingsyncError("the verify workload runs on ringsync campuses")
    dsns = {c: setup.source_dsn(c) for c in setup.campuses}
    rows = _count(dsns[setup.campuses[0]])
    if rows < bench.scale.bulk_rows:
        say(f"verify: loading {bench.scale.bulk_rows:,} rows first")
        bench.bulk()
        bench.settle()
        rows = _count(dsns[setup.campuses[0]])
    copy = {c: _copy_seconds(dsn) for c, dsn in dsns.items()}
    bench.meter.start()
    scan, report = asyncio.run(_verify(setup, rows))
    used = bench.meter.stop()
    if not report["consistent"]:
        raise RingsyncError(f"verify found the bench's campuses different: {report}")
    per_campus = {c: {"rows_per_s": rows / scan[c], "copy_rows_per_s": rows / copy[c],
                      "ratio_to_copy": copy[c] / scan[c]} for c in setup.campuses}
    rate = sum(p["rows_per_s"] for p in per_campus.values()) / len(per_campus)
    copy_rate = sum(p["copy_rows_per_s"] for p in per_campus.values()) / len(per_campus)
    mean_scan = sum(scan.values()) / len(scan)
    own = not setup.digests  # --incremental-digests: this hop keeps them already
    if own:
        say("verify: a second hop keeping incremental digests")
    twin = digests_twin(setup) if own else setup
    try:
        base = 9 * 10**15  # ids of their own, far from the other workloads'
        incremental = [_incremental_check(twin, n, base)
                       for n in (bench.scale.bulk_rows, 10 * bench.scale.bulk_rows)]
    finally:
        if own:
            twin.close()
    return Result(setup.mode, "verify", rate, None, None, None, used.cpu_percent,
                  used.peak_rss_mb, txn_per_s=None, cpu_us_per_row=1e6 * mean_scan / rows,
                  cpu_us_per_txn=1e6 * mean_scan, seconds=mean_scan,
                  detail={"rows": rows, "bits": bits_for(rows), "copy_rows_per_s": copy_rate,
                          "ratio_to_copy": rate / copy_rate, "campuses": per_campus,
                          "consistent": report["consistent"], "incremental": incremental})
