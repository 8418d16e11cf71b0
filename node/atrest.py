"""Data at rest: what a node writes is readable by its own user only.

The journal holds full row images (patient names, record numbers) until it
is pruned; verification reports and a leaf's route file sit beside it. So
the node runs with umask 077 (every file it creates is 0600, every
directory 0700; SQLite gives a database's -wal and -shm files its own
mode), and at start it takes group and other access off its own files in
``data_dir`` left looser by an earlier version or by hand, saying so in
the log. It changes nothing else there: ``data_dir`` may be shared with
files that are not the node's (a campus's SQLite database, say), so a
``data_dir`` that others may list is only warned about.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_UMASK = 0o077
# The node's own files in data_dir (node.replication.journal, node.verify, node.leaf,
# node.audit; the audit trail's own directory is made 0700 by node.audit).
NODE_FILES = ("journal.db", "journal.db-wal", "journal.db-shm", "verify-reports.jsonl",
              "leaf-route", "audit.key")


def make_private(data_dir: Path) -> list[Path]:
    """Set the umask, create ``data_dir`` (0700) if it is not there, and take
    group and other access off the node's files in it; the paths tightened."""
    os.umask(PRIVATE_UMASK)
    data_dir.mkdir(parents=True, exist_ok=True)
    tightened = []
    for name in NODE_FILES:
        path = data_dir / name
        try:
            info = path.lstat()
        except FileNotFoundError:
            continue
        mode = stat.S_IMODE(info.st_mode)
        if stat.S_ISREG(info.st_mode) and mode & 0o077:
            path.chmod(mode & 0o700)
            tightened.append(path)
            log.warning("%s could be read by other users (mode %04o); it is now its owner's "
                        "only (%04o)", path, mode, mode & 0o700)
    mode = stat.S_IMODE(data_dir.stat().st_mode)
    if mode & 0o077:
        log.warning("data_dir %s may be listed by other users (mode %04o); the node's files "
                    "in it are its own only, but keep it 0700 unless something else must "
                    "reach it (chmod 700 %s)", data_dir, mode, data_dir)
    return tightened
