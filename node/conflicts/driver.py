"""Resolution driver: applies one transaction's changes through the row rules.

Sits between the applier and an engine's apply session. For each run of
changes to one table it reads the rows and their stored versions (one batch
per run), resolves every change in order with ``RowRules``, then writes the
rows that changed, the new versions and any conflicts, all in the apply
session's database transaction.

Two kinds of transaction pass through:

* a *remote* one (another campus's): its outcome is written to the table.
  If a key has a local change whose version is not recorded yet, the row in
  the table is not what the versions describe, so nothing is decided:
  ``PendingLocalChange`` rolls the session back and the applier retries once
  capture has journaled that change (it is then recorded first).
* a *local* one (this campus's, already in the table): only its version is
  recorded, and the row written back when a delta column must also count
  increments the user could not see (a re-insert after a concurrent delete).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from node.conflicts.fresh import FreshRun, RawItem, fresh_meta, fresh_run, raw_changes
from node.conflicts.metacodec import decode_meta, encode_meta
from node.conflicts.policy import check_policies
from node.conflicts.resolve import Conflict, RowMeta, RowRules, Version
from node.hlc import HybridClock
from node.model import Change, Op, RawInserts, TableShape
from node.spelling import columns_sql
from ringsync.conflict_policy import ConflictSettings
from ringsync.errors import RingsyncError

log = logging.getLogger(__name__)

Key = tuple[Any, ...]
Row = tuple[Any, ...]


class PendingLocalChange(RingsyncError):
    """A row has a local change whose version is not recorded yet; retry soon."""


@dataclass(slots=True)
class TxnInfo:
    origin: str
    seq: int
    hlc: int
    deps: Mapping[str, int]
    local: bool
    position: int | None = None  # local: the engine's capture position of the transaction
    xid: int | None = None       # local: the engine's transaction id, where it has one


@dataclass(slots=True)
class StoredRow:
    row: Row | None
    meta: str | None   # None: no version recorded (a row from before ringsync, or none)
    pending: bool      # remote txn: an unrecorded local change; local txn: a later one
    tag: int | None = None  # the engine's row version (PostgreSQL xmin), if any


@dataclass(slots=True)
class ConflictRecord:
    table: str
    key: Key
    seq: int
    conflict: Conflict
    at: float
    skew_ms: int
    columns: tuple[str, ...]

    def row_json(self, row: Row | None) -> str | None:
        return row_to_json(self.columns, row)

    def params(self) -> tuple[Any, ...]:
        """Values for the conflict log's columns, in LOG_COLUMNS order."""
        c = self.conflict
        return (self.at, self.table, self.key_json(), c.kind, c.rule, c.winner, c.local_origin,
                c.local_hlc, c.remote_origin, self.seq, c.remote_hlc,
                self.row_json(c.local_row), self.row_json(c.remote_row), self.skew_ms,
                self.state())

    def state(self) -> str:
        if self.conflict.winner == "parked":
            return "parked"
        return "flagged" if self.conflict.kind == "clock_skew" else "logged"

    def key_json(self) -> str:
        return self.key_json_of(self.key)

    @staticmethod
    def key_json_of(key: Key) -> str:
        return json.dumps([display(v) for v in key], ensure_ascii=False)


def row_to_json(columns: tuple[str, ...], row: Row | None) -> str | None:
    if row is None:
        return None
    return json.dumps(dict(zip(columns, map(display, row), strict=True)),
                      separators=(",", ":"), ensure_ascii=False)


def display(value: Any) -> Any:
    """A value as JSON an operator can read (exact decimals and times as text)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes):
        return "\\x" + value.hex()
    text = getattr(value, "text", None)  # node.model.Json
    if isinstance(text, str):
        return json.loads(text)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


LOG_COLUMNS = ("at", "tbl", "key", "kind", "rule", "winner", "local_origin", "local_hlc",
               "remote_origin", "remote_seq", "remote_hlc", "local_row", "remote_row", "skew_ms",
               "state")


def log_insert_sql(table: str, mark: str) -> str:
    return (f"INSERT INTO {table}({columns_sql(LOG_COLUMNS)}) "
            f"VALUES ({', '.join(mark for _ in LOG_COLUMNS)})")


class VersionStore(Protocol):
    """What an engine's apply session offers the driver."""

    def read_versions(self, shape: TableShape,
                      keys: Mapping[Key, TxnInfo]) -> dict[Key, StoredRow]:
        """Each key's row and versions, locked until the session ends. A key
        maps to the transaction being applied to it; for a local one, the
        last local transaction whose version of that row is being recorded
        (a later local change than that one makes the key pending)."""

    def write_rows(self, shape: TableShape, rows: Mapping[Key, Row | None],
                   absent: frozenset[Key] = frozenset()) -> None:
        """Write rows (None: delete). ``absent``: keys that had no row when read;
        a row of one that appeared since must not be overwritten
        (``PendingLocalChange``)."""

    def write_versions(self, shape: TableShape, metas: Mapping[Key, tuple[str | None, bool]],
                       stored: Mapping[Key, StoredRow], written: set[Key],
                       owners: Mapping[Key, TxnInfo]) -> None:
        """Store each key's versions (text, row exists); ``written``: keys whose
        row this session wrote; ``owners``: each key's transaction, as
        read_versions was given them."""

    def log_conflicts(self, records: list[ConflictRecord]) -> None: ...

    def count_delta_merged(self, n: int) -> None:
        """Add ``n`` to the durable count of concurrent updates that only
        delta columns made concurrent (certain outcomes, not logged)."""

    def close_parked(self, shape: TableShape, keys: list[Key], note: str) -> None:
        """Parked conflicts of these rows are settled: a version superseded them."""

    def reset_versions(self, shape: TableShape, rows: Mapping[Key, bool]) -> None:
        """These rows were just restored by this session (key -> the row exists):
        their recorded versions go, so they count as base versions that any
        later change supersedes (node.dr.sets: undoing a stale tail)."""

    def insert_fresh(self, shape: TableShape, run: FreshRun) -> bool:
        """Insert a remote run of fresh rows and their versions set-wise
        (node.conflicts.fresh). False, with nothing written, when a key has
        a version entry or a row the exact path must see; a local row that
        appears meanwhile is ``PendingLocalChange``."""

    def record_fresh(self, shape: TableShape, run: FreshRun) -> bool:
        """Record the versions of this campus's own fresh rows (already in the
        table) set-wise. False, with nothing written, when a key already has a
        version entry."""

    # Optional, looked up by name: ``insert_raw(shape, items)`` and
    # ``record_raw(shape, items)``, the same for rows as COPY text, items
    # (text, rows, version text, xid) per transaction. An engine without them
    # (SQLite) gets those rows decoded (node.conflicts.fresh.raw_changes).


class Resolver:
    def __init__(self, shapes: Mapping[str, TableShape], settings: ConflictSettings,
                 clock: HybridClock, fast: bool = True) -> None:
        check_policies(settings, shapes)
        self.settings = settings
        self.clock = clock
        # Runs of fresh inserts go set-wise (node.conflicts.fresh); False: every
        # run takes the exact path (``[replication] fast_apply = false``).
        self.fast = fast
        self.fresh_rows = 0       # rows written by the fast path
        self.fresh_fallbacks = 0  # eligible runs the database sent to the exact path
        # Set by the applier for one try once capture has journaled and recorded
        # every local change committed before a wait began: a row still pending
        # then was changed outside replication (node.replication.outside).
        self.adopt_outside = False
        self.outside_changes = 0  # such rows taken as they stand
        self.rules = {t: RowRules(s, settings.policy(t)) for t, s in shapes.items()}
        self.conflicts = 0
        self.parked = 0
        self.skewed = 0
        self.delta_merged = 0

    def apply(self, store: VersionStore, txn: TxnInfo, changes: Iterable[Change]) -> int:
        """Resolve and write a transaction's changes; return conflicts logged."""
        return self.apply_many(store, [(txn, changes)])

    def apply_many(self, store: VersionStore,
                   txns: Iterable[tuple[TxnInfo, Iterable[Change]]]) -> int:
        """Resolve and write transactions' changes in order; return conflicts logged.

        Consecutive changes to one table are read, resolved and written as one
        batch even across transactions (the session commits them together),
        so a stream of small transactions costs a few statements per batch,
        not per transaction. Tables keep their order, so foreign keys hold.
        A run holds remote transactions or local ones, never both.
        """
        logged = merged = 0
        flagged: list[ConflictRecord] = []
        run: list[_Item] = []
        for txn, changes in txns:
            skew = 0 if txn.local or not txn.hlc else self.clock.skew_ms(txn.hlc)
            if not txn.local and txn.hlc:
                self.clock.observe(txn.hlc)  # refused (not adopted) when beyond the bound
            first: Change | None = None
            for change in split_key_changes(changes, self.rules):
                first = first or change
                if run and self._run_ends(run, txn, change):
                    n, m = self._apply_run(store, run)
                    logged, merged, run = logged + n, merged + m, []
                run.append(_Item(txn, change, skew))
            if skew > self.settings.max_clock_skew_ms and first is not None:
                # Flagged, never silently trusted; the decision itself stays the
                # same on every campus (it cannot depend on one campus's clock).
                shape = self.rules[first.table].shape
                if isinstance(first, RawInserts):  # the first row's key names the record
                    first = next(iter(raw_changes(first, shape, limit=1)), None)
                if first is not None:
                    flagged.append(ConflictRecord(
                        shape.name, shape.key_of(_image(first)), txn.seq,
                        Conflict("clock_skew", f"stamp {skew} ms ahead of this campus's clock "
                                 f"(bound {self.settings.max_clock_skew_ms} ms)", "flagged",
                                 None, _image(first), "", 0, txn.origin, txn.hlc),
                        time.time(), skew, shape.columns))
        if run:
            n, m = self._apply_run(store, run)
            logged, merged = logged + n, merged + m
        if flagged:
            self.skewed += len(flagged)
            store.log_conflicts(flagged)
        if merged:
            store.count_delta_merged(merged)  # once per batch, in its transaction
            self.delta_merged += merged
        return logged + len(flagged)

    def _run_ends(self, run: list[_Item], txn: TxnInfo, change: Change) -> bool:
        last = run[-1]
        if last.change.table != change.table:
            return True
        if isinstance(last.change, RawInserts) != isinstance(change, RawInserts):
            return True
        if last.txn is not txn:
            # Local versions are recorded against what the table holds, remote
            # ones resolved against it; a manual table settles and parks in
            # transaction order.
            if txn.local != last.txn.local:
                return True
            return self.rules[change.table].policy.rule == "manual"
        return False

    def _apply_run(self, store: VersionStore, run: list[_Item],
                   try_fresh: bool = True) -> tuple[int, int]:
        """Resolve and write one run; return (conflicts logged, delta-merged).
        ``try_fresh``: a run of fresh inserts may take the fast path first."""
        first = run[0].txn
        rules = self.rules[run[0].change.table]
        shape = rules.shape
        if isinstance(run[0].change, RawInserts):
            return self._apply_raw_run(store, run, rules)
        fast = self.fast and not self.adopt_outside
        if fast and try_fresh and (fresh := fresh_run(rules, run)) is not None:
            done = (store.record_fresh(shape, fresh) if first.local
                    else store.insert_fresh(shape, fresh))
            if done:
                self.fresh_rows += len(fresh.rows)
                return 0, 0
            self.fresh_fallbacks += 1
        # each key with its transaction; local: the last one that changed it
        owner = {shape.key_of(_image(i.change)): i.txn for i in run}
        keys = list(owner)
        stored = store.read_versions(shape, owner)
        outside: set[Key] = set()
        if not first.local:
            waiting = [k for k in keys if stored[k].pending]
            if waiting and not self.adopt_outside:
                raise PendingLocalChange(
                    f"{shape.name} {waiting[0]!r} has a local change not yet journaled")
            outside = set(waiting)
            for k in waiting:
                self.outside_changes += 1
                log.warning("%s %r was changed outside replication at this campus (no "
                            "capture saw it); taken as it stands, as a row with no history: "
                            "the change now applied is resolved against it (ctl verify "
                            "shows where campuses differ)", shape.name, k)
        state: dict[Key, tuple[Row | None, RowMeta | None]] = {}
        if not first.local:
            for k in keys:
                s = stored[k]
                meta = (decode_meta(s.meta, s.row, rules.delta)
                        if s.meta is not None and k not in outside else None)
                state[k] = (s.row, meta)
        records: list[ConflictRecord] = []
        merged = 0
        settled: dict[str, list[Key]] = {}
        manual = rules.policy.rule == "manual"
        now = time.time()
        for txn, change, skew in run:
            k = shape.key_of(_image(change))
            if k not in state:
                # A local transaction is in the table already: what the row was
                # before it is its first change's old image, not the table.
                before, text = change.old, stored[k].meta
                state[k] = (before, decode_meta(text, before, rules.delta)
                            if text is not None else None)
            row, meta = state[k]
            version = Version(txn.origin, txn.seq, txn.hlc, txn.deps, change.op,
                              change.new, change.old)
            out = rules.resolve(row, meta, version)
            state[k] = (out.row, out.meta)
            if out.delta_merged:
                if not txn.local:
                    merged += 1  # certain: counted, not logged
            elif manual and out.conflict is None and meta is not None and len(meta.recs) > 1:
                # a version that saw every parked one supersedes them
                settled.setdefault(f"superseded by {txn.origin}/{txn.seq}", []).append(k)
            if out.conflict is not None and not txn.local:
                records.append(ConflictRecord(shape.name, k, txn.seq, out.conflict, now,
                                              skew, shape.columns))
        if first.local:
            # The row still holds this transaction's version when it equals its
            # last image (PostgreSQL: whatever xmin a savepoint gave it).
            last = {shape.key_of(_image(i.change)): i.change.new for i in run}
            for k in keys:
                s = stored[k]
                if s.pending and s.row is not None and s.row == last.get(k):
                    stored[k] = StoredRow(s.row, s.meta, False, s.tag)
        rows: dict[Key, Row | None] = {}
        for k in keys:
            final, _ = state[k]
            if final == stored[k].row:
                continue
            if first.local:  # written back only to this version's row (a delta sum, or a
                # concurrent version the row took while this one was not recorded)
                if stored[k].pending or final is None or stored[k].row is None:
                    continue
            rows[k] = final
        metas = {k: (encode_meta(m, r) if m is not None else None, r is not None)
                 for k, (r, m) in state.items()}
        if rows:
            store.write_rows(shape, rows,
                             frozenset(k for k in rows if stored[k].row is None))
        store.write_versions(shape, metas, stored, set(rows), owner)
        for note, settled_keys in settled.items():
            store.close_parked(shape, settled_keys, note)
        if records:
            store.log_conflicts(records)
            self.conflicts += len(records)
            self.parked += sum(r.conflict.winner == "parked" for r in records)
        return len(records), merged

    def _apply_raw_run(self, store: VersionStore, run: list[_Item],
                       rules: RowRules) -> tuple[int, int]:
        """A run of rows as COPY text: copied in set-wise when the engine can
        and every key is fresh; otherwise decoded and applied as changes."""
        shape, local = rules.shape, run[0].txn.local
        write = getattr(store, "record_raw" if local else "insert_raw", None)
        attempted = (self.fast and not self.adopt_outside and not rules.delta
                     and write is not None)
        if attempted and write is not None:
            blank = (None,) * len(shape.columns)
            texts: dict[int, str] = {}
            items: list[RawItem] = []
            for txn, raw, _ in run:
                assert isinstance(raw, RawInserts)
                text = texts.get(id(txn))
                if text is None:
                    text = texts[id(txn)] = fresh_meta(rules, txn, blank)
                items.append((raw.copy_text, raw.rows, text, txn.xid))
            if write(shape, items):
                self.fresh_rows += sum(n for _, n, _, _ in items)
                return 0, 0
            self.fresh_fallbacks += 1
        decoded = [_Item(i.txn, c, i.skew) for i in run
                   for c in raw_changes(i.change, shape)]  # type: ignore[arg-type]
        return self._apply_run(store, decoded, try_fresh=not attempted) if decoded else (0, 0)


class _Item(NamedTuple):
    txn: TxnInfo
    change: Change
    skew: int


def _image(change: Change) -> Row:
    image = change.new if change.new is not None else change.old
    assert image is not None
    return image


def split_key_changes(changes: Iterable[Change], rules: Mapping[str, RowRules]) -> list[Change]:
    """An update that changes a row's key is a delete of the old key and an
    insert of the new one: versions belong to keys."""
    out: list[Change] = []
    for c in changes:
        if c.op is Op.UPDATE and c.old is not None and c.new is not None:
            shape = rules[c.table].shape
            if shape.key_of(c.old) != shape.key_of(c.new):
                out.append(Change(c.table, Op.DELETE, old=c.old))
                out.append(Change(c.table, Op.INSERT, new=c.new))
                continue
        out.append(c)
    return out
