"""MariaDB values <-> canonical values, by a column's canonical kind and type.

Used by the binlog capture (rows as python-mysql-replication decodes them:
``RowReader.from_binlog``), by reads (rows as pymysql returns them from a
SELECT of ``RowReader.select_list``: ``from_query``) and by apply
(``to_mariadb``). ``column_kind`` says what an information_schema column
means, or refuses it. A table's converters are made once (``RowReader``),
so a row is one pass over a tuple of callables.

Conventions: DATETIME is UTC (sessions run with time_zone '+00:00'); a
FLOAT column's value is the shortest decimal that is the same single
precision number (as PostgreSQL prints a real); a SET is its members
comma-joined in definition order; integers travel as signed 64-bit. A value
that cannot travel (a zero date, a BIGINT UNSIGNED above 2**63-1, a
TINYINT(1) that is not 0 or 1) is refused with BadValue, never altered.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import struct
import uuid
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from functools import lru_cache
from typing import Any

from node.engines.canonical import canonical_decimal, canonical_json
from node.model import Json
from ringsync.errors import EngineError, SchemaError

Reader = Callable[[Any], Any]

INT_MIN, INT_MAX = -(2**63), 2**63 - 1
TEXT_CHARSETS = frozenset({"utf8mb4", "utf8mb3", "utf8", "ascii"})
_KINDS = {
    **dict.fromkeys(("tinyint", "smallint", "mediumint", "int", "bigint", "bit"), "int"),
    "float": "float", "double": "float", "decimal": "decimal",
    **dict.fromkeys(("char", "varchar", "tinytext", "text", "mediumtext", "longtext",
                     "enum", "set"), "text"),
    **dict.fromkeys(("binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"),
                    "bytes"),
    "datetime": "timestamp", "timestamp": "timestamp", "date": "date", "uuid": "uuid",
}
_INSTEAD = {"time": "a VARCHAR(17) or an INT of seconds", "year": "a SMALLINT",
            "geometry": "a LONGBLOB of its WKB (ST_AsBinary)"}
_FIXED_BINARY = re.compile(r"binary\((\d+)\)")
_QUOTED = re.compile(r"'((?:[^']|'')*)'")
_EPOCH = dt.datetime(1970, 1, 1)
_STRICT = ("enable NO_ZERO_DATE, NO_ZERO_IN_DATE and STRICT_TRANS_TABLES in sql_mode so "
           "no new ones are written")


class BadValue(EngineError):
    """A stored value that cannot travel to the other campuses as it is."""

    def __init__(self, table: str, column: str, description: str, fix: str,
                 key: str = "") -> None:
        self.table, self.column, self.description, self.fix, self.key = (
            table, column, description, fix, key)
        row = f" in the row with {key}" if key else ""
        super().__init__(f"column {column!r} of table {table!r}{row} {description}; {fix}")

    def with_key(self, key: str) -> BadValue:
        return BadValue(self.table, self.column, self.description, self.fix, key)


def column_kind(table: str, column: str, data_type: str, column_type: str,
                charset: str | None, is_json: bool) -> str:
    """The canonical kind of an information_schema.COLUMNS column, or SchemaError."""
    data_type, column_type = data_type.lower(), column_type.lower()
    kind = _KINDS.get(data_type)
    if kind is None:
        instead = _INSTEAD.get(data_type, "a supported type")
        raise SchemaError(
            f"column {column!r} of table {table!r} has type {column_type}, which ringsync "
            f"cannot replicate; change it to {instead} on every campus (ALTER TABLE {table} "
            f"MODIFY {column} ...) or remove {table!r} from cluster.tables")
    if kind == "text" and (charset or "").lower() not in TEXT_CHARSETS:
        raise SchemaError(
            f"column {column!r} of table {table!r} is {column_type} in character set "
            f"{charset}; ringsync carries text as UTF-8 and does not convert it: convert the "
            f"table (ALTER TABLE {table} CONVERT TO CHARACTER SET utf8mb4)")
    if column_type.split(" ")[0] == "tinyint(1)":
        return "bool"
    return "json" if is_json and data_type == "longtext" else kind


def set_members(column_type: str) -> tuple[str, ...]:
    """The members of ``set('a','b')`` (or an enum) in definition order."""
    return tuple(m.replace("''", "'") for m in _QUOTED.findall(column_type))


def _float32(v: float) -> float:
    """The shortest decimal that is the same single precision number as ``v``."""
    for digits in range(6, 10):
        short = float(f"{v:.{digits}g}")
        if struct.unpack("<f", struct.pack("<f", short))[0] == v:
            return short
    return v


def _uuid_from_binlog(v: bytes | str) -> uuid.UUID:
    # The binlog carries a UUID in its text (RFC 4122) byte order, not in the
    # swapped order InnoDB stores it in; trailing zero bytes are cut, and the
    # library hands an all-zero UUID over as ''.
    return uuid.UUID(bytes=(v if isinstance(v, bytes) else v.encode()).ljust(16, b"\0"))


class _Column:
    """One column's converters, with the names its errors need."""

    def __init__(self, table: str, column: str, kind: str, column_type: str) -> None:
        self.table, self.column, self.kind = table, column, kind
        self.type = column_type.lower()

    def bad(self, description: str, fix: str) -> BadValue:
        return BadValue(self.table, self.column, description, fix)

    def integer(self, v: int) -> int:
        if INT_MIN <= v <= INT_MAX:
            return v
        raise self.bad(
            f"({self.type}) holds {v}, outside the signed 64-bit range ringsync carries "
            f"({INT_MIN} to {INT_MAX})", f"keep {self.column} within it, or change the column "
            f"to DECIMAL(20,0) on every campus")

    def boolean(self, v: int) -> bool:
        if v == 0 or v == 1:
            return v == 1
        raise self.bad(f"holds {v}, but a TINYINT(1) column carries booleans (0 or 1)",
                       "set it to 0 or 1, or make the column TINYINT on every campus")

    def zero_date(self, what: str) -> BadValue:
        return self.bad(
            f"holds {what}, which is not a valid date on the other engines",
            f"correct the source row (a real date or NULL) and {_STRICT}")

    def timestamp(self, v: Any) -> dt.datetime:
        if not isinstance(v, dt.datetime):
            raise self.zero_date(f"the invalid date {v!r}")
        return v.replace(tzinfo=dt.UTC)

    def date(self, v: Any) -> dt.date:
        if not isinstance(v, dt.date):
            raise self.zero_date(f"the invalid date {v!r}")
        return v

    def readers(self) -> tuple[Reader, Reader]:
        """(from binlog, from query) for a non-NULL value."""
        kind, ctype = self.kind, self.type
        if kind == "int" and ctype.startswith("bit("):
            return (lambda v: self.integer(int(v, 2)),
                    lambda v: self.integer(int.from_bytes(v, "big")))
        if kind == "float" and ctype.startswith("float"):
            return _float32, _float32
        if kind == "text" and ctype.startswith("set("):
            members = set_members(ctype)
            return (lambda v: ",".join(m for m in members if m in v)), str
        if kind == "bytes":
            fixed = _FIXED_BINARY.fullmatch(ctype)  # BINARY(n): the binlog cuts its 0 pad
            pad = int(fixed.group(1)) if fixed else 0
            return ((lambda v: (v if isinstance(v, bytes) else v.encode()).ljust(pad, b"\0")),
                    bytes)
        if kind == "timestamp" and ctype.startswith("timestamp"):
            def zero_checked(v: dt.datetime) -> dt.datetime:
                if v == _EPOCH:  # a zero TIMESTAMP is 0 s; the real epoch is out of range
                    raise self.zero_date("the zero date '0000-00-00 00:00:00'")
                return self.timestamp(v)
            return zero_checked, self.timestamp
        simple: dict[str, tuple[Reader, Reader]] = {
            "int": (self.integer, self.integer),
            "bool": (self.boolean, self.boolean),
            "float": (float, float),
            "decimal": (canonical_decimal, canonical_decimal),
            "text": (str, str),
            "timestamp": (self.timestamp, self.timestamp),
            "date": (self.date, self.date),
            "uuid": (_uuid_from_binlog, uuid.UUID),
            "json": (canonical_json, canonical_json),
        }
        if kind not in simple:
            raise EngineError(f"column {self.column!r} of table {self.table!r} has kind "
                              f"{kind!r}, which the MariaDB engine does not know")
        return simple[kind]

    def none(self, source: str) -> None | str:
        """A value the library decoded as None for a reason other than NULL."""
        if source == "empty set" and self.type.startswith("set("):
            return ""
        if source.startswith("out of"):
            raise self.zero_date("a zero or partly zero date (such as '0000-00-00')")
        raise EngineError(
            f"column {self.column!r} of table {self.table!r} is missing from a binlog row "
            f"({source}): the server must log full row images (binlog_row_image=FULL)")


class RowReader:
    """One table's converters: rows from the binlog or a SELECT as canonical tuples."""

    def __init__(self, table: str, columns: Sequence[str], kinds: Sequence[str],
                 column_types: Sequence[str], key_columns: Sequence[str] = ()) -> None:
        self.table, self.columns, self.key_columns = table, tuple(columns), tuple(key_columns)
        self._cols = tuple(_Column(table, c, k, t)
                           for c, k, t in zip(columns, kinds, column_types, strict=True))
        readers = [c.readers() for c in self._cols]
        self._binlog = tuple((c, r[0]) for c, r in zip(columns, readers, strict=True))
        self._query = tuple(r[1] for r in readers)

    @property
    def select_list(self) -> str:
        """The SELECT list ``from_query`` reads (FLOAT widened to DOUBLE, exactly)."""
        return ", ".join(
            f"CAST({quote(c.column)} AS DOUBLE) AS {quote(c.column)}"
            if c.kind == "float" else quote(c.column) for c in self._cols)

    def from_binlog(self, values: Mapping[str, Any],
                    none_sources: Mapping[str, str]) -> tuple[Any, ...]:
        try:
            return tuple(self._binlog_value(name, read, col, values, none_sources)
                         for (name, read), col in zip(self._binlog, self._cols, strict=True))
        except BadValue as e:
            raise e.with_key(self._key_text(lambda k: values.get(k))) from None

    def from_binlog_lenient(self, values: Mapping[str, Any], none_sources: Mapping[str, str],
                            ) -> tuple[tuple[Any, ...], list[BadValue]]:
        """The row with every value that cannot travel as None, and why each
        could not (empty: the row is whole). For an image that is kept for the
        record or only locates a row, never for one that is written."""
        out: list[Any] = []
        bad: list[BadValue] = []
        for (name, read), col in zip(self._binlog, self._cols, strict=True):
            try:
                out.append(self._binlog_value(name, read, col, values, none_sources))
            except BadValue as e:
                out.append(None)
                bad.append(e.with_key(self._key_text(lambda k: values.get(k))))
        return tuple(out), bad

    def _binlog_value(self, name: str, read: Reader, col: _Column, values: Mapping[str, Any],
                      none_sources: Mapping[str, str]) -> Any:
        """One column of a binlog row as canonical (BadValue when it cannot travel)."""
        try:
            v = values[name]
        except KeyError:
            raise EngineError(
                f"a binlog row of table {self.table!r} has no column {name!r}: the table "
                f"was altered after the node read its shape; restart the node") from None
        if v is not None:
            return read(v)
        source = none_sources.get(name, "null")
        return None if source == "null" else col.none(source)

    def from_query(self, row: Sequence[Any]) -> tuple[Any, ...]:
        try:
            return tuple(None if v is None else read(v)
                         for read, v in zip(self._query, row, strict=True))
        except BadValue as e:
            raise e.with_key(self._key_text(lambda k: row[self.columns.index(k)])) from None

    def _key_text(self, value_of: Callable[[str], Any]) -> str:
        return ", ".join(f"{k}={value_of(k)!r}" for k in self.key_columns)


def quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


@lru_cache(maxsize=512)
def row_reader(table: str, columns: tuple[str, ...], kinds: tuple[str, ...],
               column_types: tuple[str, ...], key_columns: tuple[str, ...] = ()) -> RowReader:
    """A table's RowReader, made once per table shape."""
    return RowReader(table, columns, kinds, column_types, key_columns)


def from_binlog(table: str, shape_kinds: Sequence[str], shape_columns: Sequence[str],
                values: Mapping[str, Any], none_sources: Mapping[str, str],
                column_types: Sequence[str], key_columns: Sequence[str] = ()
                ) -> tuple[Any, ...]:
    """A binlog row (python-mysql-replication's values and none_sources) as canonical
    values in ``shape_columns`` order. Capture should keep a RowReader per table."""
    return row_reader(table, tuple(shape_columns), tuple(shape_kinds), tuple(column_types),
                      tuple(key_columns)).from_binlog(values, none_sources)


def from_query(table: str, shape_kinds: Sequence[str], shape_columns: Sequence[str],
               row: Sequence[Any], column_types: Sequence[str],
               key_columns: Sequence[str] = ()) -> tuple[Any, ...]:
    """A row pymysql read by ``RowReader.select_list`` as canonical values."""
    return row_reader(table, tuple(shape_columns), tuple(shape_kinds), tuple(column_types),
                      tuple(key_columns)).from_query(row)


def to_mariadb(v: Any) -> Any:
    """A canonical value as a pymysql parameter (sessions run in UTC)."""
    if isinstance(v, float) and not math.isfinite(v):
        raise EngineError(f"MariaDB cannot store the float {v!r} (a DOUBLE column holds no "
                          f"infinity or NaN); correct the value at the campus it came from")
    if v is None or isinstance(v, int | float | str | bytes | Decimal):
        return int(v) if isinstance(v, bool) else v
    if isinstance(v, dt.datetime):
        return v.astimezone(dt.UTC).replace(tzinfo=None) if v.tzinfo else v
    if isinstance(v, dt.date):
        return v
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, Json):
        return v.text
    raise EngineError(f"MariaDB cannot store a value of type {type(v).__name__}")
