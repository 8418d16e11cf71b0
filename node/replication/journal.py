"""The node's durable journal of replicated transaction frames.

Every frame the node captured locally or received from a peer is written
here (SQLite, WAL, synchronous=FULL: one fsync per appended batch) before it
is acknowledged, forwarded or applied. Frames stay until every campus in the
ring is known to hold their transaction (see ``prune``).

Invariants enforced on append, per origin:
* sequence numbers are gapless: frame (o, s) is accepted only when s is the
  next sequence, or when it continues the partial transaction s;
* duplicates (already held) are skipped, so re-delivery is harmless, but a
  duplicate whose body differs from the held one (its digest is kept) is a
  forged or corrupted frame and refused (node.replication.framecheck); so is
  a frame of this campus's own origin that it does not hold;
* the vector advances only when a transaction's final frame is stored.

The local capture position is stored in the same transaction as the local
frames it produced, so a crash never loses or re-journals a capture; each
local frame keeps its own position too, so a donor can tell which of its
transactions a database snapshot holds (``local_seq_through``).

A new journal is not *initialized*: the node first joins the ring (copies a
donor's data, see node.replication.join) and then ``adopt``s the copy's
vector as its heads. Only an initialized journal takes frames.

The reads the loops make (node.replication.journal_reads) are inherited:
callers see one ``Journal``.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from node.codec import build_frame, build_raw_frame, escape_peer_text, frame_rows
from node.model import CapturedChunk, Change, TableShape
from node.replication.framecheck import FrameRefused, check_duplicates, frame_digest
from node.replication.journal_reads import Entry, JournalReads
from node.replication.vectors import Vector
from ringsync.errors import JournalError
from ringsync.v1 import values_pb2 as pb

__all__ = ["Entry", "Journal"]

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS frames(
    pos INTEGER PRIMARY KEY AUTOINCREMENT,
    origin TEXT NOT NULL,
    seq INTEGER NOT NULL,
    chunk INTEGER NOT NULL,
    final INTEGER NOT NULL,
    commit_time REAL NOT NULL,
    recv_time REAL NOT NULL,
    nchanges INTEGER NOT NULL,
    body BLOB NOT NULL,
    position INTEGER,             -- local frames: the engine's capture position
    xid INTEGER,                  -- local frames: the engine's transaction id, if it has one
    digest BLOB,                  -- framecheck.frame_digest(body); NULL: journaled before
    UNIQUE(origin, seq, chunk)
);
CREATE TABLE IF NOT EXISTS heads(
    origin TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,         -- last complete transaction
    next_chunk INTEGER NOT NULL,  -- chunks already held of transaction seq + 1
    changes INTEGER NOT NULL DEFAULT 0  -- row changes ever journaled from this origin
);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS adopted(origin TEXT PRIMARY KEY, seq INTEGER NOT NULL);
"""


class Journal(JournalReads):
    """One campus's journal file: appends, adoption and pruning here, the
    reads in node.replication.journal_reads."""

    def __init__(self, path: Path, campus: str) -> None:
        self.path = path
        self.campus = campus
        self._conn: sqlite3.Connection | None = None
        self._heads: dict[str, int] = {}
        self._partial: dict[str, int] = {}
        self.capture_position = 0
        self.transactions = 0
        self.bytes = 0
        self.last_pos = 0
        self.initialized = False

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(SCHEMA)
        except sqlite3.Error as e:
            raise JournalError(
                f"cannot open the journal {self.path}: {e}; check the data_dir is writable "
                f"and the disk is not full"
            ) from e
        self._conn = conn
        for origin, seq, next_chunk in conn.execute("SELECT origin, seq, next_chunk FROM heads"):
            self._heads[origin] = seq
            if next_chunk:
                self._partial[origin] = next_chunk
        row = conn.execute("SELECT value FROM meta WHERE key = 'capture_position'").fetchone()
        self.capture_position = row[0] if row else 0
        columns = [r[1] for r in conn.execute("PRAGMA table_info(frames)")]
        if "position" not in columns:  # journals written before initial load existed
            conn.execute("ALTER TABLE frames ADD COLUMN position INTEGER")
        if "xid" not in columns:  # journals written before conflict handling existed
            conn.execute("ALTER TABLE frames ADD COLUMN xid INTEGER")
        if "digest" not in columns:  # journals written before duplicates were compared
            conn.execute("ALTER TABLE frames ADD COLUMN digest BLOB")
        if "changes" not in [r[1] for r in conn.execute("PRAGMA table_info(heads)")]:
            conn.execute("ALTER TABLE heads ADD COLUMN changes INTEGER NOT NULL DEFAULT 0")
        row = conn.execute("SELECT value FROM meta WHERE key = 'initialized'").fetchone()
        self.initialized = bool(row and row[0]) or bool(self._heads) or self.capture_position > 0
        count, size, last = conn.execute(
            "SELECT count(*) FILTER (WHERE final), coalesce(sum(length(body)), 0), "
            "coalesce(max(pos), 0) FROM frames"
        ).fetchone()
        self.transactions, self.bytes, self.last_pos = count, size, last

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def vector(self) -> Vector:
        return dict(self._heads)

    def reseat(self, vector: Vector) -> None:
        """A leaf's re-seed: its database now holds a new copy at ``vector``, so
        every other origin's frames go and its heads move to the copy's; this
        campus's own frames and head stay (node.leaf.reseed)."""
        conn = self.conn
        foreign = {o: s for o, s in vector.items() if o != self.campus}
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("DELETE FROM frames WHERE origin != ?", (self.campus,))
            conn.execute("DELETE FROM heads WHERE origin != ?", (self.campus,))
            conn.executemany("INSERT INTO heads(origin, seq, next_chunk) VALUES (?, ?, 0)",
                             [(o, s) for o, s in foreign.items() if s > 0])
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            conn.execute("ROLLBACK")
            raise JournalError(f"cannot reseat the journal {self.path}: {e}") from e
        own = self._heads.get(self.campus)
        self._heads = {o: s for o, s in foreign.items() if s > 0}
        if own is not None:
            self._heads[self.campus] = own
        self._partial = {o: c for o, c in self._partial.items() if o == self.campus}

    def unseen(self, frames: list[tuple[pb.TxnFrame, bytes]]) -> list[tuple[pb.TxnFrame, bytes]]:
        """The frames this journal does not hold yet. A leaf takes its parent's
        frames through this first: a parent (or a standby one) reshapes a
        frame per route each time it sends it, so a re-sent chunk of a
        transaction the leaf holds in part need not match byte for byte."""
        heads, partial = self._heads, self._partial
        return [(f, b) for f, b in frames
                if f.seq > heads.get(f.origin, 0)
                and not (f.seq == heads.get(f.origin, 0) + 1
                         and f.chunk < partial.get(f.origin, 0))]

    # -- append ----------------------------------------------------------

    def append_local(self, chunks: list[CapturedChunk], shapes: dict[str, TableShape],
                     stamp: Callable[[], int] = lambda: 0,
                     set_epochs: Callable[[Iterable[str]], dict[str, int]] | None = None,
                     ) -> int:
        """Journal captured chunks as frames of this campus; return txns completed.

        Each frame gets a clock stamp and the chunk's dependency vector: what
        this campus had applied of the others when its transaction committed;
        and, from ``set_epochs`` (tables -> {set: writer epoch}), the writer
        epoch of every single-writer set it changes.
        """
        if not chunks:
            return 0
        now = time.time()
        rows = []
        heads = dict(self._heads)
        partial = dict(self._partial)
        completed = 0
        position = self.capture_position
        for chunk in chunks:
            seq = heads.get(self.campus, 0) + 1
            index = partial.get(self.campus, 0)
            if chunk.index is not None and chunk.index != index:
                if chunk.index < index:
                    continue  # re-sent after a reconnect: already journaled
                raise JournalError(
                    f"capture skipped chunks: got chunk {chunk.index} of {self.campus}/{seq}, "
                    f"expected {index}"
                )
            position = max(position, chunk.position)
            own = {o: n for o, n in (chunk.deps or {}).items() if o != self.campus and n}
            if chunk.raw:
                frame = build_raw_frame(
                    self.campus, seq, index, chunk.final, chunk.commit_time,
                    [(shapes[t], n, text) for t, n, text in chunk.raw], hlc=stamp(), deps=own)
            else:
                frame = build_frame(
                    self.campus, seq, index, chunk.final, chunk.commit_time, chunk.changes,
                    shapes, hlc=stamp(), deps=own,
                )
            if set_epochs is not None:
                frame.set_epochs.update(set_epochs(t.name for t in frame.tables))
            rows.append((frame, frame.SerializeToString(), now, chunk.position, chunk.xid))
            if chunk.final:
                heads[self.campus] = seq
                partial.pop(self.campus, None)
                completed += 1
            else:
                partial[self.campus] = index + 1
        if rows:
            self._write(rows, heads, partial, capture_position=position)
        return completed

    def append_remote(self, frames: Iterable[tuple[pb.TxnFrame, bytes]]) -> int:
        """Journal frames received from a peer; skip duplicates; return frames stored.

        Raises FrameRefused (a ProtocolError) on a gap, a duplicate that differs
        from the held frame, or a frame of this campus's own origin it does not
        hold, before anything of the batch is stored.
        """
        now = time.time()
        heads = dict(self._heads)
        partial = dict(self._partial)
        rows = []
        dups = []
        pending: dict[tuple[str, int, int], bytes] = {}
        for frame, body in frames:
            origin = frame.origin
            head = heads.get(origin, 0)
            expected_chunk = partial.get(origin, 0)
            if frame.seq <= head or (frame.seq == head + 1 and frame.chunk < expected_chunk):
                dups.append((frame, body))
                continue
            if origin == self.campus:  # no sender sends a campus its own frames
                raise FrameRefused(
                    "own_origin",
                    f"frame {origin}/{frame.seq} chunk {frame.chunk} claims this campus's own "
                    f"origin beyond its journal (head {head}): a forged frame; refused",
                    alert="a peer sent frames claiming this campus's own origin beyond its "
                          "journal: forged frames (refused)")
            if frame.seq != head + 1 or frame.chunk != expected_chunk:
                raise FrameRefused(
                    "gap",
                    f"gap from origin '{escape_peer_text(origin, 60)}': got seq {frame.seq} "
                    f"chunk {frame.chunk}, expected seq {head + 1} chunk {expected_chunk}"
                )
            rows.append((frame, body, now, None, None))
            pending[(origin, frame.seq, frame.chunk)] = body
            if frame.final:
                heads[origin] = frame.seq
                partial.pop(origin, None)
            else:
                partial[origin] = expected_chunk + 1
        if dups:
            check_duplicates(self.conn, dups, self.campus, pending)
        if rows:
            self._write(rows, heads, partial)
        return len(rows)

    def _write(
        self,
        rows: Sequence[tuple[pb.TxnFrame, bytes, float, int | None, int | None]],
        heads: dict[str, int],
        partial: dict[str, int],
        capture_position: int | None = None,
    ) -> None:
        conn = self.conn
        records = []
        added_bytes = 0
        added_txns = 0
        for frame, body, now, position, xid in rows:
            added_bytes += len(body)
            added_txns += frame.final
            records.append(
                (frame.origin, frame.seq, frame.chunk, int(frame.final), frame.commit_time, now,
                 frame_rows(frame), body, position, xid, frame_digest(body))
            )
        touched: dict[str, int] = {}
        for r in records:
            touched[r[0]] = touched.get(r[0], 0) + r[6]
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT INTO frames(origin, seq, chunk, final, commit_time, recv_time, nchanges, "
                "body, position, xid, digest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                records,
            )
            conn.executemany(
                "INSERT INTO heads(origin, seq, next_chunk, changes) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(origin) DO UPDATE SET seq = excluded.seq, "
                "next_chunk = excluded.next_chunk, changes = heads.changes + excluded.changes",
                [(o, heads.get(o, 0), partial.get(o, 0), n) for o, n in touched.items()],
            )
            if capture_position is not None:
                conn.execute(
                    "INSERT INTO meta(key, value) VALUES ('capture_position', ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (capture_position,),
                )
            last = conn.execute("SELECT max(pos) FROM frames").fetchone()[0]
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            conn.execute("ROLLBACK")
            raise JournalError(
                f"cannot write the journal {self.path}: {e}; check free disk space"
            ) from e
        self._heads, self._partial = heads, partial
        if capture_position is not None:
            self.capture_position = capture_position
        self.transactions += added_txns
        self.bytes += added_bytes
        self.last_pos = last or self.last_pos

    # -- joining ---------------------------------------------------------

    def adopt(self, vector: Vector, local_changes: list[list[Change]] | None = None,
              shapes: dict[str, TableShape] | None = None, stamp: int = 0) -> None:
        """Initialize a new journal at ``vector``: the database now holds exactly
        that (a donor's copy, or nothing for a seed), so frames continue from it.

        ``local_changes`` (chunks of one transaction) are journaled in the same
        SQLite transaction as this campus's next transaction: the difference
        that makes the donor's data into this campus's (``keep-local``).
        """
        if self.initialized:
            raise JournalError(f"the journal {self.path} is already initialized")
        heads = {o: s for o, s in vector.items() if s > 0}
        records = []
        if local_changes:
            seq = heads.get(self.campus, 0) + 1
            now = time.time()
            for i, changes in enumerate(local_changes):
                final = i == len(local_changes) - 1
                # It was computed against exactly the copy at ``vector``: it
                # supersedes every version the copy held (node/conflicts).
                frame = build_frame(self.campus, seq, i, final, now, changes, shapes or {},
                                    hlc=stamp, deps={o: s for o, s in vector.items()
                                                     if o != self.campus and s})
                body = frame.SerializeToString()
                records.append((self.campus, seq, i, int(final), now, now, len(changes), body,
                                self.capture_position))
            heads[self.campus] = seq
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT OR REPLACE INTO adopted(origin, seq) VALUES (?, ?)",
                             list(vector.items()))
            conn.executemany(
                "INSERT INTO heads(origin, seq, next_chunk) VALUES (?, ?, 0) ON CONFLICT(origin) "
                "DO UPDATE SET seq = excluded.seq, next_chunk = 0",
                list(heads.items()),
            )
            conn.executemany(
                "INSERT INTO frames(origin, seq, chunk, final, commit_time, recv_time, nchanges, "
                "body, position) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", records)
            conn.execute("INSERT INTO meta(key, value) VALUES ('initialized', 1) "
                         "ON CONFLICT(key) DO UPDATE SET value = 1")
            last = conn.execute("SELECT max(pos) FROM frames").fetchone()[0]
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            conn.execute("ROLLBACK")
            raise JournalError(f"cannot write the journal {self.path}: {e}") from e
        self._heads, self._partial = heads, {}
        self.transactions += 1 if records else 0
        self.bytes += sum(len(r[7]) for r in records)
        self.last_pos = last or self.last_pos
        self.initialized = True

    def add_backlog(self, frames: Sequence[tuple[pb.TxnFrame, bytes]]) -> None:
        """Store a donor's frames before ``adopt`` (they are at or below the
        adopted vector: already applied here, kept to serve campuses behind)."""
        if self.initialized:
            raise JournalError("backlog frames go into a journal that is not initialized yet")
        now = time.time()
        records = [(f.origin, f.seq, f.chunk, int(f.final), f.commit_time, now, frame_rows(f),
                    body, None) for f, body in frames]
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO frames(origin, seq, chunk, final, commit_time, recv_time, "
                "nchanges, body, position) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", records)
            added = conn.total_changes - before
            last = conn.execute("SELECT max(pos) FROM frames").fetchone()[0]
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            conn.execute("ROLLBACK")
            raise JournalError(f"cannot write the journal {self.path}: {e}") from e
        if added:
            self._recount(last)

    def discard_backlog(self) -> None:
        """Forget frames of an abandoned join attempt (uninitialized journal only)."""
        if self.initialized:
            raise JournalError("an initialized journal keeps its frames")
        self.conn.execute("DELETE FROM frames")
        self._recount(0)

    def _recount(self, last: int | None) -> None:
        count, size = self.conn.execute(
            "SELECT count(*) FILTER (WHERE final), coalesce(sum(length(body)), 0) FROM frames"
        ).fetchone()
        self.transactions, self.bytes = count, size
        self.last_pos = max(self.last_pos, last or 0)

    # -- prune -----------------------------------------------------------

    def prune(self, everywhere: Vector) -> int:
        """Delete frames of transactions every campus holds; return txns removed."""
        removed_txns = 0
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for origin, seq in everywhere.items():
                if seq <= 0:
                    continue
                n, size = conn.execute(
                    "SELECT count(*) FILTER (WHERE final), coalesce(sum(length(body)), 0) "
                    "FROM frames WHERE origin = ? AND seq <= ?",
                    (origin, seq),
                ).fetchone()
                if n or size:
                    conn.execute("DELETE FROM frames WHERE origin = ? AND seq <= ?", (origin, seq))
                    removed_txns += n
                    self.bytes -= size
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self.transactions -= removed_txns
        return removed_txns
