"""Single-writer replication sets at one node: epoch stamps, the receiver's
verdict on stamped changes, and undoing a deposed writer's stale tail.

Data flow:

* **Capture** stamps every frame that changes a set's tables with the writer
  epoch this campus opened the set under (``SetGuard.stamp``; the epoch is
  kept in the database's set fence row, so it survives restarts).
* **Apply** asks ``SetGuard.verdict`` for each foreign frame that carries a
  stamp: apply it, park it as stale in the dead-letter queue (and alert), or
  wait (this node cannot prove yet who wrote under that epoch).
* **A deposed writer** whose tenure ended before all of its own changes had
  reached the ring (a failover) undoes those changes in its own database
  (``undo_stale_tail``: rows return to what they were before them, which is
  what every other campus holds) and parks them as stale, before it applies
  anything written under a later epoch.

The route of a set in etcd (ringsync.dr.routes) is the authority: who the
writer is (``serving``), since which epoch (``writer_since``), and every
ended tenure with its base (the writer's last journal seq that belongs to it).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from node.codec import decode_changes
from node.conflicts.deadletter import dead_letter_entry
from node.conflicts.driver import ConflictRecord, TxnInfo
from node.engines.base import ApplySession, Engine
from node.model import Change, TableShape
from node.replication.journal import Journal
from ringsync.dr.routes import REVOKING, Route
from ringsync.dr.settings import ReplicationSet
from ringsync.v1 import values_pb2 as pb

log = logging.getLogger(__name__)

STALE = "stale"  # the dead-letter state of a parked stale-epoch change


class Verdict(Enum):
    ACCEPT = "accept"
    PARK = "park"
    WAIT = "wait"


def judge(route: Route | None, fresh: bool, origin: str, epoch: int,
          seq: int) -> tuple[Verdict, str]:
    """What a receiver does with ``origin``'s transaction ``seq`` stamped with
    writer epoch ``epoch``, given the set's route as this node knows it.

    Ended tenures are settled facts and decide even on an old map; the
    current tenure is trusted only on a map read under a live lease.
    """
    if route is not None:
        for since, writer, base in route.tenures:
            if since != epoch:
                continue
            if writer != origin:
                return Verdict.PARK, (f"stale epoch {epoch}: that epoch's writer was {writer}, "
                                      f"not {origin}")
            if seq <= base:
                return Verdict.ACCEPT, ""
            return Verdict.PARK, (f"stale epoch {epoch}: {origin}'s tenure ended at seq {base}; "
                                  f"{origin}/{seq} was written after it was deposed")
    if route is None or not fresh:
        return Verdict.WAIT, "the set's routing map is not known under a live lease"
    if route.state == REVOKING and epoch == route.writer_since:
        return Verdict.WAIT, (f"{route.serving}'s tenure is being revoked: its end is not "
                              f"decided yet")
    if epoch == route.writer_since:
        if route.serving == origin:
            return Verdict.ACCEPT, ""
        return Verdict.PARK, (f"stale epoch {epoch}: the writer since epoch {epoch} is "
                              f"{route.serving}, not {origin}")
    if epoch > route.writer_since:
        return Verdict.WAIT, f"epoch {epoch} is newer than this node's map"
    return Verdict.PARK, (f"stale epoch {epoch}: older than the tenures the set's route "
                          f"still records")


@dataclass(frozen=True)
class UndoDue:
    """One of this node's own ended tenures whose stale tail is not undone yet."""

    set_name: str
    epoch: int
    base: int


class SetGuard:
    """Shared by the DR agent (which keeps routes, epochs and readiness) and
    by capture and apply (which read them from their threads)."""

    def __init__(self, sets: tuple[ReplicationSet, ...], me: str) -> None:
        self.me = me
        self.sets = {s.name: s for s in sets}
        self.set_of_table = {t: s.name for s in sets for t in s.tables}
        self._lock = threading.Lock()
        self._routes: dict[str, Route] = {}  # set name -> its route
        self._fresh: Callable[[], bool] = lambda: False
        self.epochs: dict[str, int] = {}      # set -> epoch this database opened it under
        self.reconciled: dict[str, int] = {}  # set -> own tenure epoch undone through
        self.capture_ready: set[str] = set()  # sets whose own changes are all journaled
        self.dynamic = True  # writers move (DR on); False: each set's configured writer
        self.own_prune_cap = 0  # own journal seq the pruner may drop through (see below)
        self.stale_parked = 0
        self.stale_undone = 0
        self.last_alert = ""

    @property
    def enabled(self) -> bool:
        return bool(self.sets)

    # -- the agent's side ----------------------------------------------------

    def update(self, routes: Mapping[str, Route], fresh: Callable[[], bool],
               dynamic: bool = True) -> None:
        self.dynamic = dynamic
        with self._lock:
            self._routes = {name: routes[s.route_key] for name, s in self.sets.items()
                            if s.route_key in routes}
            self._fresh = fresh

    def route(self, set_name: str) -> Route | None:
        with self._lock:
            return self._routes.get(set_name)

    def load(self, states: Mapping[str, Any]) -> None:
        """Epochs and reconciliation marks as stored in the database's set fence."""
        for name, state in states.items():
            self.epochs[name] = int(state.epoch)
            self.reconciled[name] = int(state.reconciled)

    def own_tenures_pending(self, set_name: str) -> list[UndoDue]:
        route = self.route(set_name)
        if route is None:
            return []
        done = self.reconciled.get(set_name, 0)
        return [UndoDue(set_name, since, base) for since, writer, base in route.tenures
                if writer == self.me and since > done]

    # -- capture and apply ---------------------------------------------------

    def stamp(self, tables: Iterable[str]) -> dict[str, int]:
        out = {}
        for table in tables:
            name = self.set_of_table.get(table)
            if name is not None:
                out[name] = self.epochs.get(name, 0)
        return out

    def verdict(self, set_name: str, origin: str, epoch: int, seq: int) -> tuple[Verdict, str]:
        if set_name not in self.sets:
            return Verdict.PARK, f"set {set_name!r} is not configured at this campus"
        route = self.route(set_name)
        if not self.dynamic:  # DR off: the configured writer, for ever
            if route is not None and origin == route.serving:
                return Verdict.ACCEPT, ""
            return Verdict.PARK, (f"{origin} is not the configured writer of set {set_name} "
                                  f"(disaster recovery is off)")
        pending = self.own_tenures_pending(set_name)
        if pending and epoch > min(p.epoch for p in pending):
            return Verdict.WAIT, "this campus is undoing its own stale changes first"
        return judge(route, self._fresh(), origin, epoch, seq)

    def own_frames_prunable(self) -> bool:
        """May the pruner drop this campus's own frames that every campus holds?
        Only on a fresh map with no own stale tail pending: a frame every
        campus holds is within any tenure base decided while this node's
        lease lives (a failover base is the most any live campus holds; a
        drained head is everything). Otherwise a frame may be held everywhere
        only because it was parked there, and its undo here still needs it."""
        return not self.enabled or not self.dynamic or (
            self._fresh() and not any(self.own_tenures_pending(n) for n in self.sets))

    def stamps_of(self, changes: Iterable[Change], epochs: dict[str, int]) -> dict[str, int]:
        """The frame's stamps, with epoch 0 (never valid) for a set it changes
        without a stamp (a peer that does not know the set)."""
        for change in changes:
            name = self.set_of_table.get(change.table)
            if name is not None and name not in epochs:
                epochs[name] = 0
        return epochs

    def undo_due(self) -> list[UndoDue]:
        return [due for name in self.sets if name in self.capture_ready
                for due in self.own_tenures_pending(name)]

    def alert(self, text: str) -> None:
        if text != self.last_alert:
            log.error("SINGLE-WRITER SET ALERT: %s", text)
        self.last_alert = text

    def summary(self) -> str:
        """One line for status: each set's writer and epoch, and any alert."""
        parts = []
        for name in self.sets:
            route = self.route(name)
            if route is None:
                parts.append(f"{name}: writer unknown")
                continue
            here = " (here)" if route.serving == self.me else ""
            parts.append(f"{name}: writer {route.serving}{here}, epoch {route.writer_since}"
                         f"{'' if route.state == 'active' else ', ' + route.state}")
        if self.stale_parked or self.stale_undone:
            parts.append(f"ALERT {self.stale_parked} stale change(s) parked, "
                         f"{self.stale_undone} own undone: {self.last_alert}")
        return "; ".join(parts)


def stale_entry(txn: TxnInfo, change: Change, shapes: Mapping[str, TableShape],
                reason: str) -> tuple[Any, ...]:
    shape = shapes[change.table]
    image = change.new if change.new is not None else change.old
    assert image is not None
    key_json = ConflictRecord.key_json_of(shape.key_of(image))
    return dead_letter_entry(txn, change, shapes, reason, key_json, state=STALE)


def reconcile_sets(engine: Engine, journal: Journal, guard: SetGuard,
                   to_local: Callable[[list[TableShape], list[Change], Mapping[str, TableShape]],
                                      list[Change]], recorded: int) -> None:
    """Undo every due stale tail of this campus's own in one apply session
    (engine thread); the marks move once it committed. Waits (returns) until
    the versions of this campus's own transactions are recorded through the
    last stale one (``recorded``: the applied vector's own entry), so no
    recording can later bring a stale version back."""
    shapes = engine.shapes()
    tails = [(d, *stale_tail(journal, shapes, guard, d, lambda s, c: to_local(s, c, shapes)))
             for d in guard.undo_due()]
    if any(last > recorded for _, _, last, _ in tails):
        return
    with engine.target.apply_session() as session:
        for d, stale, _, _ in tails:
            undo_stale_tail(session, shapes, guard, d, stale)
    for d, stale, _, missing in tails:
        guard.reconciled[d.set_name] = max(guard.reconciled.get(d.set_name, 0), d.epoch)
        guard.stale_undone += len(stale)
        if missing:
            guard.alert(f"set {d.set_name}: {missing} of {guard.me}'s own transactions after "
                        f"seq {d.base} were no longer in its journal when its tenure (epoch "
                        f"{d.epoch}) was reconciled; run ringsync verify")
        if stale:
            guard.alert(f"{len(stale)} change(s) of {guard.me} to set {d.set_name} after its "
                        f"tenure (epoch {d.epoch}) ended at seq {d.base} were undone here and "
                        f"parked as stale")
        else:
            log.info("set %s: own tenure (epoch %d) ended at seq %d; nothing to undo",
                     d.set_name, d.epoch, d.base)


def stale_tail(journal: Journal, shapes: Mapping[str, TableShape], guard: SetGuard, due: UndoDue,
               to_local: Callable[[list[TableShape], list[Change]], list[Change]],
               ) -> tuple[list[tuple[TxnInfo, Change]], int, int]:
    """This campus's own changes to ``due``'s set stamped with ``due.epoch``
    after seq ``due.base``, in commit order; the seq of the last transaction
    holding one; and how many seqs after the base the journal no longer has."""
    me = guard.me
    tables = set(guard.sets[due.set_name].tables)
    stale: list[tuple[TxnInfo, Change]] = []
    last = 0
    head = journal.vector().get(me, 0)
    seen: set[int] = set()
    for seq, body in journal.frames_after(me, due.base):
        if seq > head:
            break
        seen.add(seq)
        frame = pb.TxnFrame.FromString(body)
        if frame.set_epochs.get(due.set_name) != due.epoch:
            continue
        frame_shapes, changes = decode_changes(frame)
        info = TxnInfo(frame.origin, frame.seq, frame.hlc, dict(frame.deps), True)
        mine = [(info, c) for c in to_local(frame_shapes, changes) if c.table in tables]
        if mine:
            stale += mine
            last = seq
    return stale, last, max(0, head - due.base) - len(seen)


def undo_stale_tail(session: ApplySession, shapes: Mapping[str, TableShape], guard: SetGuard,
                    due: UndoDue, stale: list[tuple[TxnInfo, Change]]) -> None:
    """Restore every row the stale changes touched to its image before the
    first of them, as base versions (in the apply session: not captured, not
    replicated), park the changes as stale and mark the tenure reconciled,
    all in the session's transaction."""
    restore: dict[str, dict[tuple[Any, ...], tuple[Any, ...] | None]] = {}
    for _, change in stale:
        shape = shapes[change.table]
        rows = restore.setdefault(change.table, {})
        if change.old is not None:
            rows.setdefault(shape.key_of(change.old), change.old)
        if change.new is not None:
            rows.setdefault(shape.key_of(change.new), None)  # it did not exist before
    for table, rows in restore.items():
        session.write_rows(shapes[table], rows)
        session.reset_versions(shapes[table], {k: r is not None for k, r in rows.items()})
    reason = (f"stale epoch {due.epoch}: {guard.me}'s tenure as writer of {due.set_name} "
              f"ended at seq {due.base}; undone here, never applied elsewhere")
    if stale:
        session.park([stale_entry(info, c, shapes, reason) for info, c in stale])
    session.mark_set_reconciled(due.set_name, due.epoch)
