"""What a receiver checks of rows sent as COPY text (TxnFrame.raw_inserts).

node.replication.framecheck checks every frame from a peer before it is
journaled; for COPY text runs (node.rawcopy: a PostgreSQL campus's
INSERTs) it asks this module, which checks without a Python value per row:
the column kinds the frame reads the text by must be this campus's, and
the whole text is scanned for how the values the wire's Value checks
refuse would be spelled (NULL in a key column, NaN, a non-finite decimal, a
date outside years 1-9999). Only a run where one might be is decoded and
checked value by value. The structure (lines, fields, escapes) is
node.codec.check_frame's, by counts (node.rawcopy.check_raw).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from node.codec import escape_peer_text
from node.model import TableShape
from node.rawcopy import decode_rows
from ringsync.errors import ProtocolError
from ringsync.v1 import values_pb2 as pb

_FIVE_DIGIT_YEAR = re.compile(rb"(?:^|[\t\n])-?\d{5,}-")


def raw_refusal(frame: pb.TxnFrame, shapes: Mapping[str, TableShape]) -> tuple[str, str] | None:
    """(refusal kind, why) for the first thing wrong with the frame's COPY
    text runs, or None. ``shapes``: this campus's tables (the frame's tables
    are known to be among them)."""
    for table in frame.tables:
        local = shapes[table.name]
        mine = dict(zip(local.columns, local.kinds, strict=False))
        for column, kind in zip(table.columns, table.column_kinds, strict=False):
            if mine.get(column, kind) != kind:
                return "bad_shape", (f"table {table.name}: column {column} is {mine[column]} "
                                     f"here, the frame says '{escape_peer_text(kind, 20)}' "
                                     f"(align the schemas)")
    for n, run in enumerate(frame.raw_inserts):
        table = frame.tables[run.table_index]
        if not _suspect(run.copy_text, table):
            continue
        try:
            rows = decode_rows(run.copy_text, table.column_kinds, run.rows)
        except ProtocolError as e:
            return "bad_value", f"run {n}, {table.name}: {e}"
        for i, row in enumerate(rows):
            problem = _row_problem(row, table)
            if problem:
                return "bad_value", f"run {n} row {i}, {table.name}.{problem}"
    return None


def _suspect(text: bytes, table: pb.TableShape) -> bool:
    """Might this COPY text hold a value _row_problem refuses?"""
    kinds = set(table.column_kinds)
    if kinds & {"float", "decimal"} and (b"NaN" in text or b"nfinity" in text):
        return True
    if kinds & {"timestamp", "date"} and (b" BC" in text or b"nfinity" in text
                                          or _FIVE_DIGIT_YEAR.search(text)):
        return True
    if list(table.key_indexes) != [0]:
        return b"\\N" in text
    end = b"\t" if len(table.columns) > 1 else b"\n"
    return text.startswith(b"\\N" + end) or b"\n\\N" + end in text


def _row_problem(row: tuple[Any, ...], table: pb.TableShape) -> str:
    for i in table.key_indexes:
        if row[i] is None:
            return f"{table.columns[i]}: NULL in a primary-key column"
    for column, value in zip(table.columns, row, strict=True):
        if isinstance(value, float) and math.isnan(value):
            return f"{column}: a float NaN (never equal to itself: rows could not be compared)"
        if isinstance(value, Decimal) and not value.is_finite():
            return f"{column}: a non-finite decimal"
    return ""
