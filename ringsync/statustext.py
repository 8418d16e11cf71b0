"""One-line descriptions of a node's status, shared by `ringsync ctl status`
and the console.

Each takes a section of a status dict (as `ctl status --json` prints it) and
returns one line, or "" when there is nothing to say.
"""

from __future__ import annotations

import time
from typing import Any


def join_text(join: dict[str, Any]) -> str:
    """One line on a campus that is not in the ring yet; empty once it is."""
    state = join.get("state") or ""
    if state in ("", "in-ring"):
        return ""
    if state == "copying":
        copied, total = join["rows_copied"], join["rows_total"]
        pct = f" ({100 * copied / total:.0f}%)" if total else ""
        eta_s = join.get("eta_seconds") or 0
        eta = f", ~{eta_s:.0f}s left" if eta_s >= 1 else ", <1s left" if eta_s else ""
        table = f" [{join['table']}]" if join.get("table") else ""
        return (f"joining: copying from {join['donor']}: {copied:,}/{total:,} rows{pct}, "
                f"{join['rows_per_second']:,.0f} rows/s{eta}{table}")
    detail = f": {join['detail']}" if join.get("detail") else ""
    donor = f" with {join['donor']}" if join.get("donor") and state == "comparing" else ""
    return f"joining: {state}{donor}{detail}"


def conflicts_text(counts: dict[str, Any]) -> str:
    """One line when the campus has logged conflicts; parked ones need an operator.
    Delta-merged edits (only delta columns concurrent: certain) are counted, not logged."""
    logged, parked, flagged = (counts.get(k, 0) for k in ("logged", "parked", "flagged"))
    merged = counts.get("delta_merged", 0)
    if not (logged or parked or flagged or merged):
        return ""
    parts = [f"conflicts: {logged} resolved by policy"]
    if parked:
        parts.append(f"{parked} PARKED for an operator (ringsync ctl conflicts list --state "
                     f"parked)")
    if flagged:
        parts.append(f"{flagged} clock-skew flags")
    if merged:
        parts.append(f"{merged} delta-merged (not logged)")
    return ", ".join(parts)


def refused_text(refused: dict[str, Any]) -> str:
    """One line when peers sent frames this campus refused (node.replication.framecheck)."""
    if not refused or not refused.get("total"):
        return ""
    kinds = ", ".join(f"{k}={n}" for k, n in sorted(refused["by_kind"].items()))
    return f"REFUSED from peers: {refused['total']} ({kinds}); last: {refused.get('last')}"


def apply_text(apply: dict[str, Any]) -> str:
    """One line when apply is not simply applying or idle: what it waits for."""
    state = apply.get("state") or "idle"
    if state in ("idle", "batch"):
        return ""
    since = apply.get("since") or 0.0
    age = f" for {max(0.0, time.time() - since):.0f}s" if since else ""
    waiting = f", waiting for {apply['waiting_for']}" if apply.get("waiting_for") else ""
    return f"apply: {state.replace('_', ' ')}{age}{waiting}"
