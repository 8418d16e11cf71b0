"""The pgoutput reader: a thread streaming a logical slot into capture chunks.

It connects with ``replication=database`` through psycopg's libpq layer,
runs ``START_REPLICATION … LOGICAL`` and blocks on the socket for CopyData
(no polling). It decodes pgoutput, drops transactions committed under the
apply origin (they were applied by the node, not written by users), splits
big transactions into chunks of ``frame_max_changes`` rows, and hands chunks
over through a bounded queue; while the queue is full it keeps answering
the server so the walsender does not time out. The flush position it
reports is only ever what the journal has stored; in synchronous mode
(``sync``) also only what another campus has acknowledged, so that
PostgreSQL's synchronous replication, with this connection as the
synchronous standby, returns a commit only once a peer holds it.
"""

from __future__ import annotations

import logging
import select
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import pq
from psycopg.pq.abc import PGconn

from node.engines.chunkqueue import ChunkQueue
from node.engines.postgres import pgoutput as po
from node.engines.postgres.values import parse
from node.model import CapturedChunk, Change, Op, TableShape
from node.rawcopy import encode_byte_rows, encode_rows
from node.schema import PG_KINDS
from ringsync.errors import EngineError
from ringsync.names import NODE_APPLICATION_NAME

log = logging.getLogger(__name__)

APPLY_ORIGIN = "ringsync"
APPLIED_SCHEMA = "ringsync"  # ringsync.applied(origin, seq) is published for dependency vectors
STATUS_INTERVAL_SECONDS = 1.0
WANTED_STATUS_INTERVAL_SECONDS = 0.1
# Sync mode: how often to look whether a peer's acknowledgement released commits.
SYNC_STATUS_INTERVAL_SECONDS = 0.005
# Decoded changes waiting for capture to journal them. Bounded by changes,
# not transactions: a stream of one-row transactions is journaled thousands
# per commit (one fsync), while a bulk transaction's chunks stay in bounds.
QUEUE_FRAMES_OF_CHANGES = 4
TAKE_FRAMES_OF_CHANGES = 2
_ROW_KINDS = frozenset(b"IUD")


def _copy_text(rows: list[Any]) -> bytes | None:
    """COPY text of rows whose values are the bytes (fast path) or the str
    (general parser) pgoutput sent; None when they are not text COPY can take."""
    try:
        return encode_byte_rows(rows)
    except TypeError:  # some came through the general parser, as str
        pass
    try:
        return encode_rows([[v.decode() if isinstance(v, bytes) else v for v in r]
                            for r in rows])
    except (ValueError, UnicodeDecodeError):
        return None


def _as_text(msg: po.RowMessage) -> po.RowMessage:
    """A message from the fast path with its values as str, for parsing."""
    if msg.new is not None and any(isinstance(v, bytes) for v in msg.new):
        msg.new = [v.decode() if isinstance(v, bytes) else v for v in msg.new]
    return msg


class PgoutputReader:
    def __init__(self, dsn: str, slot: str, publication: str,
                 shape_of: Callable[[str], TableShape], frame_max_changes: int) -> None:
        self.dsn = dsn
        self.slot = slot
        self.publication = publication
        self.shape_of = shape_of
        self.frame_max_changes = frame_max_changes
        self._queue = ChunkQueue(QUEUE_FRAMES_OF_CHANGES * frame_max_changes)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._flushed = 0
        # Every local transaction committed at or before ``_decoded`` has been
        # queued; ``taken_through`` is the same for what ``take`` handed out.
        self._decoded = 0
        self.taken_through = 0
        # A snapshot waits for capture to pass this LSN: ask the server for
        # keepalives (they carry its decoding position) until it does.
        self.wanted = 0
        # Synchronous mode (RPO = 0): the flush position reported to the server,
        # which releases waiting commits, never passes a local transaction no
        # peer has acknowledged. ``acked_end`` is the commit end of the last
        # local transaction a peer holds; ``None`` as application_name: async.
        self.sync = False
        self.acked_end = 0
        self.standby_name: str | None = None
        self._handed_out = 0
        self._last_reported = -1
        self.error = ""
        # What the node had applied of each other campus, as of the WAL
        # position being decoded: the apply transactions' writes to
        # ringsync.applied are published too, so a local transaction's
        # dependency vector is exact, read in commit order (node/conflicts).
        self.applied: dict[str, int] = {}
        # Chunks of INSERTs only go as COPY text (node.rawcopy); False: as Changes.
        self.raw_inserts = True
        self._raw_tables: dict[int, tuple[po.Relation, bool]] = {}

    def start(self, position: int, applied: dict[str, int] | None = None) -> None:
        self.applied = dict(applied or {})
        self._flushed = position
        self._thread = threading.Thread(target=self._read_loop, args=(position,),
                                        name=f"pgoutput-{self.slot}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def take(self, position: int) -> list[CapturedChunk]:
        """Chunks decoded so far; waits briefly on the queue, never on the server.

        ``position`` is what the journal durably holds: it becomes the slot's
        flush position.
        """
        self.release(position)  # the journal holds everything up to position
        decoded = self._decoded  # read before draining: all of it is queued by now
        out = self._queue.take(0.2, TAKE_FRAMES_OF_CHANGES * self.frame_max_changes)
        if self._queue.empty():
            self.taken_through = max(self.taken_through, decoded)
        return out

    def release(self, position: int) -> None:
        self._flushed = max(self._flushed, position)

    def _read_loop(self, start: int) -> None:
        """Stream and decode until stopped; reconnect after errors (server restarts)."""
        handed_out = start  # end LSN of the last whole transaction queued
        while not self._stop.is_set():
            try:
                handed_out = self._stream(max(self._flushed, start), handed_out)
            except Exception as e:  # connection lost, server restarting, …
                self.error = f"replication stream: {e}"
                log.warning("replication stream from PostgreSQL lost, reconnecting: %s", e)
                self._stop.wait(1.0)

    def _put(self, item: CapturedChunk, pgconn: PGconn, write_lsn: int) -> None:
        while not self._stop.is_set():
            if self._queue.put(item, timeout=STATUS_INTERVAL_SECONDS):
                return
            # journal is slower: keep the server from timing us out
            self._send_status(pgconn, write_lsn)

    def reported_flush(self) -> int:
        """What the server may consider flushed: the journal's position, held
        back in sync mode to the last acknowledged local transaction while any
        handed-out one is not acknowledged."""
        flushed = self._flushed
        if self.sync and self.acked_end < self._handed_out:
            return min(flushed, self.acked_end)
        return flushed

    def _send_status(self, pgconn: PGconn, write_lsn: int, reply: bool = False) -> None:
        flushed = self.reported_flush()
        self._last_reported = flushed
        pgconn.put_copy_data(po.standby_status(max(write_lsn, self._flushed), flushed, flushed,
                                               reply))
        pgconn.flush()

    def _stream(self, start: int, handed_out: int) -> int:
        names = ({"application_name": self.standby_name} if self.standby_name
                 else {"fallback_application_name": NODE_APPLICATION_NAME})
        conninfo = psycopg.conninfo.make_conninfo(
            self.dsn, replication="database", **names,
            options="-c timezone=UTC -c datestyle=ISO "
            "-c extra_float_digits=3 -c bytea_output=hex")
        pgconn = pq.PGconn.connect(conninfo.encode())
        if pgconn.status != pq.ConnStatus.OK:
            raise EngineError(pgconn.get_error_message())
        try:
            command = (f"START_REPLICATION SLOT {self.slot} LOGICAL {po.lsn_to_str(start)} "
                       f"(proto_version '1', publication_names '{self.publication}')")
            res = pgconn.exec_(command.encode())
            if res.status != pq.ExecStatus.COPY_BOTH:
                raise EngineError(res.get_error_message())
            self.error = ""
            log.info("streaming changes from slot %s at %s", self.slot, po.lsn_to_str(start))
            relations: dict[int, po.Relation] = {}
            txn: list[tuple[po.Relation, po.RowMessage]] = []
            begin: po.Begin | None = None
            foreign = False
            chunk_index = 0
            write_lsn = start
            idle_end = 0
            last_status = 0.0
            self._handed_out = handed_out
            while not self._stop.is_set():
                nbytes, data = pgconn.get_copy_data(1)
                if nbytes == 0:
                    now = time.monotonic()
                    if begin is None and self._decoded < self.wanted and (
                            now - last_status > WANTED_STATUS_INTERVAL_SECONDS):
                        self._send_status(pgconn, write_lsn, reply=True)
                        last_status = now
                    elif now - last_status > STATUS_INTERVAL_SECONDS or (
                            self.sync and self.reported_flush() != self._last_reported):
                        if begin is None and self._queue.empty() and self._flushed >= handed_out:
                            self._flushed = max(self._flushed, idle_end)
                        self._send_status(pgconn, write_lsn)
                        last_status = now
                    wait = (SYNC_STATUS_INTERVAL_SECONDS if self.sync
                            else WANTED_STATUS_INTERVAL_SECONDS if self._decoded < self.wanted
                            else STATUS_INTERVAL_SECONDS)
                    select.select([pgconn.socket], [], [], wait)
                    pgconn.consume_input()
                    continue
                if nbytes < 0:
                    raise EngineError(pgconn.get_error_message()
                                      or "replication stream ended")
                row = None
                if (self.raw_inserts and begin is not None and not foreign and len(data) > 33
                        and data[0] == 119 and data[25] == 73):  # XLogData of an Insert
                    row = self._fast_insert(bytes(data), relations)
                    if row is not None:
                        write_lsn = max(write_lsn, int.from_bytes(data[9:17], "big"))
                        if begin.final_lsn < handed_out:
                            continue
                if row is None:
                    msg = po.parse_copy_message(data)
                    if isinstance(msg, po.Keepalive):
                        idle_end = msg.end
                        if begin is None:  # the server has sent every commit before msg.end
                            self._decoded = max(self._decoded, msg.end)
                        if msg.reply_requested:
                            # A stopping server waits for us to confirm all it sent:
                            # with nothing in flight, everything up to msg.end is done.
                            if begin is None and self._queue.empty() and (
                                    self._flushed >= handed_out):
                                self._flushed = max(self._flushed, msg.end)
                            self._send_status(pgconn, write_lsn, reply=False)
                            last_status = time.monotonic()
                        continue
                    if msg is None:
                        continue
                    write_lsn = max(write_lsn, msg.end)
                    if foreign and self._skippable(msg.payload, relations):
                        continue
                    event = po.parse_pgoutput(msg.payload)
                    if isinstance(event, po.Begin):
                        begin, txn, foreign, chunk_index = event, [], False, 0
                    elif isinstance(event, po.Origin):
                        foreign = event.name == APPLY_ORIGIN
                    elif isinstance(event, po.Relation):
                        relations[event.relid] = event
                    elif isinstance(event, po.RowMessage):
                        rel = relations[event.relid]
                        if rel.schema == APPLIED_SCHEMA:
                            self._note_applied(event)
                            continue
                        if foreign or begin is None or begin.final_lsn < handed_out:
                            continue
                        row = (rel, event)
                    elif isinstance(event, po.Commit):
                        if begin is not None and not foreign and event.end_lsn > handed_out and (
                                txn or chunk_index):
                            changes, raw = self._body(txn)
                            self._put(CapturedChunk(changes, True, event.commit_time, event.end_lsn,
                                                    chunk_index, xid=begin.xid,
                                                    deps=dict(self.applied), raw=raw),
                                      pgconn, write_lsn)
                            handed_out = self._handed_out = event.end_lsn
                        begin, txn = None, []
                        self._decoded = max(self._decoded, event.end_lsn)
                if row is not None:
                    assert begin is not None  # rows are only read inside a transaction
                    txn.append(row)
                    if len(txn) >= self.frame_max_changes:
                        changes, raw = self._body(txn)
                        self._put(CapturedChunk(changes, False, begin.commit_time, 0, chunk_index,
                                                xid=begin.xid, deps=dict(self.applied), raw=raw),
                                  pgconn, write_lsn)
                        txn, chunk_index = [], chunk_index + 1
            return handed_out
        finally:
            pgconn.finish()

    @staticmethod
    def _skippable(payload: memoryview, relations: dict[int, po.Relation]) -> bool:
        """A row change that apply made (its transaction carries our origin) is
        never captured: skip it undecoded, unless it moves the applied vector.
        Protocol version 1: 'I'/'U'/'D', then the relation id."""
        if payload[0] not in _ROW_KINDS:
            return False
        rel = relations.get(int.from_bytes(payload[1:5], "big"))
        return rel is not None and rel.schema != APPLIED_SCHEMA

    def _note_applied(self, msg: po.RowMessage) -> None:
        if msg.new is None or not isinstance(msg.new[0], str) or not isinstance(msg.new[1], str):
            return
        origin, seq = msg.new[0], int(msg.new[1])
        self.applied[origin] = max(self.applied.get(origin, 0), seq)

    def _body(self, pending: list[tuple[po.Relation, po.RowMessage]],
              ) -> tuple[list[Change], list[tuple[str, int, bytes]] | None]:
        """A chunk's rows: as COPY text runs when every one is an INSERT into a
        table whose every column type has a canonical kind (the text
        pgoutput sent is then what COPY takes, with no Python value made);
        otherwise as Changes of canonical values."""
        if self.raw_inserts and pending and all(msg.op == "I" for _, msg in pending):
            runs: list[tuple[str, int, bytes]] = []
            start = 0
            for i in range(1, len(pending) + 1):
                if i == len(pending) or pending[i][0] is not pending[start][0]:
                    rel = pending[start][0]
                    text = None
                    if self._raw_ok(rel):  # once per run of one table
                        self._check_columns(rel)
                        text = _copy_text([msg.new for _, msg in pending[start:i]])
                    if text is None:  # another type, not UTF-8...: the general path says
                        return [self._change(r, _as_text(m)) for r, m in pending], None
                    runs.append((rel.name, i - start, text))
                    start = i
            return [], runs
        return [self._change(rel, _as_text(msg)) for rel, msg in pending], None

    def _fast_insert(self, data: bytes, relations: dict[int, po.Relation],
                     ) -> tuple[po.Relation, po.RowMessage] | None:
        """An Insert read straight from the CopyData bytes, its values kept as
        bytes, when it is bound for COPY text (a captured table every column of
        which has a canonical kind); None: the general parser reads it."""
        rel = relations.get(int.from_bytes(data[26:30], "big"))
        if rel is None or rel.schema == APPLIED_SCHEMA or not self._raw_ok(rel) or data[30] != 78:
            return None
        fields = po.insert_fields(data, 31)
        if fields is None or len(fields) != len(rel.columns):
            return None
        return rel, po.RowMessage("I", rel.relid, new=fields)  # type: ignore[arg-type]

    def _raw_ok(self, rel: po.Relation) -> bool:
        ok = self._raw_tables.get(rel.relid)
        if ok is None or ok[0] is not rel:
            ok = self._raw_tables[rel.relid] = (rel, all(o in PG_KINDS for o in rel.type_oids))
        return ok[1]

    def _check_columns(self, rel: po.Relation) -> None:
        if list(self.shape_of(rel.name).columns) != rel.columns:
            raise EngineError(f"table {rel.name!r} changed columns while replicating; restart "
                              f"the node so it re-reads the schema")

    def _change(self, rel: po.Relation, msg: po.RowMessage) -> Change:
        self._check_columns(rel)
        old = None
        if msg.old is not None:
            old = tuple(parse(o, v if isinstance(v, str) else None)
                        for o, v in zip(rel.type_oids, msg.old, strict=True))
        new = None
        if msg.new is not None:
            values = []
            for i, (oid, v) in enumerate(zip(rel.type_oids, msg.new, strict=True)):
                if v is po.UNCHANGED:  # unchanged TOAST: REPLICA IDENTITY FULL sent it in old
                    values.append(old[i] if old is not None else None)
                else:
                    values.append(parse(oid, v if isinstance(v, str) else None))
            new = tuple(values)
        op = {"I": Op.INSERT, "U": Op.UPDATE, "D": Op.DELETE}[msg.op]
        return Change(rel.name, op, new=new, old=old)
