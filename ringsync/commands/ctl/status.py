"""`ringsync ctl`: scripted calls to every node of a cluster, JSON or tables.

    ringsync ctl --cluster cluster.toml status [--json]

``status --json`` prints {"nodes": [...]}, one object per campus with
campus, address, healthy, engine, database, journal, applied, join
({state: waiting|comparing|copying|in-ring, donor, rows_copied, rows_total,
rows_per_second, eta_seconds, ...}), conflicts ({logged, parked, flagged,
delta_merged, policies}), links ({to, state, lag_transactions, lag_seconds,
...}), role (member or leaf) and leaves ({name, parent, online, lag_transactions,
lag_seconds, retention_hours, past_retention, rows_moved_in, ...}: docs/leaves.md).
Leaves' own nodes come after the members; the exit code counts members only.
(``verify`` is ringsync.commands.ctl.verify.)
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys
from typing import Any

from ringsync.client import ClusterClient, NodeReply
from ringsync.config import ClusterConfig
from ringsync.dsn import redact_dsn
from ringsync.statustext import apply_text, conflicts_text, join_text, refused_text


def node_to_dict(reply: NodeReply) -> dict[str, Any]:
    out: dict[str, Any] = {"campus": reply.campus, "address": reply.address}
    s = reply.status
    if s is None:
        out.update(healthy=False, error=reply.error, links=[])
        return out
    out.update(
        healthy=s.database_healthy,
        # Redacted here too (nodes already do): an older node may send a DSN's password.
        error=redact_dsn(s.database_error) or None,
        engine=s.engine,
        database=redact_dsn(s.database),
        journal_transactions=s.journal_transactions,
        journal_bytes=s.journal_bytes,
        journal=dict(s.journal.seqs),
        applied=dict(s.applied.seqs),
        captured_transactions=s.captured_transactions,
        applied_transactions=s.applied_transactions,
        row_counts=dict(s.row_counts),
        uptime_seconds=round(s.uptime_seconds, 1),
        durability=s.durability or "async",
        sets=s.sets or None,
        routing={"dr": s.routing.dr_enabled, "lease_ok": s.routing.lease_ok,
                 "leader": s.routing.leader or None, "serving": list(s.routing.serving),
                 "error": s.routing.error or None},
        version=s.version,
        join={
            "state": s.join.state,
            "donor": s.join.donor or None,
            "table": s.join.table or None,
            "rows_copied": s.join.rows_copied,
            "rows_total": s.join.rows_total,
            "rows_per_second": round(s.join.rows_per_second, 1),
            "eta_seconds": round(s.join.eta_seconds, 1),
            "detail": s.join.detail or None,
        },
        conflicts={"logged": s.conflicts.logged, "parked": s.conflicts.parked,
                   "flagged": s.conflicts.flagged, "delta_merged": s.conflicts.delta_merged,
                   "policies": s.conflicts.policies},
        dead_letters={"parked": s.dead_letters.parked, "applied": s.dead_letters.applied,
                      "skipped": s.dead_letters.skipped, "rejected": s.dead_letters.rejected},
        accounting={"received": s.accounting.received, "applied": s.accounting.applied,
                    "dead_lettered": s.accounting.dead_lettered,
                    "in_flight": s.accounting.in_flight, "balanced": s.accounting.balanced},
        refused={"by_kind": dict(s.refused.by_kind), "total": s.refused.total,
                 "last": s.refused.last or None},
        alerts=list(s.alerts),
        apply={"state": s.apply.state or None, "waiting_for": s.apply.waiting_for or None,
               "since": round(s.apply.since, 3), "alert": s.apply.alert or None,
               "transient_retries": s.apply.transient_retries,
               "isolations": s.apply.isolations,
               "incomplete_transactions": s.apply.incomplete_transactions,
               "oldest_incomplete_seconds": round(s.apply.oldest_incomplete_seconds, 1),
               "recorded": dict(s.apply.recorded.seqs),
               "last_error": redact_dsn(s.apply.last_error) or None,
               "fast_apply": s.apply.fast_apply, "fresh_rows": s.apply.fresh_rows,
               "fresh_fallbacks": s.apply.fresh_fallbacks,
               "outside_changes": s.apply.outside_changes},
        verify=verify_to_dict(s.verify),
        dictionaries=dictionaries_to_dict(s) if s.HasField("dictionaries") else None,
        leaves=[leaf_to_dict(x) for x in s.leaves],
        revocations={"number": s.revocations.number, "revoked": s.revocations.revoked,
                     "issued_at": _when(s.revocations.issued_at),
                     "certificate_expires_at": _when(s.revocations.certificate_expires_at),
                     "error": s.revocations.error or None},
        links=[
            {
                "to": link.to,
                "state": link.state,
                "successor": link.successor,
                "lag_transactions": link.lag_transactions,
                "lag_seconds": round(link.lag_seconds, 3),
                "txns_per_second": round(link.txns_per_second, 1),
                "rows_per_second": round(link.rows_per_second, 1),
                "error": redact_dsn(link.error) or None,
            }
            for link in s.links
        ],
    )
    return out


def leaf_to_dict(x: Any) -> dict[str, Any]:
    """A leaf as a parent (or the leaf itself) reports it (docs/leaves.md)."""
    return {"name": x.name, "parent": x.parent, "online": x.online,
            "last_seen": _when(x.last_seen), "lag_transactions": x.lag_transactions,
            "lag_seconds": round(x.lag_seconds, 3), "retention_hours": x.retention_hours,
            "past_retention": x.past_retention, "uploads": x.uploads,
            "rows_sent": x.rows_sent, "rows_filtered": x.rows_filtered,
            "rows_moved_in": x.rows_moved_in, "rows_moved_out": x.rows_moved_out,
            "unjudged": x.unjudged, "last_unjudged": x.last_unjudged or None,
            "cascades": x.cascades, "last_cascade": x.last_cascade or None,
            "error": redact_dsn(x.error) or None, "blocked": x.blocked}


def leaves_table(nodes: list[dict[str, Any]]) -> list[str]:
    """One line per leaf, as the ring campuses that are its parents see it."""
    rows = [(n["campus"], x) for n in nodes if n.get("role") != "leaf"
            for x in n.get("leaves") or ()]
    if not rows:
        return []
    lines = ["", f"{'LEAF':<16}{'PARENT':<16}{'STATE':<10}{'LAG TX':>8}{'LAG S':>10}"
                 f"{'KEEP H':>8}  ROUTE (sent, moved in/out, unjudged, re-seeds)"]
    for parent, x in rows:
        state = "online" if x["online"] else "PAST RETENTION" if x["past_retention"] else (
            "offline")
        lines.append(f"{x['name']:<16}{parent:<16}{state:<10}{x['lag_transactions']:>8}"
                     f"{x['lag_seconds']:>10.1f}{x['retention_hours']:>8g}  {x['rows_sent']}, "
                     f"{x['rows_moved_in']}/{x['rows_moved_out']}, {x['unjudged']}, "
                     f"{x['cascades']}")
    return lines


def _when(unix: float) -> str | None:
    return (dt.datetime.fromtimestamp(unix, dt.UTC).isoformat(timespec="seconds")
            if unix else None)


def verify_to_dict(v: Any) -> dict[str, Any]:
    """Scheduled verification as ``ctl status --json`` shows it."""
    return {"scheduled": v.scheduled, "last_at": _when(v.last_at),
            "coordinator": v.coordinator or None,
            "consistent": v.consistent if v.last_at else None,
            "diverged": v.diverged, "in_flight": v.in_flight,
            "campuses_failed": list(v.campuses_failed), "next_due": _when(v.next_due),
            "running": v.running, "error": v.error or None}


def dictionaries_to_dict(s: Any) -> dict[str, Any]:
    """Code dictionaries as ``ctl status --json`` shows them (None without)."""
    d = s.dictionaries
    return {"table": d.table, "columns": list(d.columns), "entries": d.entries,
            "unmapped_captured": d.unmapped_captured, "last_unmapped": d.last_unmapped or None,
            "parked": d.parked, "last_parked": d.last_parked or None,
            "map_errors": list(d.map_errors)}


def dictionaries_text(d: dict[str, Any]) -> str:
    if not d:
        return ""
    text = (f"dictionaries: {d['entries']} map rows ({d['table']}); "
            f"{d['unmapped_captured']} left unmapped, {d['parked']} parked here")
    if d["map_errors"]:
        text += f"; MAP ERROR: {d['map_errors'][0]}"
    return text


def verify_text(v: dict[str, Any]) -> str:
    if not v or not v.get("scheduled"):
        return ""
    if v.get("last_at") is None:
        last = "no verification yet"
    elif v["consistent"]:
        last = f"last {v['last_at']} consistent"
    else:
        failed = f", {', '.join(v['campuses_failed'])} did not answer" \
            if v["campuses_failed"] else ""
        last = (f"last {v['last_at']}: {v['diverged']} diverged, {v['in_flight']} in "
                f"flight{failed}")
    running = ", running now" if v.get("running") else ""
    return f"verify: {last}; next {v.get('next_due') or '-'}{running}"


def status_table(nodes: list[dict[str, Any]]) -> str:
    lines = [f"{'CAMPUS':<16}{'ADDRESS':<22}{'HEALTH':<9}{'ENGINE':<8}{'JOURNAL':>9}  ROWS"]
    for n in nodes:
        health = "ok" if n["healthy"] else "DOWN" if n.get("engine") is None else "ERROR"
        rows = ", ".join(f"{t}={c}" for t, c in sorted(n.get("row_counts", {}).items()))
        lines.append(
            f"{n['campus']:<16}{n['address']:<22}{health:<9}{n.get('engine', '-'):<8}"
            f"{n.get('journal_transactions', 0):>9}  {rows}"
        )
        if n.get("error"):
            lines.append(f"{'':<16}! {n['error']}")
        if joining := join_text(n.get("join", {})):
            lines.append(f"{'':<16}{joining}")
        if conflicts := conflicts_text(n.get("conflicts", {})):
            lines.append(f"{'':<16}{conflicts}")
        if refused := refused_text(n.get("refused", {})):
            lines.append(f"{'':<16}{refused}")
        if applying := apply_text(n.get("apply") or {}):
            lines.append(f"{'':<16}{applying}")
        if checked := verify_text(n.get("verify") or {}):
            lines.append(f"{'':<16}{checked}")
        if coded := dictionaries_text(n.get("dictionaries") or {}):
            lines.append(f"{'':<16}{coded}")
        for alert in n.get("alerts") or ():
            lines.append(f"{'':<16}ALERT: {alert}")
        books = n.get("accounting") or {}
        if books and not books["balanced"]:
            lines.append(f"{'':<16}ACCOUNTING OFF: received {books['received']} != applied "
                         f"{books['applied']} + dead letters {books['dead_lettered']} + in flight "
                         f"{books['in_flight']}")
        alerted = any("SYNC DEGRADED" in a for a in n.get("alerts") or ())
        if "DEGRADED" in n.get("durability", "") and not alerted:  # an older node: no alerts
            lines.append(f"{'':<16}SYNC DEGRADED: {n['durability']} (RPO > 0 until a peer "
                         f"catches up)")
        if "ALERT" in (n.get("sets") or ""):
            lines.append(f"{'':<16}SETS: {n['sets']} (ringsync ctl dlq list --state stale)")
        routing = n.get("routing") or {}
        if routing.get("dr") and not routing.get("serving"):
            lines.append(f"{'':<16}FENCED: serves no campus's users now (ringsync ctl route)")
        if parked := n.get("dead_letters", {}).get("parked"):
            lines.append(f"{'':<16}DEAD LETTERS: {parked} change(s) could not be applied "
                         f"(ringsync ctl dlq list)")
    lines.append("")
    lines.append(f"{'LINK':<34}{'STATE':<12}{'LAG TX':>8}{'LAG S':>9}{'TX/S':>9}{'ROWS/S':>9}")
    for n in nodes:
        for link in n["links"]:
            if link["state"] == "standby":
                continue
            name = f"{n['campus']} -> {link['to']}"
            lines.append(
                f"{name:<34}{link['state']:<12}{link['lag_transactions']:>8}"
                f"{link['lag_seconds']:>9.2f}{link['txns_per_second']:>9.1f}"
                f"{link['rows_per_second']:>9.1f}"
            )
    lines += leaves_table(nodes)
    return "\n".join(lines)


async def _status(cluster: ClusterConfig, as_json: bool) -> int:
    client = ClusterClient(cluster)
    try:
        members = [node_to_dict(r) for r in await client.status_all()]
        leaves = [node_to_dict(r) for r in await asyncio.gather(
            *(client.status_of(x.name) for x in cluster.leaves))]
    finally:
        await client.close()
    for n in members:
        n["role"] = "member"
    for n in leaves:
        n["role"] = "leaf"
    nodes = members + leaves
    if as_json:
        print(json.dumps({"cluster": cluster.name, "nodes": nodes}, indent=2))
    else:
        print(status_table(nodes))
    # A leaf offline is what a satellite does: only ring members decide the exit code.
    return 0 if all(n["healthy"] for n in members) else 1


def run(cluster: ClusterConfig, command: str, as_json: bool) -> int:
    if command == "status":
        return asyncio.run(_status(cluster, as_json))
    print(f"unknown ctl command {command!r}", file=sys.stderr)
    return 2


__all__ = ["run", "node_to_dict", "status_table"]
