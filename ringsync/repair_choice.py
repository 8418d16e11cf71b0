"""Which copy of a diverged row `ctl repair` keeps: pure logic, no I/O.

Verification (ringsync.verification) finds a row whose copies differ; each
campus answers ``inspect`` (Control.RepairRow, node.verify.repair) with its
copy's *standing*: whether the copy is what the row's recorded versions make
it, and the winning version's policy rank, hybrid timestamp and origin.
The choice, by default, is the one the table's conflict policy would make:

* ``latest``, ``campus-priority``, ``rank``: the copy whose standing is
  highest, when it is the only one at the top. A copy that is not what its
  versions say (edited or deleted behind replication's back, or never
  recorded) has no standing at all: the policy cannot speak for it;
* otherwise (``manual``, ``merge``, no copy with standing, a tie): the
  majority's copy, as verify marks it ``present``; no majority: refused,
  and the operator names the copy to keep with ``--from CAMPUS``.

An absent copy that wins (a recorded delete) becomes a delete at a campus
that holds the row; a present copy is reasserted where it is.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

POLICY_RULES = ("latest", "campus-priority", "rank")
NO_STANDING = (False, 0, 0, "")


@dataclass(frozen=True)
class Copy:
    """One campus's copy of a row, as its campus described it."""

    campus: str
    digest: bytes | None  # the row hash; None: the campus has no such row
    recorded: bool = False
    rank: int = 0
    hlc: int = 0
    origin: str = ""

    @property
    def standing(self) -> tuple[bool, int, int, str]:
        if not self.recorded:
            return NO_STANDING
        return (True, self.rank, self.hlc, self.origin)


@dataclass(frozen=True)
class Choice:
    action: str  # reassert | delete
    at: str      # the campus that writes it
    reason: str


def _when(hlc: int) -> str:
    return dt.datetime.fromtimestamp((hlc >> 16) / 1000.0, dt.UTC).strftime(
        "%Y-%m-%d %H:%M:%S UTC")


def by_policy(rule: str, copies: list[Copy]) -> Choice | None:
    """The copy the policy picks, or None when it cannot tell them apart."""
    if rule not in POLICY_RULES or not copies:
        return None
    groups: dict[bytes | None, list[Copy]] = {}
    for c in copies:
        groups.setdefault(c.digest, []).append(c)
    best = sorted(((max(c.standing for c in g), d) for d, g in groups.items()),
                  key=lambda item: item[0], reverse=True)
    top, digest = best[0]
    if top == NO_STANDING or (len(best) > 1 and best[1][0] == top):
        return None
    winner = next(c for c in groups[digest] if c.standing == top)
    version = f"the version {winner.origin} wrote at {_when(winner.hlc)}"
    if digest is None:
        holder = sorted(c.campus for c in copies if c.digest is not None)[0]
        return Choice("delete", holder, f"{rule}: the row's winning version is a delete "
                                        f"({version}, held at {winner.campus})")
    return Choice("reassert", winner.campus,
                  f"{rule}: {winner.campus}'s copy is the winning version ({version})")


def by_majority(marks: Mapping[str, str], kind: str) -> Choice | str:
    """The majority's copy (verify's ``present``), or why there is none."""
    holders = sorted(c for c, m in marks.items() if m != "absent")
    if kind == "extra":
        return Choice("delete", holders[0], "most campuses do not hold the row")
    keep = sorted(c for c, m in marks.items() if m == "present")
    if keep:
        return Choice("reassert", keep[0], "the copy most campuses hold")
    return "no majority copy of this row: choose the one to keep with --from CAMPUS"


def from_campus(marks: Mapping[str, str], source: str) -> Choice | str:
    """The copy at ``source`` (--from), its absence included."""
    if source not in marks:
        return f"--from {source}: that campus did not answer"
    if marks[source] == "absent":
        holders = sorted(c for c, m in marks.items() if m != "absent")
        return Choice("delete", holders[0], f"--from {source}: it does not hold the row")
    return Choice("reassert", source, f"--from {source}")
