"""Status: the node's view of itself and its links, as a NodeStatus message.

Cheap to build: database health and row counts are refreshed by a monitor
loop into a cache; link lag comes from the last Ack of each link plus one
indexed journal lookup for the age of the oldest missing transaction.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from node.dr.agent import DRAgent
from node.leaf.status import leaf_alerts, leaf_statuses
from node.replication.syncrep import sync_alert
from node.replication.vectors import lag
from node.revocations import revocation_alerts, revocation_status
from node.runtime import NodeRuntime
from node.verify.reports import summarize
from node.verify.schedule import VerifyScheduler
from ringsync import __version__
from ringsync.dr.routes import is_set_route
from ringsync.dsn import redact_dsn
from ringsync.errors import RingsyncError
from ringsync.v1 import control_pb2 as cpb
from ringsync.v1 import replication_pb2 as rpb

log = logging.getLogger(__name__)

MONITOR_INTERVAL_SECONDS = 1.0


class StatusCache:
    def __init__(self) -> None:
        self.healthy = False
        self.error = "not checked yet"
        self.row_counts: dict[str, int] = {}
        self.conflicts: dict[str, int] = {}
        self.dead_letters: dict[str, int] = {}
        self.accounting = cpb.Accounting()
        self.recorded: dict[str, int] = {}  # the applied vector as the database holds it


async def monitor_loop(rt: NodeRuntime, cache: StatusCache) -> None:
    def probe() -> tuple[dict[str, int], dict[str, int], tuple[Any, ...]]:
        rt.engine.inspect.check_health()
        engine = rt.engine
        return (engine.inspect.row_counts(), engine.store.conflict_counts(),
                engine.target.apply_accounting())

    while True:
        try:
            cache.row_counts, cache.conflicts, books = await rt.in_engine(probe)
            vector, applied, cache.dead_letters = books
            cache.recorded = dict(vector)
            received, in_flight = await rt.in_journal(rt.journal.received_and_in_flight,
                                                      vector)
            # Own stale changes (undone here) and own changes capture rejected were
            # never received: not in the books.
            dead = sum(n for state, n in cache.dead_letters.items()
                       if state not in ("stale_own", "rejected", "rejected_skipped"))
            cache.accounting = cpb.Accounting(
                received=received, applied=applied, dead_lettered=dead, in_flight=in_flight,
                balanced=received == applied + dead + in_flight)
            cache.healthy, cache.error = True, ""
        except RingsyncError as e:
            cache.healthy, cache.error = False, str(e)
        except Exception as e:  # driver errors: report, keep monitoring
            cache.healthy, cache.error = False, f"{type(e).__name__}: {e}"
        await asyncio.sleep(MONITOR_INTERVAL_SECONDS)


def verify_summary(scheduler: VerifyScheduler, now: float) -> cpb.VerifySummary:
    latest = scheduler.reports.latest()
    due = scheduler.next_due(now) if scheduler.schedule.enabled else None
    out = cpb.VerifySummary(scheduled=scheduler.schedule.enabled, next_due=due or 0.0,
                            running=scheduler.running, error=scheduler.last_error)
    if latest is not None:
        s = summarize(latest)
        out.last_at, out.coordinator, out.consistent = float(s["at"]), s["coordinator"], \
            s["consistent"]
        out.diverged, out.in_flight = s["diverged"], s["in_flight"]
        out.campuses_failed.extend(s["campuses_failed"])
    return out


def verify_alert(scheduler: VerifyScheduler) -> str:
    """An alert while the newest verification report found diverged rows."""
    latest = scheduler.reports.latest()
    if latest is None:
        return ""
    s = summarize(latest)
    if not s["diverged"]:
        return ""
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(float(s["at"])))
    return (f"verification at {when} (run by {s['coordinator']}) found {s['diverged']} "
            f"diverged row(s): ringsync ctl verify lists them, ctl repair fixes them")


def routing_map(agent: DRAgent) -> cpb.RoutingMap:
    view = agent.view
    return cpb.RoutingMap(
        dr_enabled=view.enabled, node=agent.me, leader=view.leader,
        lease_ok=view.lease_ok, error=view.error, writable_until=view.writable_until,
        serving=[c for c in sorted(view.routes) if agent.serving(c)],
        routes=[cpb.Route(campus=r.campus, serving=r.serving, state=r.state, epoch=r.epoch,
                          reason=r.reason, since=r.since, target=r.target,
                          writer_epoch=r.writer_since if is_set_route(r.campus) else 0)
                for _, r in sorted(view.routes.items())])


async def build_status(rt: NodeRuntime, cache: StatusCache,
                       agent: DRAgent | None = None) -> cpb.NodeStatus:
    journal_vector = rt.journal.vector()
    links = []
    now = time.time()
    for link in rt.links.values():
        behind = lag(journal_vector, link.peer_applied)
        lag_seconds = 0.0
        if behind:
            oldest = await rt.in_journal(rt.journal.oldest_missing_time, link.peer_applied)
            lag_seconds = max(0.0, now - oldest) if oldest is not None else 0.0
        state = link.state
        if state == "idle" and not link.successor:
            state = "standby"
        links.append(
            cpb.LinkStatus(
                to=link.to,
                state=state,
                lag_transactions=behind,
                lag_seconds=lag_seconds,
                txns_per_second=link.txns.rate(),
                rows_per_second=link.rows.rate(),
                successor=link.successor,
                error=link.error,
            )
        )
    error = cache.error or rt.database_error or rt.apply_error
    leaves = await leaf_statuses(
        rt.config, rt.state, journal_vector,
        lambda v: rt.in_journal(rt.journal.oldest_missing_time, v))
    return cpb.NodeStatus(
        campus=rt.campus,
        address=rt.config.listen,
        engine=rt.engine.name,
        database=redact_dsn(rt.engine.description),
        database_healthy=cache.healthy and not rt.apply_error,
        database_error=redact_dsn(error),
        journal_transactions=rt.journal.transactions,
        journal_bytes=rt.journal.bytes,
        journal=rpb.Vector(seqs=journal_vector),
        applied=rpb.Vector(seqs=rt.applied_vector()),
        links=links,
        row_counts=cache.row_counts,
        uptime_seconds=now - rt.started_at,
        captured_transactions=rt.captured_txns,
        applied_transactions=rt.applied_txns,
        version=__version__,
        join=join_status(rt),
        conflicts=cpb.ConflictCounts(
            logged=cache.conflicts.get("logged", 0), parked=cache.conflicts.get("parked", 0),
            flagged=cache.conflicts.get("flagged", 0),
            delta_merged=cache.conflicts.get("delta_merged", 0), policies=policies_text(rt)),
        dead_letters=cpb.DeadLetterCounts(**{
            k: cache.dead_letters.get(k, 0) for k in ("parked", "applied", "rejected")},
            # a campus's own rejected changes skipped count as skipped, outside the accounting
            skipped=cache.dead_letters.get("skipped", 0)
            + cache.dead_letters.get("rejected_skipped", 0)),
        accounting=cache.accounting,
        routing=routing_map(agent) if agent is not None else None,
        durability=rt.durability,
        sets=rt.sets.summary() if rt.sets.enabled else "",
        apply=apply_status(rt, cache, now),
        refused=rt.refused.to_pb(),
        alerts=[*rt.refused.alert_lines()] + [a for a in (
            rt.apply_machine.alert(), rt.incomplete_alert(), sync_alert(rt),
            verify_alert(rt.verifier), dictionary_alert(rt, cache), rejected_alert(cache),
            rt.audit.alert() if rt.audit is not None else "")
            if a] + leaf_alerts(leaves) + (
            revocation_alerts(rt.revocations, rt.credentials)
            if rt.revocations is not None and rt.credentials is not None else []),
        leaves=leaves,
        verify=verify_summary(rt.verifier, now),
        dictionaries=dictionary_status(rt),
        revocations=(revocation_status(rt.revocations, rt.credentials)
                     if rt.revocations is not None and rt.credentials is not None else None),
    )


def dictionary_status(rt: NodeRuntime) -> cpb.DictionaryStatus | None:
    """The code maps this node translates with (node.dictionary); None without."""
    d = getattr(rt.engine, "dictionaries", None)
    if d is None:
        return None
    codes = d.codes
    return cpb.DictionaryStatus(
        table=d.map_table, columns=d.settings.names(), entries=codes.entries(),
        unmapped_captured=d.unmapped_captured, last_unmapped=d.last_unmapped,
        parked=d.parked, last_parked=d.last_parked, map_errors=codes.errors[:20])


def rejected_alert(cache: StatusCache) -> str:
    """An alert while changes of this campus that capture could not convert wait."""
    n = cache.dead_letters.get("rejected", 0)
    if not n:
        return ""
    return (f"capture could not convert {n} change(s) of this campus (a zero date, a value "
            f"beyond what travels); they were not sent: correct the rows here, then skip "
            f"them (ringsync ctl dlq list --state rejected)")


def dictionary_alert(rt: NodeRuntime, cache: StatusCache) -> str:
    """An alert while changes parked for a code this campus lacks are still parked."""
    d = getattr(rt.engine, "dictionaries", None)
    if d is None or not d.parked or not cache.dead_letters.get("parked", 0):
        return ""
    return (f"dictionaries: {d.parked} change(s) parked for codes this campus cannot "
            f"translate (latest: {d.last_parked}); see ringsync ctl dlq list")


def apply_status(rt: NodeRuntime, cache: StatusCache, now: float) -> cpb.ApplyStatus:
    """The applier's state machine as status shows it (node.replication.applystate)."""
    m = rt.apply_machine
    oldest = min(rt.incomplete.values(), default=now)
    resolver = getattr(rt, "resolver", None)  # None until the engine is open
    return cpb.ApplyStatus(
        state=m.state, waiting_for=m.waiting_for, since=m.since, alert=m.alert(),
        transient_retries=m.transient_retries, isolations=m.isolations,
        incomplete_transactions=len(rt.incomplete),
        oldest_incomplete_seconds=max(0.0, now - oldest),
        recorded=rpb.Vector(seqs=cache.recorded), last_error=m.last_error,
        fast_apply=rt.config.replication.fast_apply,
        fresh_rows=resolver.fresh_rows if resolver else 0,
        fresh_fallbacks=resolver.fresh_fallbacks if resolver else 0,
        outside_changes=resolver.outside_changes if resolver else 0)


def policies_text(rt: NodeRuntime) -> str:
    settings = rt.config.cluster.conflicts
    return "; ".join(f"{t}: {settings.policy(t).describe()}" for t in rt.config.cluster.tables)


def join_status(rt: NodeRuntime) -> cpb.JoinStatus:
    j = rt.join
    rate = j.rate() if j.state == "copying" else 0.0
    left = max(0, j.rows_total - j.rows_copied)
    return cpb.JoinStatus(
        state=j.state, donor=j.donor, table=j.table, rows_copied=j.rows_copied,
        rows_total=j.rows_total, rows_per_second=rate,
        eta_seconds=left / rate if rate > 0 else 0.0, detail=j.detail,
    )
