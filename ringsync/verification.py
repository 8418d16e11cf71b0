"""Verification across the ring: find the exact rows that differ (ctl verify).

The nodes hash (node.verify): a campus answers for its own data with bucket
digests, and for the buckets that differ with (key, row hash) pairs; rows
themselves never travel. This module asks and compares:

1. every campus's status: who answers, its journal head and applied vector;
   the *target* vector is the newest transaction any campus has journaled;
2. per table, a bucket depth from the largest copy (node.verify.rowhash
   .bits_for, about 64 rows a bucket), every campus's bucket digests, and
   the buckets on which they disagree;
3. for those buckets, every campus's row hashes: each key present at only
   some campuses is ``missing`` (absent at a minority, or at half) or
   ``extra`` (present at a minority); a key present everywhere whose hashes
   disagree is ``changed``;
4. if anything differs, up to CONFIRM_ROUNDS confirm passes: read every
   campus's journal head *after* the previous pass (so it holds whatever
   that pass saw, once capture has journaled it), wait until every campus
   has applied it (or ``settle`` seconds pass), then hash the same buckets
   again. A difference that is gone was in flight and is not reported. One
   that stays is ``diverged`` only if the ring settled every round and no
   campus's copy of that row moved across all the passes; otherwise it is
   ``in_flight`` (a newer version is still travelling). Two rounds, because
   a transaction committed just before a pass may not be journaled yet when
   the head after it is read; by the second round it is.

The report is ``ctl verify --json``'s contract (docs/verification.md).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc

from ringsync.client import ClusterClient, describe_rpc_error

MAX_BITS = 14
ROWS_PER_BUCKET = 64
ROWS_PER_REQUEST = 10_000  # expected rows per row-hash answer (a megabyte or two)
SETTLE_SECONDS = 30.0
CONFIRM_ROUNDS = 2
TICK_SECONDS = 5.0


def bits_for(rows: int) -> int:
    """The bucket depth for a table whose largest copy has ``rows`` rows
    (node.verify.rowhash.bits_for, which the nodes check against MAX_BITS)."""
    bits = 0
    while bits < MAX_BITS and (rows >> bits) > ROWS_PER_BUCKET:
        bits += 1
    return bits


@dataclass
class Difference:
    table: str
    key_text: str
    key: dict[str, Any]
    digests: dict[str, bytes | None]  # campus -> row hash; None: absent

    def kind_and_campuses(self) -> tuple[str, dict[str, str]]:
        present = {c: d for c, d in self.digests.items() if d is not None}
        absent = [c for c, d in self.digests.items() if d is None]
        counts = Counter(present.values()).most_common()
        top = counts[0][0] if counts and (len(counts) == 1 or counts[0][1] > counts[1][1]) \
            else None
        marks = {c: ("absent" if d is None else "present" if d == top else "differs")
                 for c, d in sorted(self.digests.items())}
        if not absent:
            return "changed", marks
        return ("missing" if len(present) >= len(absent) else "extra"), marks


def differences_of(table: str, rows: dict[str, dict[str, tuple[bytes, str]]]
                   ) -> dict[str, Difference]:
    """Keys whose row hash is not the same at every campus that answered."""
    keys = set().union(*(r.keys() for r in rows.values())) if rows else set()
    out = {}
    for key in keys:
        digests = {c: (r[key][0] if key in r else None) for c, r in rows.items()}
        if len(set(digests.values())) > 1:
            key_json = next(r[key][1] for r in rows.values() if key in r)
            out[key] = Difference(table, key, json.loads(key_json), digests)
    return out


def differing_buckets(answers: dict[str, dict[int, tuple[int, bytes]]]) -> list[int]:
    buckets = set().union(*(a.keys() for a in answers.values())) if answers else set()
    return sorted(b for b in buckets
                  if len({a.get(b, (0, b"")) for a in answers.values()}) > 1)


def chunks(buckets: list[int], bits: int, rows: int) -> list[list[int]]:
    """Bucket lists whose answers hold about ROWS_PER_REQUEST rows each."""
    per_bucket = max(1, rows >> bits)
    size = max(1, ROWS_PER_REQUEST // per_bucket)
    return [buckets[i:i + size] for i in range(0, len(buckets), size)]


def vector_reached(applied: dict[str, int], journal: dict[str, int], campus: str,
                   target: dict[str, int]) -> bool:
    have = {**applied, campus: journal.get(campus, 0)}
    return all(have.get(o, 0) >= s for o, s in target.items())


@dataclass
class Verification:
    client: ClusterClient
    tables: list[str]
    settle: float = SETTLE_SECONDS
    full: bool = False  # hash every row, even where campuses keep incremental digests
    progress: Callable[[str], None] = lambda line: None
    errors: dict[str, str] = field(default_factory=dict)
    applied: dict[str, dict[str, int]] = field(default_factory=dict)
    journal: dict[str, dict[str, int]] = field(default_factory=dict)
    row_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    found: list[tuple[Difference, str]] = field(default_factory=list)  # with its state
    drift: dict[str, list[str]] = field(default_factory=dict)  # campus -> tables
    rate: float = 0.0  # rows a campus hashed per second, on the tables so far

    @property
    def up(self) -> list[str]:
        return [c for c in self.client.cluster.ring if c not in self.errors]

    async def _status(self) -> None:
        for reply in await self.client.status_all():
            if reply.status is None:
                self.errors[reply.campus] = reply.error or "no status"
                continue
            s = reply.status
            self.applied[reply.campus] = dict(s.applied.seqs)
            self.journal[reply.campus] = dict(s.journal.seqs)
            self.row_counts[reply.campus] = dict(s.row_counts)

    async def _ask(self, table: str, bits: int, buckets: list[int] | None = None,
                   incremental: bool = False) -> dict[str, Any]:
        """Each answering campus's reply; a campus that fails is recorded and dropped."""
        campuses = self.up
        replies = await asyncio.gather(
            *(self.client.verify(c, table, bits, buckets, incremental) for c in campuses),
            return_exceptions=True)
        out = {}
        for campus, reply in zip(campuses, replies, strict=True):
            if isinstance(reply, grpc.aio.AioRpcError):
                self.errors[campus] = describe_rpc_error(reply)
            elif isinstance(reply, BaseException):
                raise reply
            else:
                out[campus] = reply
        return out

    async def _campus_rows(self, campus: str, table: str, bits: int, part: list[int],
                           into: dict[str, tuple[bytes, str]]) -> None:
        """One campus's rows of ``part``; an answer too big for one message is
        asked again in halves."""
        try:
            reply = await self.client.verify(campus, table, bits, part)
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and len(part) > 1:
                half = len(part) // 2
                await self._campus_rows(campus, table, bits, part[:half], into)
                await self._campus_rows(campus, table, bits, part[half:], into)
                return
            raise
        for r in reply.rows:
            into[r.key] = (r.digest, r.key_json)

    async def _rows(self, table: str, bits: int, buckets: list[int], rows: int
                    ) -> dict[str, dict[str, tuple[bytes, str]]]:
        out: dict[str, dict[str, tuple[bytes, str]]] = {c: {} for c in self.up}
        for part in chunks(buckets, bits, rows):
            campuses = list(out)
            done = await asyncio.gather(
                *(self._campus_rows(c, table, bits, part, out[c]) for c in campuses),
                return_exceptions=True)
            for campus, result in zip(campuses, done, strict=True):
                if isinstance(result, grpc.aio.AioRpcError):
                    self.errors[campus] = describe_rpc_error(result)
                    out.pop(campus)
                elif isinstance(result, BaseException):
                    raise result
        return out

    async def _tick(self, table: str, rows: int, started: float) -> None:
        """While campuses hash a table: a line every TICK_SECONDS with the time so
        far and, from the rate of the tables hashed before, the time left."""
        while True:
            await asyncio.sleep(TICK_SECONDS)
            elapsed = time.monotonic() - started
            left = ""
            if self.rate and rows:
                left = f", about {max(0.0, rows / self.rate - elapsed):.0f} s left"
            self.progress(f"{table}: hashing about {rows:,} rows a campus, {elapsed:.0f} s so "
                          f"far{left}")

    async def _settled(self, target: dict[str, int]) -> bool:
        deadline = time.monotonic() + self.settle
        while True:
            await self._status()
            if all(vector_reached(self.applied.get(c, {}), self.journal.get(c, {}), c, target)
                   for c in self.up):
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.5)

    async def run(self) -> dict[str, Any]:
        await self._status()
        target = _newest(self.journal.values())
        tables: dict[str, Any] = {}
        first: dict[tuple[str, str], Difference] = {}
        to_confirm: dict[str, tuple[int, list[int], int]] = {}
        for table in self.tables:
            largest = max((self.row_counts.get(c, {}).get(table, 0) for c in self.up), default=0)
            bits = bits_for(largest)
            started = time.monotonic()
            ticker = asyncio.create_task(self._tick(table, largest, started))
            try:
                answers = await self._ask(table, bits, incremental=not self.full)
            finally:
                ticker.cancel()
            actual = max((sum(b.rows for b in a.buckets) for a in answers.values()), default=0)
            if bits_for(actual) > bits:  # the status's row counts were stale: go deeper
                largest, bits = actual, bits_for(actual)
                answers = await self._ask(table, bits, incremental=not self.full)
            largest = max(largest, actual)
            digests = {c: {b.bucket: (b.rows, b.digest) for b in a.buckets}
                       for c, a in answers.items() if c in self.up}
            tables[table] = {c: {**_table_summary(d), "mode": answers[c].mode or "stock"}
                             for c, d in digests.items()}
            for c, a in answers.items():
                if a.drift:
                    self.drift.setdefault(c, []).append(table)
            hashed = sum(r["rows"] for r in tables[table].values() if r["mode"] == "stock")
            kept = sum(r["mode"] == "incremental" for r in tables[table].values())
            elapsed = time.monotonic() - started
            if hashed and elapsed > 0.5:  # campuses answer at once: their slowest sets it
                self.rate = (hashed / max(1, len(digests) - kept)) / elapsed
            self.progress(f"{table}: {len(digests)} campuses ({kept} from kept digests), "
                          f"{hashed:,} rows hashed in {elapsed:.1f} s "
                          f"({hashed / max(elapsed, 1e-6):,.0f} rows/s), {1 << bits:,} buckets")
            wrong = differing_buckets(digests)
            if not wrong:
                continue
            self.progress(f"{table}: {len(wrong)} bucket(s) differ; listing their rows")
            for key, diff in differences_of(table, await self._rows(
                    table, bits, wrong, largest)).items():
                first[(table, key)] = diff
            to_confirm[table] = (bits, wrong, largest)
        differences, settled_count, settled = [], 0, True
        if first:
            self.progress(f"{len(first)} row(s) differ; confirming after the ring has applied "
                          f"what was in flight (up to {self.settle:.0f} s a round)")
            latest, stable = first, set(first)
            for _ in range(CONFIRM_ROUNDS):
                await self._status()  # journal heads now: they include what pass 1 saw
                settled = await self._settled(_newest(self.journal.values())) and settled
                current: dict[tuple[str, str], Difference] = {}
                for table, (bits, wrong, largest) in to_confirm.items():
                    for key, diff in differences_of(table, await self._rows(
                            table, bits, wrong, largest)).items():
                        current[(table, key)] = diff
                stable = {i for i in stable if i in current
                          and current[i].digests == latest[i].digests}
                latest = current
                if not current or not stable:
                    break
            settled_count = len(set(first) - set(latest))
            for ident, diff in sorted(latest.items()):
                state = "diverged" if settled and ident in stable else "in_flight"
                self.found.append((diff, state))
                differences.append(_report(diff, state))
        diverged = any(d["state"] == "diverged" for d in differences)
        return {
            "consistent": not differences and not self.errors,
            "full": self.full,
            "vector": target,
            "settled": settled,
            "in_flight_resolved": settled_count,
            "tables": tables,
            "mismatched_tables": sorted({d["table"] for d in differences}),
            "differences": differences,
            "campuses": {c: ({"error": self.errors[c]} if c in self.errors else
                             {"applied": self.applied.get(c, {}),
                              **({"drift": self.drift[c]} if c in self.drift else {})})
                         for c in self.client.cluster.ring},
            "exit": 1 if diverged else 2 if self.errors else 0,
        }


def summarize(report: dict[str, Any]) -> dict[str, Any]:
    """What status and ``ctl verify --history`` show of a kept report."""
    states = [d.get("state") for d in report.get("differences", []) if isinstance(d, dict)]
    hidden = report.get("diverged_not_listed", 0)
    return {
        "at": report.get("at", 0.0), "coordinator": str(report.get("coordinator", "")),
        "consistent": bool(report.get("consistent")),
        "diverged": states.count("diverged") + (hidden if isinstance(hidden, int) else 0),
        "in_flight": states.count("in_flight"),
        "campuses_failed": sorted(c for c, v in report.get("campuses", {}).items()
                                  if isinstance(v, dict) and "error" in v),
        "tables": sorted(report.get("tables", {})),
        "seconds": report.get("seconds", 0.0),
    }


def _newest(vectors: Iterable[dict[str, int]]) -> dict[str, int]:
    """Per origin, the newest transaction any of the vectors holds."""
    out: dict[str, int] = {}
    for vector in vectors:
        for origin, seq in vector.items():
            out[origin] = max(out.get(origin, 0), seq)
    return out


def _table_summary(buckets: dict[int, tuple[int, bytes]]) -> dict[str, Any]:
    words, rows = [0, 0, 0, 0], 0
    for n, digest in buckets.values():
        rows += n
        for i in range(4):
            words[i] = (words[i] + int.from_bytes(digest[8 * i:8 * i + 8], "big")) % (1 << 64)
    return {"rows": rows, "digest": b"".join(w.to_bytes(8, "big") for w in words).hex()}


def _report(diff: Difference, state: str) -> dict[str, Any]:
    kind, campuses = diff.kind_and_campuses()
    return {"table": diff.table, "key": diff.key, "kind": kind, "state": state,
            "campuses": campuses}
