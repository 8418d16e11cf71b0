"""Row stamps: how apply tells a row's local change that capture has not
recorded yet, on MariaDB (PostgreSQL reads a row's ``xmin`` for this).

Every application write to a replicated row (insert, update, delete; an
update that changes the key stamps both keys; an update that changes
nothing, which MariaDB does not log, stamps nothing) sets that key's stamp in
``_rs_stamp_<table>`` to the next value of the sequence ``_rs_stamp_seq``,
in an AFTER trigger, inside the application's own transaction. Apply
sessions (``@rs_apply`` set) leave stamps alone. So:

* a key's stamp only changes when a local write to it commits;
* the row versions of a key (node.engines.mariadb.versions) record the
  stamp they describe: a different stamp now means a local change whose
  versions are not recorded yet (*pending*);
* capture sees the stamp writes in the binary log with the rest of the
  transaction and hands the transaction's highest stamp over as its xid:
  a later local write to one of its rows can only happen after it
  committed, so it gets a higher stamp (the sequence only grows).

The stamp tables' key columns are copied from the table (type, character
set, collation), so keys match exactly as the table matches them.
"""

from __future__ import annotations

import zlib
from typing import Any

from node.engines.mariadb.values import quote
from node.model import TableShape

SEQUENCE = "_rs_stamp_seq"
STAMP_PREFIX = "_rs_stamp_"
OPS = {"ins": "INSERT", "upd": "UPDATE", "del": "DELETE"}


def stamp_table(table: str) -> str:
    return STAMP_PREFIX + table


def trigger_name(table: str, op: str) -> str:
    name = f"_rs_st_{table}_{op}"
    if len(name) <= 64:
        return name
    return f"_rs_st_{zlib.crc32(table.encode()):08x}_{op}"


def keyed_copy_ddl(table: str, shape: TableShape, extra: str) -> str:
    """CREATE TABLE IF NOT EXISTS ``table`` with ``shape``'s key columns,
    copied from the replicated table (so they compare as its keys do), the
    ``extra`` columns and the key as primary key."""
    keys = ", ".join(quote(c) for c in shape.key_columns)
    return (f"CREATE TABLE IF NOT EXISTS {quote(table)} ({extra}, PRIMARY KEY ({keys})) "
            f"ENGINE=InnoDB SELECT {keys} FROM {quote(shape.name)} WHERE 0")


def _stamp(shape: TableShape, image: str) -> str:
    keys = ", ".join(quote(c) for c in shape.key_columns)
    values = ", ".join(f"{image}.{quote(c)}" for c in shape.key_columns)
    return (f"INSERT INTO {quote(stamp_table(shape.name))} ({keys}, stamp) "
            f"VALUES ({values}, NEXTVAL({SEQUENCE})) "
            f"ON DUPLICATE KEY UPDATE stamp = VALUES(stamp)")


def trigger_ddl(shape: TableShape, op: str) -> str:
    table, name = quote(shape.name), quote(trigger_name(shape.name, op))
    if op == "ins":
        body = _stamp(shape, "NEW") + ";"
    elif op == "del":
        body = _stamp(shape, "OLD") + ";"
    else:
        moved = " OR ".join(f"NOT (OLD.{quote(c)} <=> NEW.{quote(c)})"
                            for c in shape.key_columns)
        # An UPDATE that changes nothing still fires the trigger, but MariaDB
        # logs no row event for it: a stamp set then would never be recorded
        # and the row would look pending for ever. Compared as bytes, as
        # MariaDB compares the row (a change of case is a change).
        changed = " OR ".join(f"NOT (BINARY OLD.{quote(c)} <=> BINARY NEW.{quote(c)})"
                              for c in shape.columns)
        body = (f"IF {changed} THEN " + _stamp(shape, "NEW") + f"; IF {moved} THEN "
                + _stamp(shape, "OLD") + "; END IF; END IF;")
    return (f"CREATE OR REPLACE TRIGGER {name} AFTER {OPS[op]} ON {table} FOR EACH ROW "
            f"BEGIN IF @rs_apply IS NULL THEN {body} END IF; END")


def _body(ddl: str) -> str:
    return ddl[ddl.index(" FOR EACH ROW ") + len(" FOR EACH ROW "):]


def install_stamps(cur: Any, shape: TableShape) -> None:
    """The sequence, the table's stamp table and its three triggers. A
    trigger is made only where it is missing or differs (a key changed):
    making one takes the table's metadata lock, which waits for every open
    transaction on the table, so a normal start makes none. CREATE OR
    REPLACE swaps a trigger under that lock: no write slips through
    unstamped."""
    cur.execute(f"CREATE SEQUENCE IF NOT EXISTS {SEQUENCE} START WITH 1 INCREMENT BY 1 "
                f"CACHE 1000 ENGINE=InnoDB")
    cur.execute(keyed_copy_ddl(stamp_table(shape.name), shape, "stamp BIGINT NOT NULL DEFAULT 0"))
    names = {trigger_name(shape.name, op): op for op in OPS}
    have = {str(name): (str(table), str(body)) for name, table, body in cur.execute(
        "SELECT TRIGGER_NAME, EVENT_OBJECT_TABLE, ACTION_STATEMENT FROM "
        "information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE() AND TRIGGER_NAME IN ("
        + ", ".join("%s" for _ in names) + ")", tuple(names)).fetchall()}
    for name, op in names.items():
        ddl = trigger_ddl(shape, op)
        if have.get(name) != (shape.name, _body(ddl)):
            if name in have and have[name][0] != shape.name:  # the name is on another table
                cur.execute(f"DROP TRIGGER IF EXISTS {quote(name)}")
            cur.execute(ddl)
