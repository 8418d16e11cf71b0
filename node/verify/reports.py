"""Verification reports kept at a node: the history ``ctl status`` reads.

Each report is one JSON line in ``<data_dir>/verify-reports.jsonl``, newest
last, trimmed to the newest ``keep``. The coordinator of a scheduled
verification (node.verify.schedule) stores its report here and sends it to
every other node, which stores it the same way (Control.RecordVerification),
so every campus can say what the last verification found even when the
coordinator is down. A line that does not parse (a torn write) is skipped
and counted, never fatal.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from ringsync.errors import ProtocolError
from ringsync.verification import summarize

__all__ = ["ReportStore", "parse_report", "summarize", "trimmed"]

MAX_DIFFERENCES_KEPT = 1000  # per report: the rest are counted, not listed


def parse_report(text: str) -> dict[str, Any]:
    """A report another node sent: a JSON object with the fields status reads."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ProtocolError(f"a verification report is not JSON: {e}") from e
    if not (isinstance(doc, dict) and isinstance(doc.get("at"), int | float)
            and isinstance(doc.get("differences", []), list)
            and isinstance(doc.get("campuses", {}), dict)):
        raise ProtocolError("a verification report needs 'at' (a time), 'differences' (a list) "
                            "and 'campuses' (an object)")
    return doc


def trimmed(report: dict[str, Any]) -> dict[str, Any]:
    """A report small enough to keep and send: differences past the first
    MAX_DIFFERENCES_KEPT are dropped (the diverged ones counted)."""
    differences = report.get("differences", [])
    if len(differences) <= MAX_DIFFERENCES_KEPT:
        return report
    dropped = differences[MAX_DIFFERENCES_KEPT:]
    return {**report, "differences": differences[:MAX_DIFFERENCES_KEPT],
            "diverged_not_listed": sum(d.get("state") == "diverged" for d in dropped)}


class ReportStore:
    def __init__(self, path: Path, keep: int) -> None:
        self.path, self.keep = path, keep
        self.skipped = 0
        self._lock = threading.Lock()
        found = self._read()
        self._latest: dict[str, Any] | None = found[-1] if found else None

    def _read(self) -> list[dict[str, Any]]:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                doc = json.loads(line)
            except json.JSONDecodeError:
                self.skipped += 1
                continue
            if isinstance(doc, dict):
                out.append(doc)
        return out

    def add(self, report: dict[str, Any]) -> None:
        with self._lock:
            kept = [*self._read(), trimmed(report)][-self.keep:]
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept),
                           encoding="utf-8")
            os.replace(tmp, self.path)
            self._latest = kept[-1]

    def history(self) -> list[dict[str, Any]]:
        with self._lock:
            return self._read()

    def latest(self) -> dict[str, Any] | None:
        """The newest report (kept in memory: status asks every second)."""
        return self._latest
