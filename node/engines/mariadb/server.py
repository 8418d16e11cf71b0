"""What a MariaDB server must offer a campus node, checked read-only.

Checked by the engine when it opens, before it writes anything, each with an
error that says what to change: the binary log on, in ROW format with full
row images and full row metadata (the capture reads column names from the
log itself), not compressed and not encrypted (ringsync does not decode
those events, and would rather refuse than skip them), and the privileges
the node needs. ``shown`` is the server as it may be printed (no password).
"""

from __future__ import annotations

from typing import Any

from ringsync.errors import EngineError

MINIMUM_VERSION = (10, 5)

# (variable, wanted value, what to set): each a startup option of mariadbd.
BINLOG_SETTINGS: tuple[tuple[str, str, str], ...] = (
    ("log_bin", "1", "log_bin (log-bin = <basename> under [mariadbd] in my.cnf, then restart)"),
    ("binlog_format", "ROW", "binlog_format = ROW"),
    ("binlog_row_image", "FULL", "binlog_row_image = FULL"),
    ("binlog_row_metadata", "FULL", "binlog_row_metadata = FULL"),
    ("log_bin_compress", "0", "log_bin_compress = OFF (ringsync does not decode compressed "
                              "events yet)"),
    ("encrypt_binlog", "0", "encrypt_binlog = OFF (ringsync does not read encrypted logs)"),
)

# Global privileges: what each is for.
GLOBAL_PRIVILEGES: dict[str, str] = {
    "REPLICATION SLAVE": "read the binary log (capture)",
    "BINLOG MONITOR": "read binary log positions (SHOW MASTER STATUS)",
    "BINLOG REPLAY": "write applied changes under ringsync's own GTID domain",
    "CONNECTION ADMIN": "end application sessions when the campus is fenced",
    "PROCESS": "see the application sessions to end",
}
# Privileges on the campus database (or global ones).
DATABASE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "INDEX",
                       "TRIGGER", "LOCK TABLES")


def version_of(text: str) -> tuple[int, int]:
    major, minor = text.split("-")[0].split(".")[:2]
    return int(major), int(minor)


def check_server(conn: Any, database: str, shown: str) -> None:
    """Raise EngineError naming every setting or privilege to change."""
    with conn.cursor() as cur:
        cur.execute("SELECT @@version, " + ", ".join(f"@@{name}" for name, _, _ in
                                                       BINLOG_SETTINGS))
        version, *values = cur.fetchone()
    if "mariadb" not in str(version).lower():
        raise EngineError(f"the server at {shown} is not MariaDB ({version}); the MariaDB "
                          f"engine reads MariaDB's binary log (GTID domains)")
    if version_of(str(version)) < MINIMUM_VERSION:
        raise EngineError(f"MariaDB at {shown} is {version}; a MariaDB campus needs 10.5 or "
                          f"newer (binlog_row_metadata, the BINLOG REPLAY privilege)")
    wrong = [f"{name} is {_shown(value)}, set {fix}"
             for (name, wanted, fix), value in zip(BINLOG_SETTINGS, values, strict=True)
             if str(value).upper() != wanted]
    if wrong:
        raise EngineError(f"MariaDB at {shown} cannot be captured from: " + "; ".join(wrong)
                          + ". Change these in the server's configuration and restart it "
                            "(docs/mariadb.md, Server settings)")
    missing = missing_privileges(conn, database)
    if missing:
        grant_global = ", ".join(p for p in missing if p in GLOBAL_PRIVILEGES) or "USAGE"
        raise EngineError(
            f"the account ringsync uses on MariaDB at {shown} lacks "
            + "; ".join(f"{p} (to {why})" for p, why in missing.items())
            + f". As an administrator run: GRANT {grant_global} ON *.* TO <account>; "
              f"GRANT {', '.join(DATABASE_PRIVILEGES)} ON {database}.* TO <account> "
              f"(docs/mariadb.md, Grants)")


def _shown(value: Any) -> str:
    return {"0": "OFF", "1": "ON"}.get(str(value), str(value))


def missing_privileges(conn: Any, database: str) -> dict[str, str]:
    """The privileges the connected account lacks, with what each is for."""
    with conn.cursor() as cur:
        cur.execute("SELECT CURRENT_USER()")
        user, _, host = str(cur.fetchone()[0]).rpartition("@")
        grantee = f"'{user}'@'{host}'"
        cur.execute("SELECT PRIVILEGE_TYPE FROM information_schema.USER_PRIVILEGES "
                    "WHERE GRANTEE = %s", (grantee,))
        granted = {row[0] for row in cur.fetchall()}
        cur.execute("SELECT PRIVILEGE_TYPE FROM information_schema.SCHEMA_PRIVILEGES "
                    "WHERE GRANTEE = %s AND %s LIKE TABLE_SCHEMA", (grantee, database))
        on_database = granted | {row[0] for row in cur.fetchall()}
    missing = {p: why for p, why in GLOBAL_PRIVILEGES.items() if p not in granted}
    if "SUPER" not in granted and not _trusts_trigger_creators(conn):
        # with the binary log on, CREATE/DROP TRIGGER needs one of the two
        missing["SUPER"] = ("create the fence and stamp triggers while the binary log is on "
                            "(or set log_bin_trust_function_creators = ON in the server's "
                            "configuration instead)")
    missing.update({p: f"work in database {database}" for p in DATABASE_PRIVILEGES
                    if p not in on_database})
    return missing


def _trusts_trigger_creators(conn: Any) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT @@log_bin_trust_function_creators")
        return str(cur.fetchone()[0]) == "1"


def binlog_files(conn: Any) -> list[str]:
    """The binary log files the server still has, oldest first."""
    with conn.cursor() as cur:
        cur.execute("SHOW BINARY LOGS")
        return [row[0] for row in cur.fetchall()]
