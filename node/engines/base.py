"""The contract every campus database engine fulfils.

An engine captures the campus's own committed transactions, applies foreign
transactions atomically while recording the applied vector in the same
database transaction, and answers health, counting and checksum questions.
Engines are synchronous; the node runs each on its own worker thread.

An Engine only opens, closes, describes itself and gives its tables' shapes;
the work is done by one object per role (CaptureSource, ApplyTarget, Fence,
ConflictStore, Inspection), each reached as an attribute of the engine
(engine.source, engine.target, ...). An engine's role objects share one
context object (node.engines.postgres.connections, node.engines.sqlite.
connections), never a base class. What both engines do alike is written once
beside them: node.engines.dialect (statements and an operator's write),
sessionbase (the shared half of an apply session), fencing, runs, snapshot.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from node.conflicts.deadletter import DeadLetterQuery, DeadLetterStore
from node.conflicts.entries import ConflictEntry, DeadLetterEntry
from node.conflicts.log import ConflictQuery
from node.engines.snapshot import ReadSnapshot
from node.model import CapturedChunk, Change, TableShape
from node.verify.snapshot import TableVerify
from ringsync.errors import SchemaError


def fence_message(campus: str) -> str:
    """What a fenced campus database tells an application whose write it refuses."""
    return (f"ringsync: campus {campus} is fenced: its users are served by another campus "
            f"now; reconnect through the routing map (ringsync ctl route)")


def missing_table(table: str, shown: str) -> SchemaError:
    """A table of cluster.tables that the campus database (``shown``) lacks."""
    return SchemaError(
        f"table {table!r} is listed in cluster.tables but does not exist in "
        f"{shown}; create it with the same columns as the other campuses")


def no_primary_key(table: str) -> SchemaError:
    """A replicated table of a server engine without a primary key."""
    return SchemaError(
        f"table {table!r} has no primary key, so its rows cannot be matched across "
        f"campuses; add one (ALTER TABLE {table} ADD PRIMARY KEY (…)) or remove it "
        f"from cluster.tables")


def set_fence_message(campus: str, set_name: str) -> str:
    """What a campus database tells an application writing to a table of a
    single-writer set this campus is not (now) the writer of."""
    return (f"ringsync: campus {campus} is not the writer of single-writer set {set_name}: "
            f"its tables take writes only at the set's writer (ringsync ctl route shows it)")


@dataclass(frozen=True)
class SetFence:
    """A single-writer set's fence row in a campus database.

    ``writable_until``: Unix seconds until which applications may write the
    set's tables here (0, or any past time: closed). ``epoch``: the writer
    epoch the row was last opened or closed under. ``reconciled``: the last
    epoch whose hand-over this campus has applied (written by an apply
    session, atomically with what it applied)."""

    writable_until: float
    epoch: int
    reconciled: int


class ApplySession(DeadLetterStore, Protocol):
    """One database transaction applying one or more foreign transactions.

    Replication applies through node.conflicts.driver (the VersionStore
    half); ``apply`` writes rows as they come, for an initial load's copy.
    """

    # True: ``lock_rows`` really locks rows until the session ends (so a
    # batch may hold them while it waits for capture: node.replication.batch).
    holds_row_locks: bool

    def apply(self, changes: Iterable[Change]) -> None: ...

    def lock_rows(self, shape: TableShape, keys: list[Any]) -> None:
        """Lock these rows (those that exist) until the session ends, in key
        order; an engine whose session locks the whole database does nothing."""

    def clear(self, table: str) -> None:
        """Delete every row of a table and its versions (initial load replacing local data)."""

    def mark_base_versions(self) -> None:
        """Rows copied in by an initial load become base versions."""

    def advance(self, origin: str, seq: int, position: int | None = None,
                changes: int = 0) -> None:
        """Record that (origin, seq), and every earlier one of that origin, is
        applied (or, for this campus's own transactions, that their versions
        are recorded: ``position`` is their capture position), in this same
        transaction. ``changes``: the row changes applied (not dead-lettered)
        since the last call."""

    def mark_set_reconciled(self, name: str, epoch: int) -> None:
        """Record ``reconciled = epoch`` for single-writer set ``name``, in this
        same (still open) transaction: it commits with the session's other
        writes, or not at all."""


class CaptureSource(Protocol):
    """The campus's own committed transactions, in commit order, for the journal
    (node.replication.capture), and what synchronous mode needs of them."""

    def start_capture(self, position: int) -> None:
        """Prepare to capture after ``position`` (the journal's capture position)."""

    def capture(self, position: int, max_changes: int) -> list[CapturedChunk]:
        """Committed local changes after ``position``, oldest first.

        Runs on its own thread, concurrently with apply; it may block briefly
        waiting for changes but never polls the server in a busy loop.
        """

    def release(self, position: int) -> None:
        """Forget captured changes up to ``position`` (they are journaled)."""

    def local_recorded(self, position: int) -> None:
        """Local transactions up to this capture position have their row
        versions recorded (the engine may stop tracking them as pending)."""

    def captured_through(self) -> int:
        """A capture position P such that every local transaction at or before P
        was returned by ``capture`` calls made so far."""

    def commit_position(self) -> int:
        """A capture position P such that every local transaction committed so far
        is at or before P (PostgreSQL: the WAL insert position, in the LSN
        coordinates capture positions use; SQLite: the highest ``_rs_log`` id ever
        issued, from sqlite_sequence; 0 if none)."""

    def sync_release(self, acked_position: int | None) -> None:
        """Synchronous mode (PostgreSQL): local commits up to ``acked_position``
        may return to their applications, a peer holds them; None: stop
        waiting for peers. Engines without synchronous mode ignore it."""



class ApplyTarget(Protocol):
    """Foreign transactions applied atomically, with the applied vector recorded
    in the same database transaction (node.replication.batch, join)."""

    def apply_session(self) -> AbstractContextManager[ApplySession]:
        """Begin a transaction; commit on normal exit, roll back on error."""

    def applied_vector(self) -> dict[str, int]: ...

    def apply_accounting(self) -> tuple[dict[str, int], int, dict[str, int]]:
        """(applied vector, foreign row changes applied, dead letters by state),
        read together."""



class Fence(Protocol):
    """Database-enforced fencing for disaster recovery: the campus fence and the
    single-writer sets' fences (node.dr)."""

    # True: fence writes run on a connection of their own (PostgreSQL), so the
    # node runs them on its fence thread, never behind an apply batch or a
    # commit waiting for a synchronous standby; False: on the engine thread.
    own_fence_connection: bool

    def close_fence(self) -> None:
        """Close the fence's own connection, if it has one (the node is stopping)."""

    def set_fence(self, writable_until: float) -> None:
        """Application writes to the replicated tables (those of a single-writer
        set excepted: see ``set_set_fence``) are refused by the database once its
        clock reaches ``writable_until`` (Unix seconds); float('inf') means never
        fenced. The node's own apply sessions (foreign changes, initial-load
        copies, dead-letter retries) are never refused."""

    def fence_state(self) -> float:
        """The stored writable_until (float('inf') when never fenced)."""

    def set_set_fence(self, name: str, writable_until: float, epoch: int) -> None:
        """Application writes to the tables of single-writer set ``name`` are
        accepted only until the database's clock reaches ``writable_until``
        (Unix seconds; 0 closes the set now); store ``epoch`` with it. Upserts
        the set's row in its own committed transaction; ``reconciled`` is kept.
        A set's tables are guarded by this row alone (not by ``set_fence``);
        the node's own apply sessions are never refused."""

    def wait_set_writers(self, name: str, timeout: float = 5.0) -> None:
        """After closing set ``name``: wait until no application transaction
        that wrote to its tables before the close is still open (so every
        write it let in has committed, or never will). PostgreSQL takes a
        SHARE lock on the set's tables for a moment (EngineError after
        ``timeout``); SQLite has nothing to wait for (closing took the
        database's write lock)."""

    def set_fence_states(self) -> dict[str, SetFence]:
        """Every stored set fence row, by set name (a configured set's row is
        created closed at open)."""

    def end_app_sessions(self) -> int:
        """PostgreSQL: terminate every client session of the campus database except
        the node's own connections and replication connections; return how many.
        SQLite: 0 (it has no sessions; the guard refuses the next write of any open
        connection)."""



class ConflictStore(Protocol):
    """The conflict log, row versions and dead letters kept in the campus database
    (node.conflicts, the servicers' conflict and dead-letter RPCs)."""

    def conflicts(self, query: ConflictQuery) -> list[ConflictEntry]:
        """Entries of the conflict log, newest first."""

    def conflict_counts(self) -> dict[str, int]:
        """Conflict log entries by state: logged, parked, flagged."""

    def prune_conflicts(self, keep_rows: int, keep_days: int) -> None: ...

    def read_version(self, table: str, key: tuple[Any, ...]) -> tuple[tuple[Any, ...] | None,
                                                                     str | None]:
        """A row as the table holds it and its recorded versions (text)."""

    def write_local(self, table: str, key: tuple[Any, ...], row: tuple[Any, ...] | None,
                    prior: tuple[Any, ...] | None = None) -> None:
        """Write as this campus's own transaction (an operator's resolution)."""

    def mark_conflict(self, conflict_id: int, state: str, resolution: str) -> None: ...

    def dead_letter_list(self, query: DeadLetterQuery) -> list[DeadLetterEntry]: ...

    def dead_letter_counts(self) -> dict[str, int]:
        """Dead-letter entries by state: parked, applied (after a retry), skipped."""



class Inspection(Protocol):
    """Read-only questions about the data: health, counts, rows, checksums and the
    consistent snapshot a joining campus copies (status, verify, join)."""

    def check_health(self) -> None:
        """Raise EngineError if the database cannot serve."""

    def row_counts(self) -> dict[str, int]: ...

    def rows(self, table: str) -> list[tuple[Any, ...]]:
        """Every row of a table as canonical values."""

    def checksums(self, tables: list[str]) -> tuple[dict[str, tuple[int, str]], dict[str, int]]:
        """Per table (row count, order-independent digest), and the applied
        vector, all read from one consistent snapshot."""

    def snapshot(self) -> AbstractContextManager[ReadSnapshot]:
        """A consistent read of every replicated table, for a joining campus."""


class Verifier(Protocol):
    """Verification's questions about one table (node.verify), each answered
    from one read snapshot on a connection of the verifier's own, so a long
    scan never holds up apply; rows hashed as node.verify.rowhash says."""

    # table -> a view of its canonical rows, applied before hashing (set by
    # node.dictionary.coded for tables with mapped codes; such a table is
    # never answered from kept digests)
    views: dict[str, Callable[[tuple[Any, ...]], tuple[Any, ...]]]

    def bucket_digests(self, table: str, bits: int, incremental: bool = False) -> TableVerify:
        """Per key-hash bucket (``bits`` deep): row count and digest; with
        ``incremental``, from digests the database keeps, where it keeps them
        (``TableVerify.mode`` says which)."""

    def row_hashes(self, table: str, bits: int, buckets: Sequence[int]) -> TableVerify:
        """The (key, row hash) of every row in ``buckets``."""

    def fold_digests(self) -> int:
        """Fold kept digests' deltas (node.engines.postgres.digests); how many."""


class Engine(Protocol):
    """A campus database engine: what the node opens and closes, and one object
    per role. Each loop takes only the role it needs (engine.source for
    capture, engine.target for apply, ...); the contract suite tests every
    role on every engine (tests/contract/)."""

    name: str

    @property
    def description(self) -> str:
        """Where the data lives (a file path or DSN), for status and the demo."""

    def open(self) -> None:
        """Connect, validate the replicated tables and install capture."""

    def close(self) -> None: ...

    def shapes(self) -> Mapping[str, TableShape]:
        """The replicated tables' shapes, as validated at open."""

    @property
    def source(self) -> CaptureSource: ...

    @property
    def target(self) -> ApplyTarget: ...

    @property
    def fence(self) -> Fence: ...

    @property
    def store(self) -> ConflictStore: ...

    @property
    def inspect(self) -> Inspection: ...

    @property
    def verifier(self) -> Verifier: ...
