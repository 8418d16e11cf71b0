"""ringsync's own tables in a MariaDB campus database, and how the shared
statements name them (the Dialect).

They live in the campus database itself, with the ``_rs_`` prefix as on
SQLite (a MariaDB server may hold several campus databases, so no schema
of ringsync's own is shared between them): the applied vector, ringsync's
settings (``_rs_meta``: the campus the database belongs to, where capture
started), the conflict log and its tally, the dead-letter queue and the
set fences. Each is InnoDB, so it commits with the rows an apply session
writes.
"""

from __future__ import annotations

from node.conflicts.deadletter import DeadLetterTable
from node.conflicts.log import ConflictLog
from node.engines.dialect import Dialect
from node.engines.mariadb.values import to_mariadb
from node.spelling import ON_DUPLICATE_KEY, Spelling

MARIA_SPELLING = Spelling("%s", ON_DUPLICATE_KEY)
CONFLICT_LOG = ConflictLog("_rs_conflicts", MARIA_SPELLING, "_rs_conflict_tally")
DLQ = DeadLetterTable("_rs_dlq", MARIA_SPELLING)
MARIA = Dialect(spelling=MARIA_SPELLING, applied="_rs_applied", set_fence="_rs_set_fence",
                log=CONFLICT_LOG, dlq=DLQ, native=to_mariadb)

INNODB = " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
INTERNAL_DDL: tuple[str, ...] = (
    "CREATE TABLE IF NOT EXISTS _rs_applied(origin VARCHAR(255) NOT NULL PRIMARY KEY, "
    "seq BIGINT NOT NULL, changes BIGINT NOT NULL DEFAULT 0)" + INNODB,
    "CREATE TABLE IF NOT EXISTS _rs_meta(name VARCHAR(255) NOT NULL PRIMARY KEY, "
    "value TEXT NOT NULL)" + INNODB,
    """CREATE TABLE IF NOT EXISTS _rs_conflicts(
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    at DOUBLE NOT NULL,
    tbl TEXT NOT NULL,
    "key" TEXT NOT NULL,
    kind TEXT NOT NULL,
    rule TEXT NOT NULL,
    winner TEXT NOT NULL,
    local_origin TEXT NOT NULL,
    local_hlc BIGINT NOT NULL,
    remote_origin TEXT NOT NULL,
    remote_seq BIGINT NOT NULL,
    remote_hlc BIGINT NOT NULL,
    local_row LONGTEXT,
    remote_row LONGTEXT,
    skew_ms BIGINT NOT NULL,
    state TEXT NOT NULL,
    resolution TEXT)""" + INNODB,
    "CREATE TABLE IF NOT EXISTS _rs_conflict_tally(name VARCHAR(255) NOT NULL PRIMARY KEY, "
    "n BIGINT NOT NULL)" + INNODB,
    DLQ.ddl("BIGINT AUTO_INCREMENT PRIMARY KEY", "LONGBLOB") + INNODB,
    "CREATE TABLE IF NOT EXISTS _rs_set_fence(name VARCHAR(255) NOT NULL PRIMARY KEY, "
    "writable_until DOUBLE NOT NULL DEFAULT 0, epoch BIGINT NOT NULL DEFAULT 0, "
    "reconciled BIGINT NOT NULL DEFAULT 0)" + INNODB,
)
