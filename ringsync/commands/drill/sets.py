"""The drill's single-writer-set checks, as pure functions of what it recorded.

Every campus runs a set writer (ringsync.commands.drill.checker.SetWriter) that keeps
trying to insert into the set's table in its own campus database; only the
set's current writer accepts. Each row carries the writer epoch the database
held (its set fence row) and the database's clock, read in the inserting
transaction. From the acknowledged writes, the rows every campus holds after
convergence, the changes each campus parked as stale, and the set's route
as sampled from etcd, ``check_sets`` decides:

* two writers: sorted by ``written_at`` (one machine, one clock), epochs
  never go down, each epoch was written by one campus only, and that campus
  is the one etcd names as the writer of the tenure that began at that epoch;
  at every campus, each epoch's rows come from one campus;
* convergence: every campus holds the same set rows;
* RPO: an acknowledged set write is at every campus, or (a deposed writer's
  write after its tenure ended) missing everywhere and parked as stale at
  every campus; anything else is lost.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# How many examples of each kind of failure a report lists.
EXAMPLES = 5


@dataclass(frozen=True)
class SetWrite:
    """One row of the set's table: as acknowledged to a writer, or as read back."""

    id: str
    campus: str  # the campus whose database took the write
    epoch: int | None  # the set fence epoch that database held (None: it had none)
    written_at: float  # the database's clock inside the writing transaction
    payload: str = ""
    acked_at: float = 0.0  # time.time() after the commit returned (acknowledged writes)

    def row(self) -> tuple[str, str, int | None, float, str]:
        """What every campus must hold identically (not the acknowledgement time)."""
        return (self.id, self.campus, self.epoch, self.written_at, self.payload)


def route_writers_from(docs: Iterable[Mapping[str, Any]]) -> dict[int, set[str]]:
    """Epoch -> the campuses etcd named as the writer of the tenure that began
    at that epoch, from samples of a set's route (its stored JSON): the current
    tenure (``writer_since`` -> ``serving``; ``writer_epoch`` as ``ctl route``
    prints it; a route with neither counts its ``epoch``) and the ended ones in
    ``tenures``: [writer epoch, writer, base seq] (or [first epoch, last
    epoch, writer, base seq]): the epoch first, the writer the first string."""
    writers: dict[int, set[str]] = defaultdict(set)
    for doc in docs:
        since = doc.get("writer_since", doc.get("writer_epoch", doc.get("epoch")))
        if isinstance(since, int) and isinstance(doc.get("serving"), str):
            writers[since].add(doc["serving"])
        for tenure in doc.get("tenures") or ():
            if not isinstance(tenure, list | tuple) or not tenure:
                continue
            writer = next((x for x in tenure if isinstance(x, str)), None)
            if isinstance(tenure[0], int) and writer is not None:
                writers[tenure[0]].add(writer)
    return dict(writers)


@dataclass
class SetVerdict:
    writes: int = 0  # acknowledged
    epochs: list[int] = field(default_factory=list)  # distinct epochs acknowledged or held
    two_writers: list[str] = field(default_factory=list)  # what showed two writers
    rows_identical: bool = True
    stale_parked: list[str] = field(default_factory=list)  # ids
    lost: list[str] = field(default_factory=list)  # ids
    failures: list[str] = field(default_factory=list)  # the other failures, for people

    @property
    def two_writers_seen(self) -> bool:
        return bool(self.two_writers)

    @property
    def problems(self) -> list[str]:
        return [*self.two_writers, *self.failures]

    @property
    def ok(self) -> bool:
        return not self.two_writers and self.rows_identical and not self.lost


def _epoch(e: int | None) -> str:
    return "none" if e is None else str(e)


def _by_epoch(item: tuple[int | None, Any]) -> int:
    return -1 if item[0] is None else item[0]


def _one_writer_per_epoch(writes: Iterable[SetWrite]) -> dict[int | None, set[str]]:
    by_epoch: dict[int | None, set[str]] = defaultdict(set)
    for w in writes:
        by_epoch[w.epoch].add(w.campus)
    return {e: cs for e, cs in by_epoch.items() if len(cs) > 1}


def check_sets(acked: Iterable[SetWrite], held: Mapping[str, Iterable[SetWrite]],
               stale: Mapping[str, set[str]],
               route_writers: Mapping[int, set[str]] | None) -> SetVerdict:
    """The set invariants (see the module docstring).

    ``acked``: every acknowledged write; ``held``: campus -> the rows its
    database holds after convergence (every campus); ``stale``: campus -> ids
    parked with state 'stale' in its dead-letter table; ``route_writers``:
    from ``route_writers_from`` (None: no route history, nothing verifiable).
    """
    acked = sorted(acked, key=lambda w: (w.written_at, w.acked_at, w.id))
    held_rows = {c: {w.id: w for w in rows} for c, rows in held.items()}
    v = SetVerdict(writes=len(acked))
    v.epochs = sorted({w.epoch for w in acked if w.epoch is not None}
                      | {w.epoch for rows in held_rows.values() for w in rows.values()
                         if w.epoch is not None})

    # Two writers, from what the writers were told: epochs in time order ...
    top: SetWrite | None = None  # the latest write of the highest epoch so far
    interleaved = []
    for w in acked:
        if w.epoch is None:  # no epoch at all: the route check below reports it
            continue
        if top is not None and top.epoch is not None and w.epoch < top.epoch:
            interleaved.append(
                f"{w.campus} wrote epoch {w.epoch} at {w.written_at:.3f} after "
                f"{top.campus} had written epoch {top.epoch} at {top.written_at:.3f}")
        else:
            top = w
    if interleaved:
        v.two_writers.append(f"epochs out of time order in {len(interleaved)} acknowledged "
                             f"write(s): " + "; ".join(interleaved[:EXAMPLES]))
    # ... one campus per epoch ...
    for e, campuses in sorted(_one_writer_per_epoch(acked).items(), key=_by_epoch):
        v.two_writers.append(f"epoch {_epoch(e)} acknowledged by {len(campuses)} campuses: "
                             f"{', '.join(sorted(campuses))}")
    # ... and that campus is etcd's writer of the tenure beginning at that epoch.
    written: dict[int | None, set[str]] = defaultdict(set)
    for w in acked:
        written[w.epoch].add(w.campus)
    if route_writers is None:
        if written:
            v.two_writers.append("no route history of the set: the writer of no epoch could "
                                 "be checked against etcd")
        route_writers = {}
    for e, campuses in sorted(written.items(), key=_by_epoch):
        named = route_writers.get(e) if e is not None else None
        if not named:
            v.two_writers.append(f"epoch {_epoch(e)} (written by {', '.join(sorted(campuses))}"
                                 f") began no writer tenure in etcd's route history")
        elif named != campuses:
            v.two_writers.append(
                f"epoch {_epoch(e)} written by {', '.join(sorted(campuses))} but etcd's writer "
                f"of the tenure beginning at that epoch was {', '.join(sorted(named))}")

    # What every campus holds: identical rows, one writer per epoch at each.
    for campus, rows in sorted(held_rows.items()):
        for e, campuses in sorted(_one_writer_per_epoch(rows.values()).items(),
                                  key=_by_epoch):
            v.two_writers.append(f"{campus} holds epoch {_epoch(e)} rows of "
                                 f"{', '.join(sorted(campuses))}")
    images = {c: {w.row() for w in rows.values()} for c, rows in held_rows.items()}
    if len({frozenset(i) for i in images.values()}) > 1:
        v.rows_identical = False
        union = set().union(*images.values())
        differ = {c: len(union - i) for c, i in sorted(images.items()) if union - i}
        v.failures.append("campuses hold different set rows (rows missing or different: "
                          + ", ".join(f"{c} {n}" for c, n in differ.items()) + ")")

    # RPO: present everywhere, or missing everywhere and parked as stale everywhere.
    where: dict[tuple[tuple[str, ...], tuple[str, ...]], int] = defaultdict(int)
    for w in acked:
        present = tuple(c for c, rows in held_rows.items() if w.id in rows)
        if held_rows and len(present) == len(held_rows):
            continue
        parked = tuple(c for c in held_rows if w.id in stale.get(c, set()))
        if not present and held_rows and len(parked) == len(held_rows):
            v.stale_parked.append(w.id)
        else:
            v.lost.append(w.id)
            where[(present, parked)] += 1
    if v.lost:
        how = "; ".join(f"{n} held at {', '.join(present) or 'no campus'}, parked as stale at "
                        f"{', '.join(parked) or 'no campus'}"
                        for (present, parked), n in sorted(where.items()))
        v.failures.append(f"{len(v.lost)} acknowledged set write(s) neither at every campus nor "
                          f"parked as stale at every campus ({how}): "
                          f"{', '.join(v.lost[:EXAMPLES])}")
    return v
