"""The campus's audit trail: what operators did here, as a hash chain with
signed checkpoints (the format: ringsync.audit).

The control RPCs that change data or trust (RepairRow, ResolveConflict,
ActOnDeadLetter, PublishRevocations) and every request refused as outside
the caller's [[scope]] record one entry each: who (the certificate's
identity), what, the table and the row's keyed hash (never its contents),
and how it ended. ``record`` returns once the entry and a checkpoint signed
with the node's key are on disk (fsync): an action's reply never precedes
its entry. A trail that cannot be written is logged, counted and an alert
in status; the action it describes has happened and is not undone.

The trail lives in ``<data_dir>/audit/`` (0700; files 0600); the key for
row hashes in ``<data_dir>/audit.key``, outside it, so a copy of the trail
given to an auditor names no record to someone without the key. Give every
campus the same key file to look a record up across campuses with one key.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import threading
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from ringsync.audit import (
    CHECKPOINTS_FILE,
    GENESIS,
    TRAIL_FILE,
    chained,
    checkpoint_line,
    key_hash,
    now_text,
    signing_key,
)
from ringsync.client import Credentials
from ringsync.errors import ConfigError

log = logging.getLogger(__name__)

KEY_FILE = "audit.key"
KEY_BYTES = 32


def _append(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


TAIL_CHUNK = 1 << 16


def _tail(path: Path) -> tuple[bytes | None, bool]:
    """The last complete line of ``path`` (None if it has none) and whether
    a last line a crash left half-written was cut off. Reads the file's end
    only: a trail of years opens as fast as a new one."""
    try:
        fh = path.open("r+b")
    except FileNotFoundError:
        return None, False
    with fh:
        end = fh.seek(0, os.SEEK_END)
        start, data = end, b""
        while start > 0 and data.count(b"\n") < 2:  # the last line's end and its start
            step = min(TAIL_CHUNK, start)
            start -= step
            fh.seek(start)
            data = fh.read(step) + data
        torn = bool(data) and not data.endswith(b"\n")
        if torn:
            data = data[:data.rfind(b"\n") + 1]
            fh.truncate(start + len(data))
    lines = data.splitlines()
    return (lines[-1] if lines and (start == 0 or len(lines) > 1) else None), torn


class AuditTrail:
    def __init__(self, data_dir: Path, campus: str, credentials: Credentials) -> None:
        self.directory = data_dir / "audit"
        self.key_file = data_dir / KEY_FILE
        self.campus = campus
        self.credentials = credentials
        self.entries = 0
        self.head = GENESIS
        self.failures = 0
        self.error = ""
        self._secret = b""
        self._lock = threading.Lock()
        self._signer: tuple[bytes, ec.EllipticCurvePrivateKey] | None = None

    def open(self) -> None:
        """Create or continue the trail (worker thread: file I/O)."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.key_file.exists():
            self._secret = self.key_file.read_bytes()
            if len(self._secret) < 16:
                raise ValueError(f"{self.key_file} holds {len(self._secret)} bytes; an audit "
                                 f"key is {KEY_BYTES} random bytes (move it away to make one)")
        else:
            self._secret = secrets.token_bytes(KEY_BYTES)
            _append(self.key_file, self._secret)
        last, trail_torn = _tail(self.directory / TRAIL_FILE)
        _, checkpoints_torn = _tail(self.directory / CHECKPOINTS_FILE)
        torn = [name for name, cut in ((TRAIL_FILE, trail_torn),
                                       (CHECKPOINTS_FILE, checkpoints_torn)) if cut]
        if last is not None:
            try:
                entry = json.loads(last)
                self.entries, self.head = int(entry["n"]), str(entry["hash"])
            except (ValueError, KeyError, TypeError):  # changed by hand: go on, and say so
                with (self.directory / TRAIL_FILE).open("rb") as fh:
                    self.entries, self.head = sum(1 for _ in fh), GENESIS
                self.failures += 1
                self.error = (f"its last entry is unreadable; `ringsync audit verify --path "
                              f"{self.directory}` names what changed")
                log.error("the audit trail in %s: %s", self.directory, self.error)
        if torn:
            log.warning("the audit trail's last line in %s was cut (a crash while it was "
                        "written); dropped, and recorded", ", ".join(torn))
            self.append([{"event": "trail", "action": "torn-tail-dropped", "who": "node",
                          "outcome": "done", "files": torn}])

    def row(self, table: str, key: Any) -> str:
        """The keyed hash naming a row (``key``: its primary key, or its JSON text)."""
        if isinstance(key, str):
            try:
                key = json.loads(key)
            except ValueError:
                pass
        return key_hash(self._secret, table, key)

    def append(self, entries: list[dict[str, Any]]) -> None:
        """Write ``entries`` and a checkpoint after them (worker thread)."""
        with self._lock:
            self.credentials.refresh()  # a renewed certificate signs from now on
            lines, n, head = [], self.entries, self.head
            for fields in entries:
                n += 1
                line, head = chained({"at": now_text(), "campus": self.campus, **fields},
                                     n, head)
                lines.append(line)
            _append(self.directory / TRAIL_FILE, b"".join(lines))
            self.entries, self.head = n, head
            _append(self.directory / CHECKPOINTS_FILE, checkpoint_line(
                self.campus, n, head, self.credentials.cert, self._signing_key()))

    def _signing_key(self) -> ec.EllipticCurvePrivateKey:
        """The node key, parsed once per key file content (a renewal changes it)."""
        pem = self.credentials.key
        if self._signer is None or self._signer[0] != pem:
            self._signer = (pem, signing_key(pem))
        return self._signer[1]

    async def record(self, action: str, who: str, outcome: str, *, table: str = "",
                     key: Any = None, **detail: Any) -> None:
        """One operator entry, on disk before this returns; a failure to write
        it is logged, counted and shown in status, never raised."""
        fields: dict[str, Any] = {"event": "operator", "action": action, "who": who,
                                  "outcome": outcome, **detail}
        if table:
            fields["table"] = table
        if key not in (None, "") and table:
            fields["key_hash"] = self.row(table, key)
        try:
            await asyncio.to_thread(self.append, [fields])
        except Exception as e:  # disk full, permissions: the action stands, the gap shows
            self.failures += 1
            self.error = f"{type(e).__name__}: {e}"
            log.error("cannot write the audit trail in %s (%s): %s by %s is not recorded",
                      self.directory, self.error, action, who)

    def alert(self) -> str:
        if not self.failures:
            return ""
        return (f"audit trail in {self.directory}: {self.failures} problem(s), the last: "
                f"{self.error}; free space or fix its permissions, and run "
                f"`ringsync audit verify --path {self.directory}`")


def open_trail(trail: AuditTrail) -> None:
    """``trail.open``, its failure a ConfigError that says what to do (at start)."""
    try:
        trail.open()
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot open the audit trail in {trail.directory}: {e}; give the "
                          f"node's user a writable data_dir") from e
