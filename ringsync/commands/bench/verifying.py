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

Result: rows/s hashed per campus (the mean of the campuses), with
``detail`` holding the COPY rate, the ratio to it, and each campus's
figures. The node processes' CPU is not the cost here (the database
servers do the hashing), so ``cpu_us_per_row`` is a campus server's scan
time per row and ``cpu_us_per_txn`` that of the whole scan (one read
transaction).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ringsync.commands.bench.scenarios import Bench, Result, say
from ringsync.commands.bench.setups import RingsyncSetup
from ringsync.commands.bench.workload import TABLE
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
    return Result(setup.mode, "verify", rate, None, None, None, used.cpu_percent,
                  used.peak_rss_mb, txn_per_s=None, cpu_us_per_row=1e6 * mean_scan / rows,
                  cpu_us_per_txn=1e6 * mean_scan, seconds=mean_scan,
                  detail={"rows": rows, "bits": bits_for(rows), "copy_rows_per_s": copy_rate,
                          "ratio_to_copy": rate / copy_rate, "campuses": per_campus,
                          "consistent": report["consistent"]})
