"""The routing map and campus membership as stored in etcd, and the pure
decisions taken from them.

Keys, under ``/ringsync/<cluster>/``:

* ``routes/<campus>``: which node's database serves that campus's users
  (``serving``), in which ``state`` (``active``, or ``draining`` while a
  planned move is fencing and catching up), and an ``epoch`` that grows with
  every change. Written only with compare-and-swap on the key's revision.
* ``members/<campus>``: a node's report, attached to its etcd lease, so it
  disappears when the node dies or is cut off from the etcd majority.
* ``leader``: the node that runs automatic failover, also on a lease.

A node's database accepts application writes only while its lease is alive
and some campus's route is ``active`` on it (``writable_for``); that rule is
enforced by the database's fence guard (node.dr.agent keeps it current).

A single-writer replication set is a route too, ``routes/set:<name>``: its
``serving`` campus is the set's writer. Its ``writer_since`` (the route epoch
at which that writer's tenure began) is the *writer epoch* the writer stamps
on its changes, and ``tenures`` records every ended tenure with its *base*:
the writer's last journal seq that belongs to it (the drained head of a
switchover; at a failover, the most any live campus had received). A change
stamped with an ended tenure's epoch and a later seq is stale
(node.dr.sets).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

ACTIVE = "active"
DRAINING = "draining"
REVOKING = "revoking"  # a set's failed writer: collecting what live campuses hold of it
SET_PREFIX = "set:"
MAX_TENURES = 64  # ended tenures kept in a set's route (older stamps are refused)


def is_set_route(key: str) -> bool:
    return key.startswith(SET_PREFIX)


@dataclass(frozen=True)
class Route:
    campus: str
    serving: str
    state: str = ACTIVE
    epoch: int = 1
    reason: str = "initial: every campus serves its own users"
    since: float = 0.0
    target: str = ""  # while draining: where the route is moving
    # The epoch at which ``serving`` began serving (a set's writer epoch).
    writer_since: int = 1
    # Ended tenures, oldest first: (writer epoch, writer, base seq).
    tenures: tuple[tuple[int, str, int], ...] = ()
    revision: int = 0  # etcd mod_revision of the stored value (not stored)

    def encode(self) -> bytes:
        out = asdict(self)
        out.pop("revision")
        return json.dumps(out, sort_keys=True).encode()

    @classmethod
    def decode(cls, value: bytes, revision: int) -> Route:
        data = json.loads(value)
        data["tenures"] = tuple((int(e), str(w), int(b)) for e, w, b in data.get("tenures", ()))
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__},
                   revision=revision)

    def moved(self, **changes: Any) -> Route:
        """The next version of this route (epoch + 1)."""
        return replace(self, epoch=self.epoch + 1, **changes)

    def handed_over(self, to: str, base: int, **changes: Any) -> Route:
        """The next version with ``to`` serving: the current tenure ends at
        ``base`` (the old server's last journal seq that counts) and the new
        one starts at this epoch."""
        ended = (*self.tenures, (self.writer_since, self.serving, base))[-MAX_TENURES:]
        return replace(self, epoch=self.epoch + 1, serving=to, writer_since=self.epoch + 1,
                       tenures=ended, **changes)

    def to_dict(self) -> dict[str, Any]:
        out = {"campus": self.campus, "serving": self.serving, "state": self.state,
               "epoch": self.epoch, "reason": self.reason, "since": self.since,
               "target": self.target or None}
        if is_set_route(self.campus):
            out["writer_epoch"] = self.writer_since
            out["tenures"] = [list(t) for t in self.tenures]
        return out


@dataclass(frozen=True)
class Member:
    """What a live node reports about itself (refreshed every lease_ttl / 3)."""

    campus: str
    db_healthy: bool = False
    initialized: bool = False
    writable: bool = False  # its database accepts application writes now
    journal: dict[str, int] = field(default_factory=dict)
    applied: dict[str, int] = field(default_factory=dict)
    # Routes draining off this node: campus -> [route epoch, this node's own
    # journal head once everything committed before the drain was captured].
    drained: dict[str, list[int]] = field(default_factory=dict)
    # Single-writer sets whose tables this node's database accepts writes to now.
    sets_open: list[str] = field(default_factory=list)
    # Set route -> the route epoch this node has seen (and judges changes by).
    seen: dict[str, int] = field(default_factory=dict)
    at: float = 0.0

    def encode(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def decode(cls, value: bytes) -> Member:
        data = json.loads(value)
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


class Keys:
    def __init__(self, cluster: str) -> None:
        self.prefix = f"/ringsync/{cluster}/"
        self.routes = self.prefix + "routes/"
        self.members = self.prefix + "members/"
        self.leader = self.prefix + "leader"

    def route(self, campus: str) -> str:
        return self.routes + campus

    def member(self, campus: str) -> str:
        return self.members + campus


def writable_for(routes: dict[str, Route], node: str) -> list[str]:
    """The campuses whose users this node's database serves right now."""
    return sorted(c for c, r in routes.items()
                  if r.serving == node and r.state == ACTIVE and not is_set_route(c))


def static_routes(ring: tuple[str, ...],
                  set_writers: dict[str, str] | None = None) -> dict[str, Route]:
    """Without etcd: every campus serves its own users, and every set keeps
    its configured writer, for ever."""
    routes = {c: Route(c, c) for c in ring}
    for key, writer in (set_writers or {}).items():
        routes[key] = Route(key, writer, reason="the set's configured writer")
    return routes


def caught_up(target: Member, source: Member) -> bool:
    """``target`` has applied every transaction ``source`` holds (as last reported)."""
    return all(target.applied.get(origin, 0) >= seq if origin != target.campus
               else target.journal.get(origin, 0) >= seq
               for origin, seq in source.journal.items())


def failover_target(campus: str, standby: tuple[str, ...], members: dict[str, Member],
                    exclude: str) -> str | None:
    """The first live, healthy, joined campus in ``campus``'s standby order."""
    for candidate in (campus, *standby):
        m = members.get(candidate)
        if candidate != exclude and m is not None and m.db_healthy and m.initialized:
            return candidate
    return None


def failovers(routes: dict[str, Route], members: dict[str, Member],
              down_since: dict[str, float], now: float, failover_after: float,
              standby: dict[str, tuple[str, ...]]) -> list[Route]:
    """Routes to move because their serving node has been down long enough.

    A node is down when its lease-backed member key is gone (dead, or cut
    off from the etcd majority) or it reports its database unhealthy; its
    ``down_since`` is kept by the caller. A campus whose own node serves
    nobody is left alone (it is fenced already).
    """
    moves = []
    for campus, route in sorted(routes.items()):
        since = down_since.get(route.serving)
        if since is None or now - since < failover_after:
            continue
        old = members.get(route.serving)
        if old is not None and (old.writable or campus in old.sets_open):
            continue  # alive and still open: wait until it reports its database fenced
        target = failover_target(campus, standby.get(campus, ()), members, route.serving)
        if target is None:
            continue
        gone = "lost its etcd lease" if route.serving not in members else (
            "reported its database down")
        reason = f"failover: {route.serving} {gone} for {now - since:.1f}s"
        if is_set_route(campus):  # two phases: revoking now, complete_revokes later
            chosen = members.get(route.target)
            if route.state != REVOKING or not (chosen is not None and chosen.db_healthy
                                               and chosen.initialized):
                moves.append(route.moved(
                    state=REVOKING, target=target, since=now,
                    reason=f"{reason}; collecting what the live campuses hold of it"))
            continue
        moves.append(route.moved(
            serving=target, state=ACTIVE, target="", since=now, reason=reason))
    return moves


def failover_base(old: str, members: dict[str, Member]) -> int:
    """Where a failed writer's tenure ends: the most of its transactions any
    live campus holds (received, or its own journal if it still reports).
    The new writer opens only once it has applied that much; anything the
    old writer wrote later is stale everywhere."""
    return max((m.journal.get(old, 0) for m in members.values()), default=0)


REVOKE_WAIT_SECONDS = 10.0


def complete_revokes(routes: dict[str, Route], members: dict[str, Member], now: float,
                     seen_since: dict[str, float] | None = None) -> list[Route]:
    """Set failovers, second phase. While a set's route is ``revoking`` no
    campus applies its writer's current-tenure changes (node.dr.sets.judge
    waits); once every live campus reports it has seen that (its member
    report's ``seen``, published with the journal vector it holds), the
    tenure ends at the most any of them holds, and the route goes to the
    target (or the next live standby). A campus that never reports within
    REVOKE_WAIT_SECONDS is counted by its last report."""
    moves = []
    for key, route in sorted(routes.items()):
        if route.state != REVOKING:
            continue
        waited = now - (seen_since or {}).get(key, route.since)
        if (any(m.seen.get(key, 0) < route.epoch for m in members.values())
                and waited < REVOKE_WAIT_SECONDS):
            continue
        target = route.target
        m = members.get(target)
        if m is None or not m.db_healthy or not m.initialized:
            continue  # failovers() picks a live target again (it sees this route revoking)
        base = failover_base(route.serving, members)
        moves.append(route.handed_over(
            target, base, state=ACTIVE, target="", since=now,
            reason=route.reason.replace("collecting what the live campuses hold of it",
                                        f"its tenure ends at seq {base}")))
    return moves


DRAIN_TIMEOUT_SECONDS = 60.0


def complete_drains(routes: dict[str, Route], members: dict[str, Member],
                    now: float, seen_since: dict[str, float] | None = None) -> list[Route]:
    """Draining routes whose target has applied everything the old serving node
    held when it drained: the route moves (``active`` at the target). A drain
    that cannot finish within DRAIN_TIMEOUT_SECONDS returns to where it was;
    that time runs from ``seen_since`` (the leader's own clock) when given."""
    moves = []
    for campus, route in sorted(routes.items()):
        if route.state != DRAINING:
            continue
        source, target = members.get(route.serving), members.get(route.target)
        drained = source.drained.get(campus) if source is not None else None
        if (drained is not None and drained[0] == route.epoch and target is not None
                and target.applied.get(route.serving, 0) >= drained[1]):
            kind = (route.reason.split(" ", 1)[0].rstrip(":") or "move")
            reason = (f"{kind} from {route.serving}: lossless ({route.serving} drained at "
                      f"seq {drained[1]})")
            if is_set_route(campus):
                moves.append(route.handed_over(route.target, drained[1], state=ACTIVE,
                                               target="", since=now, reason=reason))
            else:
                moves.append(route.moved(serving=route.target, state=ACTIVE, target="",
                                         since=now, reason=reason))
        elif now - (seen_since or {}).get(campus, route.since) > DRAIN_TIMEOUT_SECONDS:
            moves.append(route.moved(
                state=ACTIVE, target="", since=now,
                reason=f"move to {route.target} abandoned after {DRAIN_TIMEOUT_SECONDS:.0f}s: "
                       f"it did not catch up with {route.serving}"))
    return moves


def down_nodes(members: dict[str, Member], ring: tuple[str, ...]) -> set[str]:
    return {c for c in ring if c not in members or not members[c].db_healthy}


def failbacks(routes: dict[str, Route], members: dict[str, Member], now: float) -> list[Route]:
    """Automatic failback: a campus served elsewhere whose own node is live and
    has caught up with the node serving it starts draining back home."""
    moves = []
    for campus, route in sorted(routes.items()):
        home, serving = members.get(campus), members.get(route.serving)
        if (is_set_route(campus) or route.serving == campus or route.state != ACTIVE or home is None
                or serving is None or not home.db_healthy or not home.initialized):
            continue
        if caught_up(home, serving):
            moves.append(route.moved(state=DRAINING, target=campus, since=now,
                                     reason=f"failback: {campus} is back and caught up"))
    return moves
