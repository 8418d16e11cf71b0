"""MariaDB values <-> canonical values (node.engines.mariadb.values) and table
shapes (node.engines.mariadb.shapes) against a real server: canonical rows
written with to_mariadb come back equal through a SELECT (from_query) and
through the binary log as python-mysql-replication decodes it (from_binlog);
values that cannot travel are refused by name."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pymysql
import pytest
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.row_event import WriteRowsEvent

from node.engines.mariadb.shapes import MariaTable, read_shapes, read_tables
from node.engines.mariadb.values import BadValue, RowReader, column_kind, to_mariadb
from node.model import Json
from ringsync.commands.demo import mariadb
from ringsync.errors import EngineError, SchemaError
from tests.mariadb_fixtures import connect

UTC = dt.UTC
EVERY = """CREATE TABLE every (
  id INT PRIMARY KEY, flag BOOLEAN, tiny TINYINT, small SMALLINT, medium MEDIUMINT UNSIGNED,
  i INT, big BIGINT, ubig BIGINT UNSIGNED, bits BIT(5), bits64 BIT(64),
  f FLOAT, d DOUBLE, amount DECIMAL(30,10),
  c CHAR(8), vc VARCHAR(40), tx TEXT, mtx MEDIUMTEXT,
  plain VARCHAR(10) CHARACTER SET ascii, mb3 VARCHAR(10) CHARACTER SET utf8mb3,
  e ENUM('small','médium','large'), s SET('x','y','z','it''s'),
  bn BINARY(4), vb VARBINARY(16), bl BLOB,
  created DATETIME(6), seen TIMESTAMP(6) NULL, day DATE, u UUID, doc JSON
) ENGINE=InnoDB"""
COLUMNS = ("id", "flag", "tiny", "small", "medium", "i", "big", "ubig", "bits", "bits64",
           "f", "d", "amount", "c", "vc", "tx", "mtx", "plain", "mb3", "e", "s",
           "bn", "vb", "bl", "created", "seen", "day", "u", "doc")
KINDS = ("int", "bool", "int", "int", "int", "int", "int", "int", "int", "int",
         "float", "float", "decimal", "text", "text", "text", "text", "text", "text", "text",
         "text", "bytes", "bytes", "bytes", "timestamp", "timestamp", "date", "uuid", "json")
ROWS: list[tuple[Any, ...]] = [
    (1, True, -128, 32767, 16777215, -2**31, -2**63, 2**63 - 1, 0b10101, 2**63 - 1,
     0.1, 0.1, Decimal("-12345678901234567890.0123456789"), "abc", "é😀 naïve", "línea\nnueva",
     "ü" * 300, "plain", "ñandú", "médium", "x,it's", b"\x00\x01\x00\x00", b"\x00ab\x00",
     bytes(range(256)), dt.datetime(2024, 2, 29, 23, 59, 59, 999999, UTC),
     dt.datetime(2038, 1, 19, 3, 14, 7, 999999, UTC), dt.date(1000, 1, 1), uuid.uuid1(),
     Json('{"a":"é","b":[1,2,{"z":null}]}')),
    (2,) + (None,) * 28,
    (3, False, 127, -32768, 0, 2**31 - 1, 2**63 - 1, 0, 0, 0, -2.5, -1.7976931348623157e308,
     Decimal("99999999999999999999.9999999999"), "", "", "", "", "", "", "large", "",
     b"\xff\xff\xff\xff", b"", b"", dt.datetime(1970, 1, 1, tzinfo=UTC),
     dt.datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC), dt.date(9999, 12, 31),
     uuid.UUID(int=0), Json("[]")),
    (4, True, 0, 0, 1, 0, 1, 1, 1, 1, 3.14159, 1e-300, Decimal("-0.0000000001"), "x y",
     "'quoted' \\ back", "\U0001F680", "tab\there", "~", "€", "small", "x,y,z,it's",
     b"abcd", b"\x00", b"\x00", dt.datetime(1000, 1, 1, tzinfo=UTC),
     dt.datetime(1970, 1, 1, 0, 0, 0, 500000, UTC), dt.date(2000, 2, 29), uuid.uuid4(),
     Json('"text"')),
]
# Written as SQL text, as an application would: read back normalised.
RAW = ("INSERT INTO every (id, f, s, doc) VALUES "
       "(10, 0.1234567, 'z,x', '{\"b\": 1,  \"a\": [1, 2.5, \"é\"]}')")
RAW_ROW = (10,) + (None,) * 9 + (0.1234567,) + (None,) * 9 + ("x,z",) + (None,) * 7 + (
    Json('{"a":[1,2.5,"é"],"b":1}'),)
LEGACY = ("CREATE TABLE legacy (id INT PRIMARY KEY, day DATE, at DATETIME(6), "
          "ts TIMESTAMP NULL) ENGINE=InnoDB")
LEGACY_ROWS = {1: ("day", "'0000-00-00'"), 2: ("at", "'0000-00-00 00:00:00'"),
               3: ("ts", "'0000-00-00 00:00:00'"), 4: ("at", "'2020-00-15 10:00:00'")}
WIDE = ("CREATE TABLE wide (id INT PRIMARY KEY, ubig BIGINT UNSIGNED, bits BIT(64), "
        "flag TINYINT(1)) ENGINE=InnoDB")
WIDE_ROWS = {1: ("ubig", "18446744073709551615"), 2: ("ubig", "9223372036854775808"),
             3: ("bits", "b'1000000000000000000000000000000000000000000000000000000000000001'"),
             4: ("flag", "2")}
# UUIDs whose binlog image has trailing zero bytes, the nil and the max UUID,
# version 1 and version 4 ones: MariaDB stores versions 1-5 with segments swapped.
UUIDS = [uuid.uuid1(), uuid.uuid1(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4(),
         uuid.UUID("ce40e8f7-4f20-4010-8ff7-068935f70000"), uuid.UUID(int=0),
         uuid.UUID(int=2**128 - 1), uuid.UUID("12345678-1234-0234-0234-123456789abc"),
         uuid.UUID("0ad2d05c-ee69-11f1-a8e1-000000000000")]
SERVER_UUIDS = 3  # UUID() rows (version 1, made by the server)


def _connect_stream(**settings: Any) -> pymysql.Connection:
    # python-mysql-replication still passes pymysql's deprecated 'db' keyword
    if "db" in settings:
        settings["database"] = settings.pop("db")
    return pymysql.connect(**settings)


def _binlog(server: mariadb.LocalMariaDB, db: str,
            gtid: str) -> dict[str, dict[int, tuple[dict[str, Any], dict[str, str]]]]:
    """Every row written to ``db`` after GTID position ``gtid``, by table and id."""
    # is_mariadb=True ignores log_file/log_pos: it starts from a GTID position
    stream = BinLogStreamReader(
        connection_settings={"host": "127.0.0.1", "port": server.port, "user": mariadb.USER,
                             "password": mariadb.PASSWORD},
        server_id=4000 + random.randrange(1000), is_mariadb=True, blocking=False,
        filter_non_implemented_events=False, only_schemas=[db], auto_position=gtid,
        only_events=[WriteRowsEvent], pymysql_wrapper=_connect_stream)
    out: dict[str, dict[int, tuple[dict[str, Any], dict[str, str]]]] = {}
    try:
        for event in stream:
            for row in event.rows:
                out.setdefault(event.table, {})[row["values"]["id"]] = (
                    row["values"], row["none_sources"])
    finally:
        stream.close()
    return out


class Loaded:
    def __init__(self, conn: pymysql.Connection, tables: dict[str, MariaTable],
                 binlog: dict[str, dict[int, tuple[dict[str, Any], dict[str, str]]]]) -> None:
        self.conn, self.tables, self.binlog = conn, tables, binlog

    def query(self, table: str, row_id: int) -> tuple[Any, ...]:
        """Row ``row_id`` of ``table`` through a SELECT and from_query."""
        t = self.tables[table]
        with self.conn.cursor() as cur:
            cur.execute(f"SELECT {t.reader.select_list} FROM {table} WHERE id = %s", (row_id,))
            return t.reader.from_query(cur.fetchone())

    def logged(self, table: str, row_id: int) -> tuple[Any, ...]:
        """Row ``row_id`` of ``table`` through the binlog and from_binlog."""
        return self.tables[table].reader.from_binlog(*self.binlog[table][row_id])


@pytest.fixture(scope="module")
def loaded(mariadb_server: mariadb.LocalMariaDB) -> Iterator[Loaded]:
    db = f"v_{uuid.uuid4().hex[:10]}"
    mariadb_server.admin(f"CREATE DATABASE {db} CHARACTER SET utf8mb4")
    conn = connect(mariadb_server, db)
    try:
        with conn.cursor() as cur:
            for ddl in (EVERY, LEGACY, WIDE,
                        "CREATE TABLE ids (id INT PRIMARY KEY, u UUID) ENGINE=InnoDB"):
                cur.execute(ddl)
            cur.execute("SHOW MASTER STATUS")
            log_file, log_pos = cur.fetchone()[:2]
            cur.execute("SELECT BINLOG_GTID_POS(%s, %s)", (log_file, log_pos))
            gtid = cur.fetchone()[0]
            marks = ", ".join(["%s"] * len(COLUMNS))
            for row in ROWS:
                cur.execute(f"INSERT INTO every ({', '.join(COLUMNS)}) VALUES ({marks})",
                            [to_mariadb(v) for v in row])
            cur.execute(RAW)
            cur.execute("SET SESSION sql_mode = ''")  # a legacy application's zero dates
            for row_id, (column, value) in LEGACY_ROWS.items():
                cur.execute(f"INSERT INTO legacy (id, {column}) VALUES ({row_id}, {value})")
            cur.execute("SET SESSION sql_mode = DEFAULT")
            for row_id, (column, value) in WIDE_ROWS.items():
                cur.execute(f"INSERT INTO wide (id, {column}) VALUES ({row_id}, {value})")
            for row_id, u in enumerate(UUIDS, 1):
                cur.execute("INSERT INTO ids VALUES (%s, %s)", (row_id, to_mariadb(u)))
            for row_id in range(100, 100 + SERVER_UUIDS):
                cur.execute("INSERT INTO ids VALUES (%s, UUID())", (row_id,))
        tables = read_tables(conn, db, ["every", "legacy", "wide", "ids"], f"database {db}")
        yield Loaded(conn, tables, _binlog(mariadb_server, db, gtid))
    finally:
        conn.close()
        mariadb_server.admin(f"DROP DATABASE IF EXISTS {db}")


def test_shape_of_every_type(loaded: Loaded) -> None:
    shape = loaded.tables["every"].shape
    assert (shape.name, shape.columns, shape.key_indexes, shape.kinds) == (
        "every", COLUMNS, (0,), KINDS)


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"row{r[0]}")
def test_rows_round_trip_through_select(loaded: Loaded, row: tuple[Any, ...]) -> None:
    got = loaded.query("every", row[0])
    assert got == row
    assert [type(v) for v in got] == [type(v) for v in row]


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"row{r[0]}")
def test_rows_round_trip_through_binlog(loaded: Loaded, row: tuple[Any, ...]) -> None:
    got = loaded.logged("every", row[0])
    assert got == row
    # same Python types too (True is not 1, a Json is not a str)
    assert [type(v) for v in got] == [type(v) for v in row]


def test_sql_written_values_are_normalised_the_same_both_ways(loaded: Loaded) -> None:
    # FLOAT as its shortest single precision decimal, SET in definition order,
    # JSON in canonical spelling
    assert loaded.logged("every", 10) == RAW_ROW
    assert loaded.query("every", 10) == RAW_ROW


def test_uuids_of_every_version_round_trip_through_binlog(loaded: Loaded) -> None:
    reader = loaded.tables["ids"].reader
    with loaded.conn.cursor() as cur:
        cur.execute("SELECT id, CAST(u AS CHAR), HEX(u) FROM ids ORDER BY id")
        shown = {row_id: (text, hexed) for row_id, text, hexed in cur.fetchall()}
    assert len(loaded.binlog["ids"]) == len(UUIDS) + SERVER_UUIDS == len(shown)
    for row_id, (text, hexed) in shown.items():
        _, u = reader.from_binlog(*loaded.binlog["ids"][row_id])
        assert u == uuid.UUID(text) and u.hex.upper() == hexed
        if row_id <= len(UUIDS):
            assert u == UUIDS[row_id - 1]
        else:
            assert u.version == 1
    assert [UUIDS[i].version for i in (0, 2)] == [1, 4]


@pytest.mark.parametrize("row_id", sorted(LEGACY_ROWS))
def test_zero_dates_are_refused_by_table_column_and_key(loaded: Loaded, row_id: int) -> None:
    column = LEGACY_ROWS[row_id][0]
    for read in (loaded.logged, loaded.query):
        with pytest.raises(BadValue) as caught:
            read("legacy", row_id)
        e = caught.value
        assert (e.table, e.column) == ("legacy", column)
        assert f"id={row_id}" in str(e) and "correct the source row" in str(e)
        assert "0000-00-00" in str(e) or "2020-00-15" in str(e)


@pytest.mark.parametrize("row_id", sorted(WIDE_ROWS))
def test_values_beyond_what_travels_are_refused(loaded: Loaded, row_id: int) -> None:
    column = WIDE_ROWS[row_id][0]
    for read in (loaded.logged, loaded.query):
        with pytest.raises(EngineError) as caught:
            read("wide", row_id)
        assert isinstance(caught.value, BadValue) and caught.value.column == column
        message = str(caught.value)
        assert f"'{column}' of table 'wide' in the row with id={row_id}" in message
        assert ("9223372036854775807" in message) if column != "flag" else ("0 or 1" in message)


def test_a_binlog_row_missing_columns_is_an_error() -> None:
    reader = RowReader("t", ("id", "v"), ("int", "text"), ("int(11)", "text"), ("id",))
    assert reader.from_binlog({"id": 1, "v": None}, {"v": "null"}) == (1, None)
    with pytest.raises(EngineError, match="binlog_row_image=FULL"):
        reader.from_binlog({"id": 1, "v": None}, {"v": "cols bitmap"})
    with pytest.raises(EngineError, match="has no column 'v'"):
        reader.from_binlog({"id": 1, "w": "x"}, {})


def test_to_mariadb_parameters() -> None:
    at = dt.datetime(2024, 1, 2, 3, 4, 5, 6, dt.timezone(dt.timedelta(hours=2)))
    u = uuid.uuid4()
    assert [to_mariadb(v) for v in (True, at, u, Json("{}"), Decimal("1.5"), b"\0", None)] == [
        1, dt.datetime(2024, 1, 2, 1, 4, 5, 6), str(u), "{}", Decimal("1.5"), b"\0", None]
    with pytest.raises(EngineError):
        to_mariadb(dt.timedelta(1))
    for v in (float("inf"), float("-inf"), float("nan")):  # a DOUBLE holds none of them
        with pytest.raises(EngineError, match="no infinity or NaN"):
            to_mariadb(v)


@pytest.mark.parametrize(("data_type", "column_type", "charset", "is_json", "kind"), [
    ("tinyint", "tinyint(1)", None, False, "bool"),
    ("tinyint", "tinyint(1) unsigned", None, False, "bool"),
    ("tinyint", "tinyint(4)", None, False, "int"),
    ("bigint", "bigint(20) unsigned", None, False, "int"),
    ("bit", "bit(1)", None, False, "int"),
    ("longtext", "longtext", "utf8mb4", True, "json"),
    ("longtext", "longtext", "utf8mb4", False, "text"),
    ("enum", "enum('a')", "utf8mb3", False, "text"),
    ("varchar", "varchar(5)", "ascii", False, "text"),
    ("uuid", "uuid", None, False, "uuid"),
])
def test_column_kinds(data_type: str, column_type: str, charset: str | None, is_json: bool,
                      kind: str) -> None:
    assert column_kind("t", "c", data_type, column_type, charset, is_json) == kind


@pytest.mark.parametrize(("data_type", "column_type", "charset", "said"), [
    ("time", "time", None, "INT of seconds"),
    ("year", "year(4)", None, "SMALLINT"),
    ("geometry", "geometry", None, "ST_AsBinary"),
    ("inet6", "inet6", None, "supported type"),
    ("varchar", "varchar(10)", "latin1", "CONVERT TO CHARACTER SET utf8mb4"),
    ("set", "set('a')", "latin1", "CONVERT TO CHARACTER SET utf8mb4"),
    ("longtext", "longtext", "latin1", "CONVERT TO CHARACTER SET utf8mb4"),
])
def test_refused_column_types(data_type: str, column_type: str, charset: str | None,
                              said: str) -> None:
    with pytest.raises(SchemaError) as caught:
        column_kind("legacy", "col", data_type, column_type, charset, data_type == "longtext")
    message = str(caught.value)
    assert "'col'" in message and "'legacy'" in message and said in message
    assert (charset or column_type) in message


class _Counting:
    """A connection that counts the statements run on it."""

    def __init__(self, conn: pymysql.Connection) -> None:
        self.conn, self.statements = conn, 0

    def cursor(self) -> Any:
        cur = self.conn.cursor()
        execute = cur.execute

        def counted(*args: Any) -> Any:
            self.statements += 1
            return execute(*args)
        cur.execute = counted
        return cur


def test_read_shapes(mariadb_server: mariadb.LocalMariaDB, mariadb_db: str) -> None:
    conn = connect(mariadb_server, mariadb_db)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE a (x INT, y VARCHAR(5), z DATE, PRIMARY KEY (z, x))")
            cur.execute("CREATE TABLE b (id BIGINT PRIMARY KEY, doc JSON, n DECIMAL(5,2))")
            cur.execute("CREATE TABLE c (`we``ird` INT PRIMARY KEY, `j s` LONGTEXT "
                        "CHECK (json_valid(`j s`)))")
        counting = _Counting(conn)
        shapes = read_shapes(counting, mariadb_db, ["a", "b", "c"], "here")
        assert counting.statements == 4  # one per catalog table, not one per table
        assert [(s.columns, s.key_indexes, s.kinds) for s in shapes.values()] == [
            (("x", "y", "z"), (2, 0), ("int", "text", "date")),
            (("id", "doc", "n"), (0,), ("int", "json", "decimal")),
            (("we`ird", "j s"), (0,), ("int", "json"))]
        assert read_shapes(conn, mariadb_db, [], "here") == {}
    finally:
        conn.close()


@pytest.mark.parametrize(("ddl", "said"), [
    (None, "does not exist in database db_shown"),
    ("CREATE TABLE t (x INT)", "has no primary key"),
    ("CREATE TABLE t (x INT PRIMARY KEY) ENGINE=MyISAM", "ALTER TABLE t ENGINE=InnoDB"),
    ("CREATE TABLE t (x INT PRIMARY KEY) ENGINE=Aria", "ALTER TABLE t ENGINE=InnoDB"),
    ("CREATE TABLE t (x INT PRIMARY KEY, name VARCHAR(10)) CHARACTER SET latin1",
     "column 'name' of table 't' is varchar(10) in character set latin1"),
    ("CREATE TABLE t (x INT PRIMARY KEY, at TIME)", "column 'at' of table 't' has type time"),
    ("CREATE VIEW t AS SELECT 1 AS x", "'t' is a view"),
])
def test_read_shapes_refuses(mariadb_server: mariadb.LocalMariaDB, mariadb_db: str,
                             ddl: str | None, said: str) -> None:
    conn = connect(mariadb_server, mariadb_db)
    try:
        if ddl:
            with conn.cursor() as cur:
                cur.execute(ddl)
        with pytest.raises(SchemaError, match=said.replace("(", r"\(").replace(")", r"\)")):
            read_shapes(conn, mariadb_db, ["t"], "database db_shown")
    finally:
        conn.close()
