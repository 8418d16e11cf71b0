"""Start-up checks that touch nothing: run before the journal or any database object exists.

``check_all`` tests, in order, the certificates (read, key pair, chain
signature, validity, this campus's identity and server name), the listening
ports (a bind test, released at once), the journal directory, and the
database (connect, version, settings, privileges and the replicated tables,
read-only: SQLite opened with ``mode=ro``, PostgreSQL in a read-only
session). Only when all pass does start-up create ``journal.db`` and install
the node's tables, triggers, schema, publication and slot, so a bad config
or a port in use leaves the campus exactly as it was.

What cannot be known without writing (a role that may not ``ALTER`` a table
it owns, a full disk) is still reported by the install itself.
"""

from __future__ import annotations

import datetime as dt
import errno
import logging
import os
import socket
import sqlite3
from typing import Any

from cryptography import x509

from node.engines.base import missing_table, no_primary_key
from node.engines.postgres.server import check_server, slot_name
from ringsync.config import NodeConfig, connect_dsn
from ringsync.dsn import redact_dsn
from ringsync.errors import ConfigError, EngineError, SchemaError, TLSConfigError
from ringsync.pki import identity_from_pem, node_server_name, read_tls_files

log = logging.getLogger(__name__)

# The node reads pg_replication_slots.wal_status (PostgreSQL 13).
MIN_POSTGRES = 130000


def check_all(config: NodeConfig) -> None:
    check_certificates(config)
    check_listen(config.listen, f"change `listen` in {config.path}")
    if config.health_listen:
        check_listen(config.health_listen,
                     f"change `health` for {config.campus} in {config.cluster.path} "
                     f"(or `health_listen` in {config.path})", what="the HTTP health endpoint")
    check_data_dir(config)
    if config.database.engine == "sqlite":
        check_sqlite(config)
    elif config.database.engine == "mariadb":
        check_mariadb(config)
    else:
        check_postgres(config)


# -- certificates ---------------------------------------------------------------


def check_certificates(config: NodeConfig) -> None:
    tls = config.tls
    # The pair, signed by the CA's key directly, not expired, the key private.
    ca_pem, cert_pem, _ = read_tls_files(tls.ca, tls.cert, tls.key)
    ca = x509.load_pem_x509_certificate(ca_pem)
    leaf = x509.load_pem_x509_certificate(cert_pem)
    now = dt.datetime.now(dt.UTC)
    if leaf.not_valid_before_utc > now:
        start = leaf.not_valid_before_utc
        raise TLSConfigError(f"{tls.cert} is not valid before {start:%Y-%m-%d %H:%M} UTC; "
                             f"check this host's clock")
    if ca.not_valid_after_utc < now:
        raise TLSConfigError(f"the CA certificate {tls.ca} expired on "
                             f"{ca.not_valid_after_utc:%Y-%m-%d}")
    check_node_identity(config, cert_pem)


def check_node_identity(config: NodeConfig, cert_pem: bytes) -> None:
    """``cert_pem`` is a node certificate of this campus, naming the server
    name its peers verify (at start, and for a renewed certificate)."""
    tls = config.tls
    identity = identity_from_pem(cert_pem)
    if identity is None or identity.role != "node" or identity.name != config.campus:
        raise TLSConfigError(
            f"{tls.cert} is for {identity or 'no ringsync identity'}, but this node "
            f"is campus {config.campus!r}; issue one with "
            f"`ringsync pki issue --role node --name {config.campus}`")
    leaf = x509.load_pem_x509_certificate(cert_pem)
    try:
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = names.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        dns = []
    if node_server_name(config.campus) not in dns:
        raise TLSConfigError(
            f"{tls.cert} does not name {node_server_name(config.campus)}, the name peers "
            f"verify; issue it again with `ringsync pki issue --role node --name "
            f"{config.campus}`")


# -- ports ----------------------------------------------------------------------


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def check_listen(address: str, fix: str, what: str = "replication") -> None:
    """Bind ``address`` (every address its host resolves to) and let it go at once."""
    host, port = _split(address)
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ConfigError(f"cannot listen on {address} for {what}: {host!r} does not resolve "
                          f"({e.strerror}); {fix}") from e
    bound = 0
    failure: OSError | None = None
    for family, kind, proto, _, sockaddr in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC does
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(sockaddr)
            sock.listen(1)
            bound += 1
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                failure = e
                break
            failure = failure or e
        finally:
            sock.close()
    if failure is not None and (failure.errno == errno.EADDRINUSE or not bound):
        reason = ("the port is in use" if failure.errno == errno.EADDRINUSE else
                  "the address is not local to this host"
                  if failure.errno == errno.EADDRNOTAVAIL else failure.strerror)
        stop = "stop what holds it or " if failure.errno == errno.EADDRINUSE else ""
        raise ConfigError(f"cannot listen on {address} for {what}: {reason}; {stop}{fix}")


# -- journal directory ------------------------------------------------------------


def check_data_dir(config: NodeConfig) -> None:
    d = config.data_dir
    existing = d
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{config.path}: data_dir = {d}: cannot create the journal there "
                          f"({existing} is not a writable directory); fix the permissions or "
                          f"change data_dir")
    journal = d / "journal.db"
    if journal.exists() and not os.access(journal, os.R_OK | os.W_OK):
        raise ConfigError(f"{journal} is not readable and writable by this user; fix its owner")


# -- databases ------------------------------------------------------------------


def check_sqlite(config: NodeConfig) -> None:
    path = config.database.path
    assert path is not None
    if not path.exists():
        raise EngineError(
            f"SQLite database {path} does not exist; create it with the application "
            f"schema first (ringsync never creates application tables)")
    if not os.access(path, os.R_OK | os.W_OK) or not os.access(path.parent, os.W_OK | os.X_OK):
        raise EngineError(f"SQLite database {path} (and its directory, for the WAL) must be "
                          f"writable by this user; fix the permissions")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30.0)
    except sqlite3.Error as e:
        raise EngineError(f"cannot open SQLite database {path}: {e}") from e
    try:
        for table in config.tables:
            info = conn.execute(f'PRAGMA table_info("{table}")').fetchall()
            if not info:
                raise SchemaError(
                    f"table {table!r} is listed in cluster.tables but does not exist in {path}; "
                    f"create it with the same schema as the other campuses, or remove it from "
                    f"the list")
            if not any(row[5] for row in info):
                raise SchemaError(
                    f"table {table!r} in {path} has no primary key, so its rows cannot be "
                    f"matched across campuses; recreate it with a PRIMARY KEY (SQLite cannot "
                    f"add one with ALTER TABLE) or remove it from cluster.tables")
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = '_rs_meta'").fetchone():
            row = conn.execute("SELECT value FROM _rs_meta WHERE key = 'campus'").fetchone()
            if row is not None and row[0] != config.campus:
                raise EngineError(f"{path} belongs to campus {row[0]!r}, not "
                                  f"{config.campus!r}; point each node at its own campus "
                                  f"database")
    except sqlite3.Error as e:
        raise EngineError(f"cannot read SQLite database {path}: {e}") from e
    finally:
        conn.close()


def check_postgres(config: NodeConfig) -> None:
    import psycopg

    dsn = connect_dsn(config.database)
    shown = redact_dsn(dsn)
    try:
        conn = psycopg.connect(dsn, autocommit=True, connect_timeout=10,
                               fallback_application_name="ringsync preflight",
                               options="-c default_transaction_read_only=on")
    except psycopg.OperationalError as e:
        raise EngineError(f"cannot connect to PostgreSQL ({shown}): "
                          f"{redact_dsn(str(e)).strip()}") from e
    try:
        _postgres_checks(conn, config, shown)
    except psycopg.Error as e:
        raise EngineError(f"PostgreSQL at {shown}: {redact_dsn(str(e)).strip()}") from e
    finally:
        conn.close()


def check_mariadb(config: NodeConfig) -> None:
    """The server's binary log settings, the account's privileges and the
    replicated tables' shapes, read-only (the engine checks them again at open)."""
    import pymysql

    from node.engines.mariadb.connections import MariaURL
    from node.engines.mariadb.server import check_server as check_mariadb_server
    from node.engines.mariadb.shapes import read_tables

    url = MariaURL.parse(connect_dsn(config.database))
    try:
        conn = pymysql.connect(**url.settings(), database=url.database, connect_timeout=10)
    except pymysql.err.MySQLError as e:
        if _mariadb_restarting(e):
            return
        raise EngineError(f"cannot connect to MariaDB ({url.shown}): {e}") from e
    try:
        check_mariadb_server(conn, url.database, url.shown)
        read_tables(conn, url.database, config.cluster.tables, url.shown)
    except pymysql.err.MySQLError as e:
        if _mariadb_restarting(e):
            return
        raise EngineError(f"MariaDB at {url.shown}: {e}") from e
    finally:
        conn.close()


def _mariadb_restarting(error: Exception) -> bool:
    """A server not taking connections (restarting after a crash, starting
    beside the node) or lost mid-check: not a wrong setting. The engine's open
    waits for it, within its start patience, and makes the same checks then
    (node.engines.mariadb.engine.MariaEngine.open)."""
    from node.engines.mariadb.connections import TRANSIENT_CONNECT_ERRORS

    code = error.args[0] if error.args else None
    if code not in TRANSIENT_CONNECT_ERRORS:
        return False
    log.warning("MariaDB is not taking connections yet (%s); the engine waits for it", error)
    return True


def _one(conn: Any, query: str, params: tuple[Any, ...] = ()) -> Any:
    row = conn.execute(query, params).fetchone()
    return None if row is None else row[0]


def _postgres_checks(conn: Any, config: NodeConfig, shown: str) -> None:
    version = int(_one(conn, "SHOW server_version_num"))
    if version < MIN_POSTGRES:
        raise EngineError(f"PostgreSQL at {shown} is version {_one(conn, 'SHOW server_version')}; "
                          f"ringsync needs PostgreSQL 13 or later")
    role, superuser = check_server(conn, shown)
    if not superuser:
        database = _one(conn, "SELECT current_database()")
        schema = _one(conn, "SELECT 1 FROM pg_namespace WHERE nspname = 'ringsync'")
        if schema is None and not _one(conn, "SELECT has_database_privilege(current_database(), "
                                             "'CREATE')"):
            raise EngineError(f"role {role} may not create the schema ringsync in database "
                              f"{database}; run GRANT CREATE ON DATABASE {database} TO {role}")
        for function in ("pg_replication_origin_create(text)",
                         "pg_replication_origin_session_setup(text)"):
            if not _one(conn, "SELECT has_function_privilege(%s, 'EXECUTE')", (function,)):
                raise EngineError(f"role {role} may not call {function}; run GRANT EXECUTE ON "
                                  f"FUNCTION {function} TO {role} (see docs/operations.md, "
                                  f"\"PostgreSQL campuses\")")
    for table in config.tables:
        oid = _one(conn, "SELECT to_regclass(%s)::oid", (table,))
        if oid is None:
            raise missing_table(table, shown)
        if not _one(conn, "SELECT 1 FROM pg_index WHERE indrelid = %s AND indisprimary",
                    (oid,)):
            raise no_primary_key(table)
        if not superuser and not _one(conn, "SELECT pg_has_role(relowner, 'USAGE') "
                                            "FROM pg_class WHERE oid = %s", (oid,)):
            raise EngineError(f"role {role} does not own table {table!r} (the node sets "
                              f"REPLICA IDENTITY FULL and installs triggers on it); run "
                              f"ALTER TABLE {table} OWNER TO {role}")
    slot = slot_name(config.campus)
    lost = _one(conn, "SELECT wal_status FROM pg_replication_slots WHERE slot_name = %s",
                (slot,))
    if lost == "lost":
        raise EngineError(f"replication slot {slot} was invalidated (its WAL was removed, see "
                          f"max_slot_wal_keep_size); this campus needs a re-sync")
