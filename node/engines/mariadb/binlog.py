"""The binlog reader: a thread streaming a MariaDB binary log into capture chunks.

It asks the server for its binary log from a file and offset
(COM_BINLOG_DUMP, blocking, with heartbeats so it can stop) through
python-mysql-replication's event parser, and hands the campus's own
committed transactions over, in commit order, through a bounded queue
(node.engines.chunkqueue). Transactions that ringsync's apply sessions
wrote carry the apply GTID domain (``apply_domain``) and are never captured;
their writes to the applied table still move the dependency vector, as on
PostgreSQL. Big transactions are split into chunks of ``frame_max_changes``
rows; after a restart a transaction is read again from its start and its
chunks numbered again from 0, so the journal keeps what it already holds.
What a row event becomes (changes, rejected changes, a stamp, the applied
vector) is node.engines.mariadb.binlog_rows.

Strict by design: an event the reader does not understand (a compressed
event, XA, an encrypted log, ...) stops capture with an error naming it and
where it is; it is never skipped. So does a statement that changes a
replicated table's rows without row events (TRUNCATE), and a binary log
purged past the position capture must resume from: those stay stopped
(``error``) until the node restarts. A lost connection or a restarting
server is not: the reader connects again, from the end of the last whole
transaction it handed over (a transaction cut off mid-way is read again
from its start, its chunks numbered again). The library's own silent
reconnect (which would resume in the middle of a transaction, without its
table maps) is refused, so only this one happens.

A capture position is one int: the binlog file's number in the high 32 bits
and the offset of the end of the transaction's last event in the low 32.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

import pymysql
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import (
    FormatDescriptionEvent,
    HeartbeatLogEvent,
    MariadbAnnotateRowsEvent,
    MariadbBinLogCheckPointEvent,
    MariadbGtidEvent,
    MariadbGtidListEvent,
    QueryEvent,
    RotateEvent,
    StopEvent,
    XidEvent,
)
from pymysqlreplication.row_event import (
    DeleteRowsEvent,
    TableMapEvent,
    UpdateRowsEvent,
    WriteRowsEvent,
)

from node.engines.chunkqueue import ChunkQueue
from node.engines.mariadb.binlog_rows import LenientDecoder, RowDecoder, RowEvents
from node.model import CapturedChunk, Change
from ringsync.errors import EngineError

log = logging.getLogger(__name__)
# The library warns "Re-request the connection" when it would reconnect by
# itself; _OneConnection refuses that and this reader says what happens.
logging.getLogger("pymysqlreplication").setLevel(logging.ERROR)

HEARTBEAT_SECONDS = 0.5
RECONNECT_SECONDS = 1.0
# pymysql's codes for a connection that is gone or cannot be made (the server
# restarting): worth connecting again, unlike what the server refuses.
_CONNECTION_CODES = {2003, 2006, 2013, 2014, 2055, 1927, 4031}
QUEUE_FRAMES_OF_CHANGES = 4
TAKE_FRAMES_OF_CHANGES = 2
_FILE_NUMBER = re.compile(r"\.(\d+)$")
# A GTID event's flag: the transaction is one statement without BEGIN (DDL).
FL_STANDALONE = 0x01
# Events that carry nothing for capture (the log's own bookkeeping).
_BOOKKEEPING = (RotateEvent, FormatDescriptionEvent, MariadbGtidListEvent,
                MariadbBinLogCheckPointEvent, HeartbeatLogEvent, MariadbAnnotateRowsEvent,
                StopEvent, TableMapEvent)
_ROW_EVENTS = (WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent)
_ROW_STATEMENT = re.compile(r"^\s*(truncate|load\s+data|replace\s+into|delete|update|insert)\b",
                            re.IGNORECASE)

def position_of(log_file: str, offset: int) -> int:
    """The capture position of ``offset`` in binlog file ``log_file``."""
    match = _FILE_NUMBER.search(log_file)
    if match is None:
        raise EngineError(f"binlog file name {log_file!r} has no number")
    return (int(match.group(1)) << 32) | offset


def file_number(position: int) -> int:
    return position >> 32


def offset_of(position: int) -> int:
    return position & 0xFFFFFFFF


def file_name(basename: str, position: int) -> str:
    """The binlog file a position lies in (``basename``: e.g. 'binlog')."""
    return f"{basename}.{file_number(position):06d}"


def where(log_file: str, offset: int) -> str:
    return f"{log_file}:{offset}"


class ConnectionLost(EngineError):
    """The binlog connection is gone: connect again."""


class _OneConnection:
    """A pymysql.connect that refuses to make a second stream connection: the
    library reconnects by itself after a lost connection and would resume in
    the middle of a transaction, without its table maps."""

    def __init__(self) -> None:
        self.streams = 0

    def __call__(self, **settings: Any) -> pymysql.Connection:
        # the library still spells two of pymysql's arguments the old way
        for old, new in (("db", "database"), ("passwd", "password")):
            if old in settings:
                settings[new] = settings.pop(old)
        if settings.get("database") != "information_schema":  # its control connection
            self.streams += 1
            if self.streams > 1:
                raise ConnectionLost("the binlog connection was lost")
        return pymysql.connect(**settings)


class BinlogReader:
    """Streams one campus database's binary log; ``take`` hands chunks over."""

    def __init__(self, settings: dict[str, Any], database: str, tables: frozenset[str],
                 decode: RowDecoder, applied_table: str, apply_domain: int,
                 frame_max_changes: int, server_id: int, basename: str,
                 stamp_prefix: str = "", decode_lenient: LenientDecoder | None = None,
                 ) -> None:
        self.settings = settings  # host, port, user, password
        # With decode_lenient, a row that cannot be converted is rejected (kept
        # for the dead-letter queue) and capture goes on; without it, capture
        # stops with the error.
        self.rows = RowEvents(decode, decode_lenient)
        self.database = database
        self.tables = tables
        self.applied_table = applied_table
        self.apply_domain = apply_domain
        self.frame_max_changes = frame_max_changes
        self.server_id = server_id
        self.basename = basename
        # Tables whose rows stamp local writes (node.engines.mariadb.stamps):
        # a local transaction's highest stamp is its chunks' xid.
        self.stamp_prefix = stamp_prefix
        self._queue = ChunkQueue(QUEUE_FRAMES_OF_CHANGES * frame_max_changes)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error = ""
        # What the node had applied of each other campus, as of the event
        # being read (apply sessions' writes to the applied table).
        self.applied: dict[str, int] = {}
        self._decoded = 0  # every event up to here is read (a transaction boundary)
        self._handed_out = 0  # the end of the last whole transaction queued
        self.taken_through = 0
        self.reconnects = 0
        # the last lost connection, until reading goes on (status shows it)
        self.transient = ""

    def start(self, position: int, applied: dict[str, int] | None = None) -> None:
        self.applied = dict(applied or {})
        self._decoded = self.taken_through = self._handed_out = position
        self._thread = threading.Thread(target=self._run, args=(position,),
                                        name=f"binlog-{self.database}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5 + 2 * HEARTBEAT_SECONDS)

    def take(self) -> list[CapturedChunk]:
        """Chunks read so far; waits briefly on the queue, never on the server."""
        if self.error and self._queue.empty():
            raise EngineError(self.error)
        decoded = self._decoded  # read before draining: all of it is queued by now
        out = self._queue.take(0.2, TAKE_FRAMES_OF_CHANGES * self.frame_max_changes)
        if self._queue.empty():
            self.taken_through = max(self.taken_through, decoded)
        return out

    def _put(self, chunk: CapturedChunk) -> None:
        while not self._stop.is_set():
            if self._queue.put(chunk, timeout=0.5):
                return

    def _run(self, position: int) -> None:
        while not self._stop.is_set():
            try:
                self._check_kept(position)
                self._read(position)
                return  # stopped
            except ConnectionLost as e:
                self._lost(str(e))
            except pymysql.err.OperationalError as e:
                if not e.args or e.args[0] not in _CONNECTION_CODES:
                    self.error = self._server_error(e, position)
                    break
                self._lost(f"{e}")
            except EngineError as e:
                self.error = str(e)
                break
            except pymysql.err.MySQLError as e:
                self.error = self._server_error(e, position)
                break
            except Exception as e:  # a parser failure is an error to report, never a skip
                log.exception("binlog reader failed")
                self.error = (f"reading the binary log of {self.database} failed: "
                              f"{type(e).__name__}: {e}; capture stopped")
                break
            self._stop.wait(RECONNECT_SECONDS)
            position = self._handed_out  # a whole transaction's end: nothing is skipped
        if self.error:
            log.error("%s", self.error)

    def _check_kept(self, position: int) -> None:
        """The log file ``position`` lies in is still on the server (asked
        first: a purged file can also surface as a dropped connection)."""
        if not position:
            return
        conn = pymysql.connect(**self.settings, connect_timeout=10)
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW BINARY LOGS")
                kept = [str(row[0]) for row in cur.fetchall()]
        finally:
            conn.close()
        if file_name(self.basename, position) not in kept:
            raise EngineError(self._purged(position, f"oldest kept: {kept[0] if kept else 'none'}"))

    def _purged(self, position: int, detail: str) -> str:
        at = where(file_name(self.basename, position), offset_of(position))
        return (f"MariaDB cannot send its binary log from {at}, where this campus's "
                f"capture resumes ({detail}): the log was purged, so local changes made "
                f"since are lost to replication. Keep binary logs longer (binlog_expire_logs_"
                f"seconds) and re-join this campus (docs/mariadb.md, Re-joining)")

    def _lost(self, what: str) -> None:
        self.reconnects += 1
        self.transient = f"binlog connection to {self.database} lost ({what}); connecting again"
        log.warning("%s", self.transient)

    def _server_error(self, e: pymysql.err.MySQLError, position: int) -> str:
        code = e.args[0] if e.args else 0
        at = where(file_name(self.basename, position), offset_of(position))
        if code == 1236:  # ER_MASTER_FATAL_ERROR_READING_BINLOG
            return self._purged(position, str(e.args[1] if len(e.args) > 1 else e))
        return f"reading the binary log of {self.database} from {at} failed: {e}"

    def _stream(self, position: int) -> BinLogStreamReader:
        log_file = file_name(self.basename, position) if position else None
        return BinLogStreamReader(
            connection_settings=self.settings, server_id=self.server_id,
            resume_stream=True, blocking=True,
            log_file=log_file, log_pos=offset_of(position) if position else None,
            filter_non_implemented_events=False, only_schemas=[self.database],
            slave_heartbeat=HEARTBEAT_SECONDS, pymysql_wrapper=_OneConnection(),
            enable_logging=False)

    def _read(self, position: int) -> None:
        stream = self._stream(position)
        try:
            txn: list[Change] = []
            gtid: MariadbGtidEvent | None = None
            foreign, standalone, chunk_index, begun_at, stamp = False, False, 0, 0.0, 0
            for event in stream:
                if self._stop.is_set():
                    return
                self.transient = ""
                if isinstance(event, _BOOKKEEPING):
                    if isinstance(event, HeartbeatLogEvent) and gtid is None:
                        self._decoded = max(self._decoded,
                                            position_of(stream.log_file, stream.log_pos))
                    continue
                at = where(stream.log_file, stream.log_pos)
                if isinstance(event, MariadbGtidEvent):
                    gtid, txn, chunk_index, stamp = event, [], 0, 0
                    foreign = event.domain_id == self.apply_domain
                    standalone = bool(event.flags & FL_STANDALONE)
                    begun_at = float(event.timestamp)
                    continue
                if gtid is None:
                    raise EngineError(f"binlog event {type(event).__name__} at {at} is "
                                      f"outside a transaction; capture stopped")
                if isinstance(event, _ROW_EVENTS):
                    if event.schema != self.database:
                        continue
                    if event.table == self.applied_table:
                        for origin, seq in self.rows.applied(event):
                            self.applied[origin] = max(self.applied.get(origin, 0), seq)
                        continue
                    if foreign:
                        continue
                    if event.table not in self.tables:
                        if self.stamp_prefix and event.table.startswith(self.stamp_prefix):
                            stamp = max(stamp, self.rows.highest_stamp(event))
                        continue
                    txn.extend(self.rows.changes(event, at))
                    while len(txn) >= self.frame_max_changes:
                        full, txn = (txn[:self.frame_max_changes],
                                     txn[self.frame_max_changes:])
                        self._put(CapturedChunk(full, False, begun_at, 0, chunk_index,
                                                xid=stamp, deps=dict(self.applied)))
                        chunk_index += 1
                    continue
                if isinstance(event, QueryEvent):
                    query = event.query.strip()
                    if query.upper() == "BEGIN":
                        continue
                    if query.upper() != "COMMIT":
                        self._check_statement(query, at)
                        if not standalone:
                            continue
                elif not isinstance(event, XidEvent):
                    raise EngineError(
                        f"binlog event {type(event).__name__} at {at} "
                        f"(GTID {gtid.gtid}) is not one ringsync understands, so capture "
                        f"stopped rather than skip it; check binlog settings "
                        f"(docs/mariadb.md: compression, encryption and XA are not supported)")
                end = position_of(stream.log_file, stream.log_pos)
                if not foreign and (txn or chunk_index):
                    self._put(CapturedChunk(txn, True, float(event.timestamp), end,
                                            chunk_index, xid=stamp, deps=dict(self.applied)))
                self._handed_out = end
                gtid, txn = None, []
                self._decoded = max(self._decoded, end)
        finally:
            stream.close()

    def _check_statement(self, query: str, at: str) -> None:
        """A statement logged as text that changes a replicated table's rows
        (TRUNCATE is one even in ROW format) cannot be replicated row by row."""
        if not _ROW_STATEMENT.match(query):
            return
        lowered = query.lower()
        for table in self.tables:
            if re.search(rf"(^|[\s`.]){re.escape(table.lower())}([\s`;(]|$)", lowered):
                raise EngineError(
                    f"statement at {at} changes rows of replicated table {table} without "
                    f"row events ({query[:80]!r}); ringsync cannot replicate it, so capture "
                    f"stopped. Delete rows with DELETE instead of TRUNCATE; to continue, "
                    f"re-join this campus (docs/mariadb.md)")

