from ringsync.v1 import replication_pb2 as _replication_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LinkStatus(_message.Message):
    __slots__ = ("to", "state", "lag_transactions", "lag_seconds", "txns_per_second", "rows_per_second", "successor", "error")
    TO_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LAG_TRANSACTIONS_FIELD_NUMBER: _ClassVar[int]
    LAG_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TXNS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    ROWS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    SUCCESSOR_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    to: str
    state: str
    lag_transactions: int
    lag_seconds: float
    txns_per_second: float
    rows_per_second: float
    successor: bool
    error: str
    def __init__(self, to: _Optional[str] = ..., state: _Optional[str] = ..., lag_transactions: _Optional[int] = ..., lag_seconds: _Optional[float] = ..., txns_per_second: _Optional[float] = ..., rows_per_second: _Optional[float] = ..., successor: _Optional[bool] = ..., error: _Optional[str] = ...) -> None: ...

class JoinStatus(_message.Message):
    __slots__ = ("state", "donor", "table", "rows_copied", "rows_total", "rows_per_second", "eta_seconds", "detail")
    STATE_FIELD_NUMBER: _ClassVar[int]
    DONOR_FIELD_NUMBER: _ClassVar[int]
    TABLE_FIELD_NUMBER: _ClassVar[int]
    ROWS_COPIED_FIELD_NUMBER: _ClassVar[int]
    ROWS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    ROWS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    state: str
    donor: str
    table: str
    rows_copied: int
    rows_total: int
    rows_per_second: float
    eta_seconds: float
    detail: str
    def __init__(self, state: _Optional[str] = ..., donor: _Optional[str] = ..., table: _Optional[str] = ..., rows_copied: _Optional[int] = ..., rows_total: _Optional[int] = ..., rows_per_second: _Optional[float] = ..., eta_seconds: _Optional[float] = ..., detail: _Optional[str] = ...) -> None: ...

class NodeStatus(_message.Message):
    __slots__ = ("campus", "address", "engine", "database", "database_healthy", "database_error", "journal_transactions", "journal_bytes", "journal", "applied", "links", "row_counts", "uptime_seconds", "captured_transactions", "applied_transactions", "version", "join", "conflicts", "dead_letters", "accounting", "routing", "durability", "sets", "apply", "refused", "alerts", "verify", "dictionaries", "leaves", "revocations")
    class RowCountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    CAMPUS_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    DATABASE_FIELD_NUMBER: _ClassVar[int]
    DATABASE_HEALTHY_FIELD_NUMBER: _ClassVar[int]
    DATABASE_ERROR_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_TRANSACTIONS_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    LINKS_FIELD_NUMBER: _ClassVar[int]
    ROW_COUNTS_FIELD_NUMBER: _ClassVar[int]
    UPTIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CAPTURED_TRANSACTIONS_FIELD_NUMBER: _ClassVar[int]
    APPLIED_TRANSACTIONS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    JOIN_FIELD_NUMBER: _ClassVar[int]
    CONFLICTS_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTERS_FIELD_NUMBER: _ClassVar[int]
    ACCOUNTING_FIELD_NUMBER: _ClassVar[int]
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    DURABILITY_FIELD_NUMBER: _ClassVar[int]
    SETS_FIELD_NUMBER: _ClassVar[int]
    APPLY_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    VERIFY_FIELD_NUMBER: _ClassVar[int]
    DICTIONARIES_FIELD_NUMBER: _ClassVar[int]
    LEAVES_FIELD_NUMBER: _ClassVar[int]
    REVOCATIONS_FIELD_NUMBER: _ClassVar[int]
    campus: str
    address: str
    engine: str
    database: str
    database_healthy: bool
    database_error: str
    journal_transactions: int
    journal_bytes: int
    journal: _replication_pb2.Vector
    applied: _replication_pb2.Vector
    links: _containers.RepeatedCompositeFieldContainer[LinkStatus]
    row_counts: _containers.ScalarMap[str, int]
    uptime_seconds: float
    captured_transactions: int
    applied_transactions: int
    version: str
    join: JoinStatus
    conflicts: ConflictCounts
    dead_letters: DeadLetterCounts
    accounting: Accounting
    routing: RoutingMap
    durability: str
    sets: str
    apply: ApplyStatus
    refused: RefusedFrames
    alerts: _containers.RepeatedScalarFieldContainer[str]
    verify: VerifySummary
    dictionaries: DictionaryStatus
    leaves: _containers.RepeatedCompositeFieldContainer[LeafStatus]
    revocations: RevocationStatus
    def __init__(self, campus: _Optional[str] = ..., address: _Optional[str] = ..., engine: _Optional[str] = ..., database: _Optional[str] = ..., database_healthy: _Optional[bool] = ..., database_error: _Optional[str] = ..., journal_transactions: _Optional[int] = ..., journal_bytes: _Optional[int] = ..., journal: _Optional[_Union[_replication_pb2.Vector, _Mapping]] = ..., applied: _Optional[_Union[_replication_pb2.Vector, _Mapping]] = ..., links: _Optional[_Iterable[_Union[LinkStatus, _Mapping]]] = ..., row_counts: _Optional[_Mapping[str, int]] = ..., uptime_seconds: _Optional[float] = ..., captured_transactions: _Optional[int] = ..., applied_transactions: _Optional[int] = ..., version: _Optional[str] = ..., join: _Optional[_Union[JoinStatus, _Mapping]] = ..., conflicts: _Optional[_Union[ConflictCounts, _Mapping]] = ..., dead_letters: _Optional[_Union[DeadLetterCounts, _Mapping]] = ..., accounting: _Optional[_Union[Accounting, _Mapping]] = ..., routing: _Optional[_Union[RoutingMap, _Mapping]] = ..., durability: _Optional[str] = ..., sets: _Optional[str] = ..., apply: _Optional[_Union[ApplyStatus, _Mapping]] = ..., refused: _Optional[_Union[RefusedFrames, _Mapping]] = ..., alerts: _Optional[_Iterable[str]] = ..., verify: _Optional[_Union[VerifySummary, _Mapping]] = ..., dictionaries: _Optional[_Union[DictionaryStatus, _Mapping]] = ..., leaves: _Optional[_Iterable[_Union[LeafStatus, _Mapping]]] = ..., revocations: _Optional[_Union[RevocationStatus, _Mapping]] = ...) -> None: ...

class RevocationStatus(_message.Message):
    __slots__ = ("number", "revoked", "issued_at", "error", "certificate_expires_at")
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    number: int
    revoked: int
    issued_at: float
    error: str
    certificate_expires_at: float
    def __init__(self, number: _Optional[int] = ..., revoked: _Optional[int] = ..., issued_at: _Optional[float] = ..., error: _Optional[str] = ..., certificate_expires_at: _Optional[float] = ...) -> None: ...

class RevocationList(_message.Message):
    __slots__ = ("pem",)
    PEM_FIELD_NUMBER: _ClassVar[int]
    pem: bytes
    def __init__(self, pem: _Optional[bytes] = ...) -> None: ...

class LeafStatus(_message.Message):
    __slots__ = ("name", "parent", "online", "last_seen", "lag_transactions", "lag_seconds", "retention_hours", "past_retention", "rows_sent", "rows_filtered", "rows_moved_in", "rows_moved_out", "unjudged", "last_unjudged", "error", "uploads", "blocked", "cascades", "last_cascade")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    ONLINE_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    LAG_TRANSACTIONS_FIELD_NUMBER: _ClassVar[int]
    LAG_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RETENTION_HOURS_FIELD_NUMBER: _ClassVar[int]
    PAST_RETENTION_FIELD_NUMBER: _ClassVar[int]
    ROWS_SENT_FIELD_NUMBER: _ClassVar[int]
    ROWS_FILTERED_FIELD_NUMBER: _ClassVar[int]
    ROWS_MOVED_IN_FIELD_NUMBER: _ClassVar[int]
    ROWS_MOVED_OUT_FIELD_NUMBER: _ClassVar[int]
    UNJUDGED_FIELD_NUMBER: _ClassVar[int]
    LAST_UNJUDGED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    UPLOADS_FIELD_NUMBER: _ClassVar[int]
    BLOCKED_FIELD_NUMBER: _ClassVar[int]
    CASCADES_FIELD_NUMBER: _ClassVar[int]
    LAST_CASCADE_FIELD_NUMBER: _ClassVar[int]
    name: str
    parent: str
    online: bool
    last_seen: float
    lag_transactions: int
    lag_seconds: float
    retention_hours: float
    past_retention: bool
    rows_sent: int
    rows_filtered: int
    rows_moved_in: int
    rows_moved_out: int
    unjudged: int
    last_unjudged: str
    error: str
    uploads: bool
    blocked: bool
    cascades: int
    last_cascade: str
    def __init__(self, name: _Optional[str] = ..., parent: _Optional[str] = ..., online: _Optional[bool] = ..., last_seen: _Optional[float] = ..., lag_transactions: _Optional[int] = ..., lag_seconds: _Optional[float] = ..., retention_hours: _Optional[float] = ..., past_retention: _Optional[bool] = ..., rows_sent: _Optional[int] = ..., rows_filtered: _Optional[int] = ..., rows_moved_in: _Optional[int] = ..., rows_moved_out: _Optional[int] = ..., unjudged: _Optional[int] = ..., last_unjudged: _Optional[str] = ..., error: _Optional[str] = ..., uploads: _Optional[bool] = ..., blocked: _Optional[bool] = ..., cascades: _Optional[int] = ..., last_cascade: _Optional[str] = ...) -> None: ...

class DictionaryStatus(_message.Message):
    __slots__ = ("table", "columns", "entries", "unmapped_captured", "last_unmapped", "parked", "last_parked", "map_errors")
    TABLE_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    UNMAPPED_CAPTURED_FIELD_NUMBER: _ClassVar[int]
    LAST_UNMAPPED_FIELD_NUMBER: _ClassVar[int]
    PARKED_FIELD_NUMBER: _ClassVar[int]
    LAST_PARKED_FIELD_NUMBER: _ClassVar[int]
    MAP_ERRORS_FIELD_NUMBER: _ClassVar[int]
    table: str
    columns: _containers.RepeatedScalarFieldContainer[str]
    entries: int
    unmapped_captured: int
    last_unmapped: str
    parked: int
    last_parked: str
    map_errors: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, table: _Optional[str] = ..., columns: _Optional[_Iterable[str]] = ..., entries: _Optional[int] = ..., unmapped_captured: _Optional[int] = ..., last_unmapped: _Optional[str] = ..., parked: _Optional[int] = ..., last_parked: _Optional[str] = ..., map_errors: _Optional[_Iterable[str]] = ...) -> None: ...

class VerifySummary(_message.Message):
    __slots__ = ("scheduled", "last_at", "coordinator", "consistent", "diverged", "in_flight", "campuses_failed", "next_due", "running", "error")
    SCHEDULED_FIELD_NUMBER: _ClassVar[int]
    LAST_AT_FIELD_NUMBER: _ClassVar[int]
    COORDINATOR_FIELD_NUMBER: _ClassVar[int]
    CONSISTENT_FIELD_NUMBER: _ClassVar[int]
    DIVERGED_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    CAMPUSES_FAILED_FIELD_NUMBER: _ClassVar[int]
    NEXT_DUE_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    scheduled: bool
    last_at: float
    coordinator: str
    consistent: bool
    diverged: int
    in_flight: int
    campuses_failed: _containers.RepeatedScalarFieldContainer[str]
    next_due: float
    running: bool
    error: str
    def __init__(self, scheduled: _Optional[bool] = ..., last_at: _Optional[float] = ..., coordinator: _Optional[str] = ..., consistent: _Optional[bool] = ..., diverged: _Optional[int] = ..., in_flight: _Optional[int] = ..., campuses_failed: _Optional[_Iterable[str]] = ..., next_due: _Optional[float] = ..., running: _Optional[bool] = ..., error: _Optional[str] = ...) -> None: ...

class ApplyStatus(_message.Message):
    __slots__ = ("state", "waiting_for", "since", "alert", "transient_retries", "isolations", "incomplete_transactions", "oldest_incomplete_seconds", "recorded", "last_error", "fast_apply", "fresh_rows", "fresh_fallbacks", "outside_changes")
    STATE_FIELD_NUMBER: _ClassVar[int]
    WAITING_FOR_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    ALERT_FIELD_NUMBER: _ClassVar[int]
    TRANSIENT_RETRIES_FIELD_NUMBER: _ClassVar[int]
    ISOLATIONS_FIELD_NUMBER: _ClassVar[int]
    INCOMPLETE_TRANSACTIONS_FIELD_NUMBER: _ClassVar[int]
    OLDEST_INCOMPLETE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RECORDED_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    FAST_APPLY_FIELD_NUMBER: _ClassVar[int]
    FRESH_ROWS_FIELD_NUMBER: _ClassVar[int]
    FRESH_FALLBACKS_FIELD_NUMBER: _ClassVar[int]
    OUTSIDE_CHANGES_FIELD_NUMBER: _ClassVar[int]
    state: str
    waiting_for: str
    since: float
    alert: str
    transient_retries: int
    isolations: int
    incomplete_transactions: int
    oldest_incomplete_seconds: float
    recorded: _replication_pb2.Vector
    last_error: str
    fast_apply: bool
    fresh_rows: int
    fresh_fallbacks: int
    outside_changes: int
    def __init__(self, state: _Optional[str] = ..., waiting_for: _Optional[str] = ..., since: _Optional[float] = ..., alert: _Optional[str] = ..., transient_retries: _Optional[int] = ..., isolations: _Optional[int] = ..., incomplete_transactions: _Optional[int] = ..., oldest_incomplete_seconds: _Optional[float] = ..., recorded: _Optional[_Union[_replication_pb2.Vector, _Mapping]] = ..., last_error: _Optional[str] = ..., fast_apply: _Optional[bool] = ..., fresh_rows: _Optional[int] = ..., fresh_fallbacks: _Optional[int] = ..., outside_changes: _Optional[int] = ...) -> None: ...

class RefusedFrames(_message.Message):
    __slots__ = ("by_kind", "total", "last")
    class ByKindEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    BY_KIND_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    by_kind: _containers.ScalarMap[str, int]
    total: int
    last: str
    def __init__(self, by_kind: _Optional[_Mapping[str, int]] = ..., total: _Optional[int] = ..., last: _Optional[str] = ...) -> None: ...

class Route(_message.Message):
    __slots__ = ("campus", "serving", "state", "epoch", "reason", "since", "target", "writer_epoch")
    CAMPUS_FIELD_NUMBER: _ClassVar[int]
    SERVING_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    WRITER_EPOCH_FIELD_NUMBER: _ClassVar[int]
    campus: str
    serving: str
    state: str
    epoch: int
    reason: str
    since: float
    target: str
    writer_epoch: int
    def __init__(self, campus: _Optional[str] = ..., serving: _Optional[str] = ..., state: _Optional[str] = ..., epoch: _Optional[int] = ..., reason: _Optional[str] = ..., since: _Optional[float] = ..., target: _Optional[str] = ..., writer_epoch: _Optional[int] = ...) -> None: ...

class RoutesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RoutingMap(_message.Message):
    __slots__ = ("dr_enabled", "node", "leader", "lease_ok", "routes", "error", "writable_until", "serving")
    DR_ENABLED_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    LEADER_FIELD_NUMBER: _ClassVar[int]
    LEASE_OK_FIELD_NUMBER: _ClassVar[int]
    ROUTES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    WRITABLE_UNTIL_FIELD_NUMBER: _ClassVar[int]
    SERVING_FIELD_NUMBER: _ClassVar[int]
    dr_enabled: bool
    node: str
    leader: str
    lease_ok: bool
    routes: _containers.RepeatedCompositeFieldContainer[Route]
    error: str
    writable_until: float
    serving: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, dr_enabled: _Optional[bool] = ..., node: _Optional[str] = ..., leader: _Optional[str] = ..., lease_ok: _Optional[bool] = ..., routes: _Optional[_Iterable[_Union[Route, _Mapping]]] = ..., error: _Optional[str] = ..., writable_until: _Optional[float] = ..., serving: _Optional[_Iterable[str]] = ...) -> None: ...

class Accounting(_message.Message):
    __slots__ = ("received", "applied", "dead_lettered", "in_flight", "balanced")
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTERED_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    BALANCED_FIELD_NUMBER: _ClassVar[int]
    received: int
    applied: int
    dead_lettered: int
    in_flight: int
    balanced: bool
    def __init__(self, received: _Optional[int] = ..., applied: _Optional[int] = ..., dead_lettered: _Optional[int] = ..., in_flight: _Optional[int] = ..., balanced: _Optional[bool] = ...) -> None: ...

class DeadLetterCounts(_message.Message):
    __slots__ = ("parked", "applied", "skipped", "rejected")
    PARKED_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    parked: int
    applied: int
    skipped: int
    rejected: int
    def __init__(self, parked: _Optional[int] = ..., applied: _Optional[int] = ..., skipped: _Optional[int] = ..., rejected: _Optional[int] = ...) -> None: ...

class ConflictCounts(_message.Message):
    __slots__ = ("logged", "parked", "flagged", "policies", "delta_merged")
    LOGGED_FIELD_NUMBER: _ClassVar[int]
    PARKED_FIELD_NUMBER: _ClassVar[int]
    FLAGGED_FIELD_NUMBER: _ClassVar[int]
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    DELTA_MERGED_FIELD_NUMBER: _ClassVar[int]
    logged: int
    parked: int
    flagged: int
    policies: str
    delta_merged: int
    def __init__(self, logged: _Optional[int] = ..., parked: _Optional[int] = ..., flagged: _Optional[int] = ..., policies: _Optional[str] = ..., delta_merged: _Optional[int] = ...) -> None: ...

class ConflictsRequest(_message.Message):
    __slots__ = ("table", "campus", "since", "limit", "id", "state")
    TABLE_FIELD_NUMBER: _ClassVar[int]
    CAMPUS_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    table: str
    campus: str
    since: float
    limit: int
    id: int
    state: str
    def __init__(self, table: _Optional[str] = ..., campus: _Optional[str] = ..., since: _Optional[float] = ..., limit: _Optional[int] = ..., id: _Optional[int] = ..., state: _Optional[str] = ...) -> None: ...

class ConflictEntry(_message.Message):
    __slots__ = ("id", "at", "table", "key", "kind", "rule", "winner", "local_origin", "local_hlc", "remote_origin", "remote_seq", "remote_hlc", "local_row", "remote_row", "skew_ms", "state", "resolution")
    ID_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    TABLE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    WINNER_FIELD_NUMBER: _ClassVar[int]
    LOCAL_ORIGIN_FIELD_NUMBER: _ClassVar[int]
    LOCAL_HLC_FIELD_NUMBER: _ClassVar[int]
    REMOTE_ORIGIN_FIELD_NUMBER: _ClassVar[int]
    REMOTE_SEQ_FIELD_NUMBER: _ClassVar[int]
    REMOTE_HLC_FIELD_NUMBER: _ClassVar[int]
    LOCAL_ROW_FIELD_NUMBER: _ClassVar[int]
    REMOTE_ROW_FIELD_NUMBER: _ClassVar[int]
    SKEW_MS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    id: int
    at: float
    table: str
    key: str
    kind: str
    rule: str
    winner: str
    local_origin: str
    local_hlc: int
    remote_origin: str
    remote_seq: int
    remote_hlc: int
    local_row: str
    remote_row: str
    skew_ms: int
    state: str
    resolution: str
    def __init__(self, id: _Optional[int] = ..., at: _Optional[float] = ..., table: _Optional[str] = ..., key: _Optional[str] = ..., kind: _Optional[str] = ..., rule: _Optional[str] = ..., winner: _Optional[str] = ..., local_origin: _Optional[str] = ..., local_hlc: _Optional[int] = ..., remote_origin: _Optional[str] = ..., remote_seq: _Optional[int] = ..., remote_hlc: _Optional[int] = ..., local_row: _Optional[str] = ..., remote_row: _Optional[str] = ..., skew_ms: _Optional[int] = ..., state: _Optional[str] = ..., resolution: _Optional[str] = ...) -> None: ...

class ConflictsResponse(_message.Message):
    __slots__ = ("campus", "conflicts")
    CAMPUS_FIELD_NUMBER: _ClassVar[int]
    CONFLICTS_FIELD_NUMBER: _ClassVar[int]
    campus: str
    conflicts: _containers.RepeatedCompositeFieldContainer[ConflictEntry]
    def __init__(self, campus: _Optional[str] = ..., conflicts: _Optional[_Iterable[_Union[ConflictEntry, _Mapping]]] = ...) -> None: ...

class ResolveConflictRequest(_message.Message):
    __slots__ = ("id", "take")
    ID_FIELD_NUMBER: _ClassVar[int]
    TAKE_FIELD_NUMBER: _ClassVar[int]
    id: int
    take: str
    def __init__(self, id: _Optional[int] = ..., take: _Optional[str] = ...) -> None: ...

class ResolveConflictResponse(_message.Message):
    __slots__ = ("campus", "table", "key", "row")
    CAMPUS_FIELD_NUMBER: _ClassVar[int]
    TABLE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    ROW_FIELD_NUMBER: _ClassVar[int]
    campus: str
    table: str
    key: str
    row: str
    def __init__(self, campus: _Optional[str] = ..., table: _Optional[str] = ..., key: _Optional[str] = ..., row: _Optional[str] = ...) -> None: ...

class ChecksumRequest(_message.Message):
    __slots__ = ("tables",)
    TABLES_FIELD_NUMBER: _ClassVar[int]
    tables: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tables: _Optional[_Iterable[str]] = ...) -> None: ...

class TableChecksum(_message.Message):
    __slots__ = ("table", "rows", "sha256")
    TABLE_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    table: str
    rows: int
    sha256: str
    def __init__(self, table: _Optional[str] = ..., rows: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class ChecksumResponse(_message.Message):
    __slots__ = ("campus", "tables", "applied")
    CAMPUS_FIELD_NUMBER: _ClassVar[int]
    TABLES_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    campus: str
    tables: _containers.RepeatedCompositeFieldContainer[TableChecksum]
    applied: _replication_pb2.Vector
    def __init__(self, campus: _Optional[str] = ..., tables: _Optional[_Iterable[_Union[TableChecksum, _Mapping]]] = ..., applied: _Optional[_Union[_replication_pb2.Vector, _Mapping]] = ...) -> None: ...

class VerifyRequest(_message.Message):
    __slots__ = ("table", "bits", "buckets", "incremental", "route")
    TABLE_FIELD_NUMBER: _ClassVar[int]
    BITS_FIELD_NUMBER: _ClassVar[int]
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    INCREMENTAL_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    table: str
    bits: int
    buckets: _containers.RepeatedScalarFieldContainer[int]
    incremental: bool
    route: str
    def __init__(self, table: _Optional[str] = ..., bits: _Optional[int] = ..., buckets: _Optional[_Iterable[int]] = ..., incremental: _Optional[bool] = ..., route: _Optional[str] = ...) -> None: ...

class BucketDigest(_message.Message):
    __slots__ = ("bucket", "rows", "digest")
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    bucket: int
    rows: int
    digest: bytes
    def __init__(self, bucket: _Optional[int] = ..., rows: _Optional[int] = ..., digest: _Optional[bytes] = ...) -> None: ...

class RowDigest(_message.Message):
    __slots__ = ("key", "bucket", "digest", "key_json")
    KEY_FIELD_NUMBER: _ClassVar[int]
    BUCKET_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    KEY_JSON_FIELD_NUMBER: _ClassVar[int]
    key: str
    bucket: int
    digest: bytes
    key_json: str
    def __init__(self, key: _Optional[str] = ..., bucket: _Optional[int] = ..., digest: _Optional[bytes] = ..., key_json: _Optional[str] = ...) -> None: ...

class VerifyResponse(_message.Message):
    __slots__ = ("campus", "table", "bits", "applied", "journal", "buckets", "rows", "seconds", "mode", "drift")
    CAMPUS_FIELD_NUMBER: _ClassVar[int]
    TABLE_FIELD_NUMBER: _ClassVar[int]
    BITS_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_FIELD_NUMBER: _ClassVar[int]
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    DRIFT_FIELD_NUMBER: _ClassVar[int]
    campus: str
    table: str
    bits: int
    applied: _replication_pb2.Vector
    journal: _replication_pb2.Vector
    buckets: _containers.RepeatedCompositeFieldContainer[BucketDigest]
    rows: _containers.RepeatedCompositeFieldContainer[RowDigest]
    seconds: float
    mode: str
    drift: bool
    def __init__(self, campus: _Optional[str] = ..., table: _Optional[str] = ..., bits: _Optional[int] = ..., applied: _Optional[_Union[_replication_pb2.Vector, _Mapping]] = ..., journal: _Optional[_Union[_replication_pb2.Vector, _Mapping]] = ..., buckets: _Optional[_Iterable[_Union[BucketDigest, _Mapping]]] = ..., rows: _Optional[_Iterable[_Union[RowDigest, _Mapping]]] = ..., seconds: _Optional[float] = ..., mode: _Optional[str] = ..., drift: _Optional[bool] = ...) -> None: ...

class RepairRequest(_message.Message):
    __slots__ = ("table", "key", "action")
    TABLE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    table: str
    key: str
    action: str
    def __init__(self, table: _Optional[str] = ..., key: _Optional[str] = ..., action: _Optional[str] = ...) -> None: ...

class RepairResponse(_message.Message):
    __slots__ = ("campus", "table", "key", "row", "recorded", "rank", "hlc", "origin")
    CAMPUS_FIELD_NUMBER: _ClassVar[int]
    TABLE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    ROW_FIELD_NUMBER: _ClassVar[int]
    RECORDED_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    HLC_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    campus: str
    table: str
    key: str
    row: str
    recorded: bool
    rank: int
    hlc: int
    origin: str
    def __init__(self, campus: _Optional[str] = ..., table: _Optional[str] = ..., key: _Optional[str] = ..., row: _Optional[str] = ..., recorded: _Optional[bool] = ..., rank: _Optional[int] = ..., hlc: _Optional[int] = ..., origin: _Optional[str] = ...) -> None: ...

class VerificationReport(_message.Message):
    __slots__ = ("json",)
    JSON_FIELD_NUMBER: _ClassVar[int]
    json: str
    def __init__(self, json: _Optional[str] = ...) -> None: ...

class RecordVerificationResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VerificationsRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class VerificationsResponse(_message.Message):
    __slots__ = ("campus", "reports")
    CAMPUS_FIELD_NUMBER: _ClassVar[int]
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    campus: str
    reports: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, campus: _Optional[str] = ..., reports: _Optional[_Iterable[str]] = ...) -> None: ...

class DeadLettersRequest(_message.Message):
    __slots__ = ("id", "table", "state", "limit")
    ID_FIELD_NUMBER: _ClassVar[int]
    TABLE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    id: int
    table: str
    state: str
    limit: int
    def __init__(self, id: _Optional[int] = ..., table: _Optional[str] = ..., state: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class DeadLetter(_message.Message):
    __slots__ = ("id", "at", "origin", "seq", "table", "key", "op", "error", "attempts", "state", "actions", "row")
    ID_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TABLE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    ROW_FIELD_NUMBER: _ClassVar[int]
    id: int
    at: float
    origin: str
    seq: int
    table: str
    key: str
    op: str
    error: str
    attempts: int
    state: str
    actions: str
    row: str
    def __init__(self, id: _Optional[int] = ..., at: _Optional[float] = ..., origin: _Optional[str] = ..., seq: _Optional[int] = ..., table: _Optional[str] = ..., key: _Optional[str] = ..., op: _Optional[str] = ..., error: _Optional[str] = ..., attempts: _Optional[int] = ..., state: _Optional[str] = ..., actions: _Optional[str] = ..., row: _Optional[str] = ...) -> None: ...

class DeadLettersResponse(_message.Message):
    __slots__ = ("campus", "entries")
    CAMPUS_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    campus: str
    entries: _containers.RepeatedCompositeFieldContainer[DeadLetter]
    def __init__(self, campus: _Optional[str] = ..., entries: _Optional[_Iterable[_Union[DeadLetter, _Mapping]]] = ...) -> None: ...

class DeadLetterAction(_message.Message):
    __slots__ = ("id", "action")
    ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    id: int
    action: str
    def __init__(self, id: _Optional[int] = ..., action: _Optional[str] = ...) -> None: ...

class DeadLetterActionResult(_message.Message):
    __slots__ = ("campus", "outcome")
    CAMPUS_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    campus: str
    outcome: str
    def __init__(self, campus: _Optional[str] = ..., outcome: _Optional[str] = ...) -> None: ...
