from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Value(_message.Message):
    __slots__ = ("is_null", "bool_value", "int_value", "decimal_value", "float_value", "text_value", "bytes_value", "timestamp_micros", "date_days", "uuid_value", "json_value")
    IS_NULL_FIELD_NUMBER: _ClassVar[int]
    BOOL_VALUE_FIELD_NUMBER: _ClassVar[int]
    INT_VALUE_FIELD_NUMBER: _ClassVar[int]
    DECIMAL_VALUE_FIELD_NUMBER: _ClassVar[int]
    FLOAT_VALUE_FIELD_NUMBER: _ClassVar[int]
    TEXT_VALUE_FIELD_NUMBER: _ClassVar[int]
    BYTES_VALUE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MICROS_FIELD_NUMBER: _ClassVar[int]
    DATE_DAYS_FIELD_NUMBER: _ClassVar[int]
    UUID_VALUE_FIELD_NUMBER: _ClassVar[int]
    JSON_VALUE_FIELD_NUMBER: _ClassVar[int]
    is_null: bool
    bool_value: bool
    int_value: int
    decimal_value: str
    float_value: float
    text_value: str
    bytes_value: bytes
    timestamp_micros: int
    date_days: int
    uuid_value: bytes
    json_value: str
    def __init__(self, is_null: _Optional[bool] = ..., bool_value: _Optional[bool] = ..., int_value: _Optional[int] = ..., decimal_value: _Optional[str] = ..., float_value: _Optional[float] = ..., text_value: _Optional[str] = ..., bytes_value: _Optional[bytes] = ..., timestamp_micros: _Optional[int] = ..., date_days: _Optional[int] = ..., uuid_value: _Optional[bytes] = ..., json_value: _Optional[str] = ...) -> None: ...

class TableShape(_message.Message):
    __slots__ = ("name", "columns", "key_indexes", "column_kinds")
    NAME_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    KEY_INDEXES_FIELD_NUMBER: _ClassVar[int]
    COLUMN_KINDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    columns: _containers.RepeatedScalarFieldContainer[str]
    key_indexes: _containers.RepeatedScalarFieldContainer[int]
    column_kinds: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., columns: _Optional[_Iterable[str]] = ..., key_indexes: _Optional[_Iterable[int]] = ..., column_kinds: _Optional[_Iterable[str]] = ...) -> None: ...

class RowChange(_message.Message):
    __slots__ = ("table_index", "op", "new_values", "old_values")
    class Op(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        OP_UNSPECIFIED: _ClassVar[RowChange.Op]
        INSERT: _ClassVar[RowChange.Op]
        UPDATE: _ClassVar[RowChange.Op]
        DELETE: _ClassVar[RowChange.Op]
    OP_UNSPECIFIED: RowChange.Op
    INSERT: RowChange.Op
    UPDATE: RowChange.Op
    DELETE: RowChange.Op
    TABLE_INDEX_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    NEW_VALUES_FIELD_NUMBER: _ClassVar[int]
    OLD_VALUES_FIELD_NUMBER: _ClassVar[int]
    table_index: int
    op: RowChange.Op
    new_values: _containers.RepeatedCompositeFieldContainer[Value]
    old_values: _containers.RepeatedCompositeFieldContainer[Value]
    def __init__(self, table_index: _Optional[int] = ..., op: _Optional[_Union[RowChange.Op, str]] = ..., new_values: _Optional[_Iterable[_Union[Value, _Mapping]]] = ..., old_values: _Optional[_Iterable[_Union[Value, _Mapping]]] = ...) -> None: ...

class TxnFrame(_message.Message):
    __slots__ = ("origin", "seq", "chunk", "final", "commit_time", "hlc", "tables", "changes", "deps", "set_epochs", "raw_inserts")
    class DepsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class SetEpochsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    COMMIT_TIME_FIELD_NUMBER: _ClassVar[int]
    HLC_FIELD_NUMBER: _ClassVar[int]
    TABLES_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    DEPS_FIELD_NUMBER: _ClassVar[int]
    SET_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    RAW_INSERTS_FIELD_NUMBER: _ClassVar[int]
    origin: str
    seq: int
    chunk: int
    final: bool
    commit_time: float
    hlc: int
    tables: _containers.RepeatedCompositeFieldContainer[TableShape]
    changes: _containers.RepeatedCompositeFieldContainer[RowChange]
    deps: _containers.ScalarMap[str, int]
    set_epochs: _containers.ScalarMap[str, int]
    raw_inserts: _containers.RepeatedCompositeFieldContainer[RawRun]
    def __init__(self, origin: _Optional[str] = ..., seq: _Optional[int] = ..., chunk: _Optional[int] = ..., final: _Optional[bool] = ..., commit_time: _Optional[float] = ..., hlc: _Optional[int] = ..., tables: _Optional[_Iterable[_Union[TableShape, _Mapping]]] = ..., changes: _Optional[_Iterable[_Union[RowChange, _Mapping]]] = ..., deps: _Optional[_Mapping[str, int]] = ..., set_epochs: _Optional[_Mapping[str, int]] = ..., raw_inserts: _Optional[_Iterable[_Union[RawRun, _Mapping]]] = ...) -> None: ...

class RawRun(_message.Message):
    __slots__ = ("table_index", "rows", "copy_text")
    TABLE_INDEX_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COPY_TEXT_FIELD_NUMBER: _ClassVar[int]
    table_index: int
    rows: int
    copy_text: bytes
    def __init__(self, table_index: _Optional[int] = ..., rows: _Optional[int] = ..., copy_text: _Optional[bytes] = ...) -> None: ...
