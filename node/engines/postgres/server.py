"""What a PostgreSQL server must offer a campus node, checked read-only.

Checked twice, with the same words: by node.preflight before the node
writes anything, and by the engine when it opens (the server can change in
between). ``shown`` is the DSN as it may be printed (redacted).
"""

from __future__ import annotations

from typing import Any

from ringsync.errors import EngineError


def slot_name(campus: str) -> str:
    """The campus's logical slot and publication (and its standby name in sync mode)."""
    return f"ringsync_{campus}".replace("-", "_")


def check_server(conn: Any, shown: str) -> tuple[str, bool]:
    """Logical decoding is on and the role may use it; return (role, superuser)."""
    wal_level = conn.execute("SHOW wal_level").fetchone()[0]
    if wal_level != "logical":
        raise EngineError(
            f"PostgreSQL at {shown} has wal_level = {wal_level}; set wal_level = logical "
            f"in postgresql.conf (ALTER SYSTEM SET wal_level = logical) and restart PostgreSQL")
    for setting in ("max_replication_slots", "max_wal_senders"):
        value = int(conn.execute(f"SHOW {setting}").fetchone()[0])
        if value < 1:
            raise EngineError(f"PostgreSQL has {setting} = {value}; set it to at least 4")
    role, superuser, replication = conn.execute(
        "SELECT current_user, rolsuper, rolreplication FROM pg_roles "
        "WHERE rolname = current_user").fetchone()
    if not (superuser or replication):
        raise EngineError(f"role {role} lacks the REPLICATION privilege needed for logical "
                          f"decoding; run ALTER ROLE {role} REPLICATION as a superuser")
    return str(role), bool(superuser)

