"""A scoped operator's or viewer's view of this campus ([[scope]], ringsync.scopes).

node.auth refuses a scoped identity at a campus outside its scope. Here,
for the campuses inside it, the Control servicer narrows what a caller
scoped to some tables gets:

* conflicts, dead letters and verification reports: only their tables'
  entries (the others' keys and rows never leave the node);
* Verify, Checksum, RepairRow, ResolveConflict, ActOnDeadLetter on another
  table: PERMISSION_DENIED (``OutOfScope``), logged with the identity;
* status: row counts of their tables only, and the texts that can quote a
  row of another table (the applier's last error, a refused frame, a
  leaf's unjudged row, a dictionary's unmapped code, alerts naming another
  table) left out.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import grpc

from node.auth import peer_identity
from ringsync.config import ClusterConfig
from ringsync.errors import RingsyncError
from ringsync.scopes import Scope
from ringsync.v1 import control_pb2 as cpb

log = logging.getLogger(__name__)


class OutOfScope(RingsyncError):
    """The caller's [[scope]] does not include the table it asked about."""

    grpc_code = "PERMISSION_DENIED"

    def __init__(self, message: str, table: str = "", what: str = "") -> None:
        super().__init__(message)
        self.table, self.what = table, what


def caller_scope(context: grpc.aio.ServicerContext, cluster: ClusterConfig) -> Scope | None:
    """The caller's scope; None: it is not scoped (it sees every table)."""
    identity = peer_identity(context)
    return cluster.scopes.get(str(identity)) if identity is not None else None


def require(scope: Scope | None, table: str, what: str) -> None:
    if scope is not None and table and not scope.table(table):
        log.warning("denied %s of table %s to %s: outside its [[scope]]", what, table,
                    scope.identity)
        raise OutOfScope(f"{scope.identity} is scoped to tables "
                         f"{', '.join(sorted(scope.tables or ()))}; {table} is not one of them",
                         table, what)


def report_in_scope(report: dict[str, Any], scope: Scope | None) -> dict[str, Any]:
    """A verification report with only the scope's tables' entries."""
    if scope is None or scope.tables is None:
        return report
    out = dict(report)
    out["differences"] = [d for d in report.get("differences", [])
                          if isinstance(d, dict) and scope.table(str(d.get("table", "")))]
    if isinstance(report.get("tables"), dict):
        out["tables"] = {t: v for t, v in report["tables"].items() if scope.table(t)}
    return out


def status_in_scope(status: cpb.NodeStatus, scope: Scope | None,
                    tables: tuple[str, ...]) -> cpb.NodeStatus:
    if scope is None or scope.tables is None:
        return status
    out = cpb.NodeStatus()
    out.CopyFrom(status)
    hidden = [t for t in tables if not scope.table(t)]
    for t in hidden:
        out.row_counts.pop(t, None)
    out.apply.last_error = ""
    out.refused.last = ""
    for leaf in out.leaves:
        leaf.last_unjudged = leaf.last_cascade = ""
    if out.HasField("dictionaries"):
        out.dictionaries.last_unmapped = out.dictionaries.last_parked = ""
    if hidden:
        named = re.compile(r"\b(" + "|".join(map(re.escape, hidden)) + r")\b")
        kept = [a for a in out.alerts if not named.search(a)]
        if len(kept) < len(out.alerts):
            kept.append(f"{len(out.alerts) - len(kept)} alert(s) about tables outside "
                        f"{scope.identity}'s scope are not shown")
        del out.alerts[:]
        out.alerts.extend(kept)
    return out
