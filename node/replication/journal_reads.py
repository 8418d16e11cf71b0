"""The journal's read side: the queries the loops make of it.

node.replication.journal.Journal writes the journal (appends, adoption,
pruning) and inherits these reads; callers see one ``Journal``. What the
sender and the applier walk (``entries_after``, ``local_after``, ``start_pos``,
``iter_frames``), what a donor serves a joining campus (``held_upto``,
``local_seq_through``), what synchronous mode releases (``acked_position``)
and what status reports (``received_and_in_flight``, ``oldest_missing_time``).
Reads go through the journal's connection on the journal's thread, except
those marked "from any thread", which open a read connection of their own
(WAL lets it read beside the writer).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from node.replication.vectors import Vector
from ringsync.errors import JournalError


@dataclass(slots=True)
class Entry:
    """One journaled frame as the reads return it (body empty when not read)."""

    pos: int
    origin: str
    seq: int
    chunk: int
    final: bool
    commit_time: float
    recv_time: float
    nchanges: int
    body: bytes
    position: int | None = None  # local frames: the engine's capture position
    xid: int | None = None       # local frames: the engine's transaction id


class JournalReads:
    """The read queries of a journal (``Journal`` keeps the fields below)."""

    path: Path
    campus: str
    capture_position: int
    last_pos: int
    _conn: sqlite3.Connection | None
    _heads: dict[str, int]

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise JournalError("journal is not open")
        return self._conn

    def held_upto(self, vector: Vector, after_pos: int, limit: int) -> list[tuple[int, bytes]]:
        """(pos, body) of frames after ``after_pos`` whose transaction ``vector``
        holds, in arrival order: the backlog a joining campus takes with a copy."""
        out = []
        for pos, origin, seq, body in self.conn.execute(
            "SELECT pos, origin, seq, body FROM frames WHERE pos > ? ORDER BY pos LIMIT ?",
            (after_pos, limit),
        ):
            if seq <= vector.get(origin, 0):
                out.append((pos, body))
            else:
                out.append((pos, b""))  # keeps the caller's cursor moving
        return out

    def adopted(self) -> Vector:
        """The vector the journal was initialized at (empty for older journals)."""
        return dict(self.conn.execute("SELECT origin, seq FROM adopted").fetchall())

    def local_seq_through(self, position: int) -> int:
        """The last local transaction whose capture position is at or before
        ``position`` (all of them must be journaled already).

        Counted back from the head, over frames after ``position``: those are
        recent and still held, since a joining campus holds none of them.
        """
        head = self._heads.get(self.campus, 0)
        (later,) = self.conn.execute(
            "SELECT count(*) FROM frames WHERE origin = ? AND final AND position > ?",
            (self.campus, position),
        ).fetchone()
        return int(head - later)

    def acked_position(self, acked_seq: int) -> int:
        """A capture position covering exactly this campus's transactions up to
        ``acked_seq``: every later local transaction commits after it."""
        if acked_seq >= self._heads.get(self.campus, 0):
            return self.capture_position
        row = self.conn.execute(
            "SELECT position FROM frames WHERE origin = ? AND seq = ? AND final",
            (self.campus, acked_seq)).fetchone()
        if row is not None and row[0] is not None:
            return int(row[0])
        (first_unacked,) = self.conn.execute(
            "SELECT min(position) FROM frames WHERE origin = ? AND final AND seq > ?",
            (self.campus, acked_seq)).fetchone()
        return int(first_unacked) - 1 if first_unacked is not None else self.capture_position

    # -- read ------------------------------------------------------------

    def entries_after(
        self, pos: int, limit: int, max_bytes: int = 1 << 62, only_whole_bodies: bool = False
    ) -> list[Entry]:
        """Frames after ``pos`` in arrival order, up to ``limit`` frames and about
        ``max_bytes`` of bodies. With ``only_whole_bodies`` the body is read only
        for single-frame transactions (the applier streams the others)."""
        body_sql = "CASE WHEN chunk = 0 AND final THEN body ELSE x'' END" if (
            only_whole_bodies) else "body"
        out: list[Entry] = []
        size = 0
        for p, origin, seq, chunk, final, commit_time, recv_time, nchanges, body in (
            self.conn.execute(
                "SELECT pos, origin, seq, chunk, final, commit_time, recv_time, nchanges, "
                f"{body_sql} FROM frames WHERE pos > ? ORDER BY pos LIMIT ?",
                (pos, limit),
            )
        ):
            entry = Entry(p, origin, seq, chunk, bool(final), commit_time, recv_time, nchanges,
                          body)
            if out and size + len(entry.body) > max_bytes:
                break
            size += len(entry.body)
            out.append(entry)
        return out

    def local_after(self, seq: int, limit: int, private: bool = False) -> list[Entry]:
        """This campus's complete transactions after ``seq``, oldest first, as
        their final frame (body only when it is the transaction's one frame;
        ``position`` and ``xid`` as capture recorded them). ``private``: read
        through a connection of its own (a caller on another thread)."""
        if private:
            conn = self._reader()
            try:
                return self._local_after(conn, seq, limit)
            finally:
                conn.close()
        return self._local_after(self.conn, seq, limit)

    def _reader(self) -> sqlite3.Connection:
        """A read connection of its own (WAL lets it read beside the writer)."""
        return sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)

    def _local_after(self, conn: sqlite3.Connection, seq: int, limit: int) -> list[Entry]:
        out = []
        heads = self._heads.get(self.campus, 0)
        for p, s, chunk, final, commit_time, recv_time, nchanges, body, position, xid in (
            conn.execute(
                "SELECT pos, seq, chunk, final, commit_time, recv_time, nchanges, "
                "CASE WHEN chunk = 0 THEN body ELSE x'' END, position, xid FROM frames "
                "WHERE origin = ? AND seq > ? AND seq <= ? AND final ORDER BY seq LIMIT ?",
                (self.campus, seq, heads, limit),
            )
        ):
            entry = Entry(p, self.campus, s, chunk, bool(final), commit_time, recv_time,
                          nchanges, body)
            entry.position, entry.xid = position, xid
            out.append(entry)
        return out

    def received_and_in_flight(self, applied: Vector) -> tuple[int, int]:
        """Row changes ever journaled from other campuses, and those of them in
        frames beyond ``applied`` (one read: the two agree with each other)."""
        conn = self.conn
        conn.execute("BEGIN")
        try:
            received = conn.execute("SELECT coalesce(sum(changes), 0) FROM heads "
                                    "WHERE origin <> ?", (self.campus,)).fetchone()[0]
            in_flight = 0
            for (origin,) in conn.execute(
                    "SELECT DISTINCT origin FROM frames WHERE origin <> ?",
                    (self.campus,)).fetchall():
                in_flight += conn.execute(
                    "SELECT coalesce(sum(nchanges), 0) FROM frames WHERE origin = ? AND seq > ?",
                    (origin, applied.get(origin, 0))).fetchone()[0]
        finally:
            conn.execute("COMMIT")
        return int(received), int(in_flight)

    def first_local_seq(self) -> int | None:
        row = self.conn.execute("SELECT min(seq) FROM frames WHERE origin = ?",
                                (self.campus,)).fetchone()
        return row[0] if row else None

    def frames_after(self, origin: str, seq: int) -> Iterator[tuple[int, bytes]]:
        """(seq, body) of ``origin``'s frames after ``seq``, in order, from any
        thread (its own read connection, like iter_frames)."""
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
        try:
            yield from conn.execute(
                "SELECT seq, body FROM frames WHERE origin = ? AND seq > ? ORDER BY seq, chunk",
                (origin, seq))
        finally:
            conn.close()

    def iter_frames(self, origin: str, seq: int) -> Iterator[bytes]:
        """Stream one transaction's frames in chunk order, from any thread.

        Uses its own read connection (WAL lets it read beside the writer), so
        the applier can walk a huge transaction without holding it in memory.
        """
        conn = self._reader()
        try:
            for (body,) in conn.execute(
                "SELECT body FROM frames WHERE origin = ? AND seq = ? ORDER BY chunk",
                (origin, seq),
            ):
                yield body
        finally:
            conn.close()

    def start_pos(self, vector: Vector) -> int:
        """The journal position after which everything ``vector`` lacks lies.

        Raises JournalError if the journal no longer holds a transaction the
        vector lacks (it was pruned), which means the receiver needs a re-sync.
        """
        start = self.last_pos
        for origin, head in self._heads.items():
            have = vector.get(origin, 0)
            if head <= have:
                continue
            row = self.conn.execute(
                "SELECT min(pos) FROM frames WHERE origin = ? AND seq = ?", (origin, have + 1)
            ).fetchone()
            if row[0] is None:
                raise JournalError(
                    f"the journal no longer holds {origin}/{have + 1}, which the receiver lacks; "
                    f"the receiver must be re-synced from a full copy"
                )
            start = min(start, row[0] - 1)
        return start

    def oldest_missing_time(self, vector: Vector) -> float | None:
        """When the oldest transaction ``vector`` lacks reached this journal."""
        oldest: float | None = None
        for origin, head in self._heads.items():
            have = vector.get(origin, 0)
            if head <= have:
                continue
            row = self.conn.execute(
                "SELECT min(recv_time) FROM frames WHERE origin = ? AND seq = ?",
                (origin, have + 1),
            ).fetchone()
            if row[0] is not None and (oldest is None or row[0] < oldest):
                oldest = row[0]
        return oldest
