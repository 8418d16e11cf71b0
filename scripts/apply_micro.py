#!/usr/bin/env python3
"""Apply's CPU per row on a real PostgreSQL, fast path against exact path.

    .venv/bin/python scripts/apply_micro.py [ROWS] [ROUNDS]

Builds a throwaway PostgreSQL (initdb on a free port), then for each path
(exact, fast, exact, fast) a fresh database and ROUNDS remote transactions
of ROWS fresh lab-result rows, each cut into 2,000-row frames as capture
cuts them, decoded from the wire and applied through Resolver.apply_many in
one apply session. Prints the client CPU (this process: decode, resolve,
COPY formatting) and the apply backend's CPU (from /proc) per row. Not a
substitute for `ringsync bench` (no capture, journal or gRPC): a harness to
measure one stage before and after a change, as docs/benchmark.md quotes it.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from decimal import Decimal
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from node.codec import build_frame, decode_changes  # noqa: E402
from node.conflicts.driver import Resolver, TxnInfo  # noqa: E402
from node.engines.postgres.engine import PostgresEngine  # noqa: E402
from node.hlc import HybridClock  # noqa: E402
from node.model import Change, Op  # noqa: E402
from ringsync.commands.demo.cluster import free_port  # noqa: E402
from ringsync.commands.demo.postgres import LocalPostgres  # noqa: E402
from ringsync.conflict_policy import ConflictSettings  # noqa: E402
from ringsync.v1 import values_pb2 as pb  # noqa: E402

DDL = ("CREATE TABLE lab(id bigint PRIMARY KEY, patient text, test text, value numeric, "
       "unit text, taken timestamptz, flag boolean, note text)")
FRAME_ROWS = 2000


def backend_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(pg: LocalPostgres, fast: bool, rows: int, rounds: int) -> tuple[float, float]:
    name = f"micro_{int(fast)}_{time.time_ns() % 10**9}"
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = pg.dsn.replace("dbname=postgres", f"dbname={name}")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(DDL)
    engine = PostgresEngine(dsn, ("lab",), "b")
    engine.open()
    try:
        shapes = dict(engine.shapes())
        resolver = Resolver(shapes, ConflictSettings(), HybridClock(), fast=fast)
        assert engine.ctx.apply is not None
        pid = engine.ctx.apply.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
        engine.ctx.apply.commit()
        taken = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        client = backend = 0.0
        for r in range(rounds):
            changes = [Change("lab", Op.INSERT, new=(r * rows + i, f"p{i % 977}", "glucose",
                                                     Decimal("5.4"), "mmol/L", taken, False, None))
                       for i in range(rows)]
            bodies = [build_frame("a", r + 1, j // FRAME_ROWS, j + FRAME_ROWS >= rows, time.time(),
                                  changes[j:j + FRAME_ROWS], shapes, hlc=5).SerializeToString()
                      for j in range(0, rows, FRAME_ROWS)]
            c0, b0 = time.process_time(), backend_cpu(pid)
            info = TxnInfo("a", r + 1, 5, {}, False)
            with engine.target.apply_session() as session:
                for body in bodies:
                    _, decoded = decode_changes(pb.TxnFrame.FromString(body))
                    resolver.apply_many(session, [(info, decoded)])
                session.advance("a", r + 1)
            client += time.process_time() - c0
            backend += backend_cpu(pid) - b0
        return 1e6 * client / (rows * rounds), 1e6 * backend / (rows * rounds)
    finally:
        engine.close()


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    pg = LocalPostgres.create(None, free_port())
    pg.start()
    try:
        for fast in (False, True, False, True):
            client, backend = run(pg, fast, rows, rounds)
            print(f"{'fast ' if fast else 'exact'}: client {client:5.1f} us/row, "
                  f"backend {backend:5.1f} us/row ({rounds} x {rows:,} rows)", flush=True)
    finally:
        pg.remove()


if __name__ == "__main__":
    main()
