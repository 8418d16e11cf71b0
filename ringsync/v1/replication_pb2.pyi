from ringsync.v1 import values_pb2 as _values_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Vector(_message.Message):
    __slots__ = ("seqs",)
    class SeqsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    SEQS_FIELD_NUMBER: _ClassVar[int]
    seqs: _containers.ScalarMap[str, int]
    def __init__(self, seqs: _Optional[_Mapping[str, int]] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("campus", "cluster", "protocol_version", "tables")
    CAMPUS_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    TABLES_FIELD_NUMBER: _ClassVar[int]
    campus: str
    cluster: str
    protocol_version: int
    tables: _containers.RepeatedCompositeFieldContainer[_values_pb2.TableShape]
    def __init__(self, campus: _Optional[str] = ..., cluster: _Optional[str] = ..., protocol_version: _Optional[int] = ..., tables: _Optional[_Iterable[_Union[_values_pb2.TableShape, _Mapping]]] = ...) -> None: ...

class Batch(_message.Message):
    __slots__ = ("batch_id", "frames")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    frames: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, batch_id: _Optional[int] = ..., frames: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ReplicateRequest(_message.Message):
    __slots__ = ("hello", "batch")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    batch: Batch
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., batch: _Optional[_Union[Batch, _Mapping]] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("campus", "journal")
    CAMPUS_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_FIELD_NUMBER: _ClassVar[int]
    campus: str
    journal: Vector
    def __init__(self, campus: _Optional[str] = ..., journal: _Optional[_Union[Vector, _Mapping]] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("batch_id", "journal", "applied", "known")
    class KnownEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Vector
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Vector, _Mapping]] = ...) -> None: ...
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    KNOWN_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    journal: Vector
    applied: Vector
    known: _containers.MessageMap[str, Vector]
    def __init__(self, batch_id: _Optional[int] = ..., journal: _Optional[_Union[Vector, _Mapping]] = ..., applied: _Optional[_Union[Vector, _Mapping]] = ..., known: _Optional[_Mapping[str, Vector]] = ...) -> None: ...

class ReplicateResponse(_message.Message):
    __slots__ = ("welcome", "ack")
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    welcome: Welcome
    ack: Ack
    def __init__(self, welcome: _Optional[_Union[Welcome, _Mapping]] = ..., ack: _Optional[_Union[Ack, _Mapping]] = ...) -> None: ...

class SnapshotRequest(_message.Message):
    __slots__ = ("campus", "tables", "digests_only", "route")
    CAMPUS_FIELD_NUMBER: _ClassVar[int]
    TABLES_FIELD_NUMBER: _ClassVar[int]
    DIGESTS_ONLY_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    campus: str
    tables: _containers.RepeatedCompositeFieldContainer[_values_pb2.TableShape]
    digests_only: bool
    route: str
    def __init__(self, campus: _Optional[str] = ..., tables: _Optional[_Iterable[_Union[_values_pb2.TableShape, _Mapping]]] = ..., digests_only: _Optional[bool] = ..., route: _Optional[str] = ...) -> None: ...

class SnapshotHeader(_message.Message):
    __slots__ = ("donor", "vector", "row_counts")
    class RowCountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    DONOR_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    ROW_COUNTS_FIELD_NUMBER: _ClassVar[int]
    donor: str
    vector: Vector
    row_counts: _containers.ScalarMap[str, int]
    def __init__(self, donor: _Optional[str] = ..., vector: _Optional[_Union[Vector, _Mapping]] = ..., row_counts: _Optional[_Mapping[str, int]] = ...) -> None: ...

class TableDigest(_message.Message):
    __slots__ = ("table", "rows", "sha256")
    TABLE_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    table: str
    rows: int
    sha256: str
    def __init__(self, table: _Optional[str] = ..., rows: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class SnapshotChunk(_message.Message):
    __slots__ = ("header", "frame", "digest", "journal_frame")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_FRAME_FIELD_NUMBER: _ClassVar[int]
    header: SnapshotHeader
    frame: bytes
    digest: TableDigest
    journal_frame: bytes
    def __init__(self, header: _Optional[_Union[SnapshotHeader, _Mapping]] = ..., frame: _Optional[bytes] = ..., digest: _Optional[_Union[TableDigest, _Mapping]] = ..., journal_frame: _Optional[bytes] = ...) -> None: ...

class FollowHello(_message.Message):
    __slots__ = ("campus", "cluster", "protocol_version", "tables", "journal", "route")
    CAMPUS_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    TABLES_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    campus: str
    cluster: str
    protocol_version: int
    tables: _containers.RepeatedCompositeFieldContainer[_values_pb2.TableShape]
    journal: Vector
    route: str
    def __init__(self, campus: _Optional[str] = ..., cluster: _Optional[str] = ..., protocol_version: _Optional[int] = ..., tables: _Optional[_Iterable[_Union[_values_pb2.TableShape, _Mapping]]] = ..., journal: _Optional[_Union[Vector, _Mapping]] = ..., route: _Optional[str] = ...) -> None: ...

class FollowRequest(_message.Message):
    __slots__ = ("hello", "ack")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    hello: FollowHello
    ack: Ack
    def __init__(self, hello: _Optional[_Union[FollowHello, _Mapping]] = ..., ack: _Optional[_Union[Ack, _Mapping]] = ...) -> None: ...

class FollowResponse(_message.Message):
    __slots__ = ("welcome", "batch")
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    welcome: Welcome
    batch: Batch
    def __init__(self, welcome: _Optional[_Union[Welcome, _Mapping]] = ..., batch: _Optional[_Union[Batch, _Mapping]] = ...) -> None: ...
