"""Row filters for leaves' routes: the CEL expressions of [leaf.filter] (node.leaf.route).

A leaf holds the subset of a table that its route's filter selects. A filter
is a CEL expression (the Common Expression Language, through cel-python:
a maintained language and parser, not one of our own) over the row's
columns, e.g. ``campus_code == "FY-02"`` or ``collected_at >= now() -
days(90)``. It is evaluated by the parent, in Python, over the row's
canonical values (node.codec's types), so it means the same whatever
engine either side runs.

- Compiling checks the expression once, when the configuration is read: a
  syntax error, or a name that is not a column of the table, is a
  ``RowFilterError`` that names the table, the expression and what to fix.
- ``now()`` is the evaluation's clock, one reading for a whole batch (so
  every row of a batch is judged at the same moment); ``days(n)`` and
  ``hours(n)`` are durations.
- A row whose values the expression cannot be evaluated over (comparing
  text with a number, a NULL where a number is needed) raises
  ``RowFilterError`` naming the row's columns: the caller parks and counts
  it; a row is never silently left out of, or let into, a subset.
- ``transition``: what a change becomes at the leaf (a row moving into the
  subset arrives whole as an insert, one moving out is deleted there).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import celpy
import lark
from celpy import celtypes
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError

from ringsync.errors import RingsyncError

FUNCTIONS = ("now", "days", "hours")


class RowFilterError(RingsyncError):
    """A filter that does not compile, or a row it cannot be evaluated over."""


def cel_value(v: Any) -> Any:
    """A canonical value as CEL sees it (NULL is CEL's null)."""
    if v is None:
        return None
    if isinstance(v, bool):
        return celtypes.BoolType(v)
    if isinstance(v, int):
        return celtypes.IntType(v)
    if isinstance(v, float | Decimal):
        return celtypes.DoubleType(float(v))
    if isinstance(v, str):
        return celtypes.StringType(v)
    if isinstance(v, bytes | bytearray | memoryview):
        return celtypes.BytesType(bytes(v))
    if isinstance(v, dt.datetime):
        return celtypes.TimestampType(v)
    if isinstance(v, dt.date):  # a date is midnight UTC of that day
        return celtypes.TimestampType(dt.datetime(v.year, v.month, v.day, tzinfo=dt.UTC))
    if isinstance(v, uuid.UUID):
        return celtypes.StringType(str(v))
    return celtypes.StringType(str(v))  # JSON: its text


class RowFilter:
    """One table's filter, compiled once."""

    def __init__(self, table: str, expression: str, columns: tuple[str, ...]) -> None:
        self.table, self.expression, self.columns = table, expression, columns
        env = celpy.Environment()
        try:
            tree = env.compile(expression)
        except CELParseError as e:
            raise RowFilterError(
                f"the row filter of {table} does not parse: {expression!r}: "
                f"{str(e).strip().splitlines()[0]}; filters are CEL expressions over the "
                f"row's columns, e.g. campus_code == \"FY-02\"") from None
        unknown = sorted(_variables(tree) - set(columns))
        if unknown:
            raise RowFilterError(
                f"the row filter of {table} names {', '.join(unknown)}, not a column of "
                f"{table} (its columns: {', '.join(columns)}): {expression!r}")
        self._clock = dt.datetime.now(dt.UTC)
        self._program = env.program(tree, functions={
            "now": lambda: celtypes.TimestampType(self._clock),
            "days": lambda n: celtypes.DurationType(seconds=int(n) * 86400),
            "hours": lambda n: celtypes.DurationType(seconds=int(n) * 3600)})

    def select(self, rows: list[Mapping[str, Any]],
               now: dt.datetime | None = None) -> list[bool]:
        """Whether each row is in the subset, all judged at ``now`` (default: the clock now)."""
        self._clock = now or dt.datetime.now(dt.UTC)
        return [self._one(row) for row in rows]

    def _one(self, row: Mapping[str, Any]) -> bool:
        activation = {c: cel_value(row.get(c)) for c in self.columns}
        try:
            result = self._program.evaluate(activation)
        except CELEvalError as e:
            raise RowFilterError(self._refusal(row, str(e.args[0] if e.args else e))) from None
        if isinstance(result, CELEvalError):
            raise RowFilterError(self._refusal(row, str(result.args[0] if result.args else "")))
        if not isinstance(result, celtypes.BoolType):
            raise RowFilterError(self._refusal(row, f"it gave {type(result).__name__}, not a "
                                                    "true or false"))
        return bool(result)

    def _refusal(self, row: Mapping[str, Any], why: str) -> str:
        shown = ", ".join(f"{c}={row.get(c)!r}" for c in self.columns)[:300]
        return (f"the row filter of {self.table} ({self.expression!r}) cannot be evaluated "
                f"over the row {shown}: {why[:200]}")


def _variables(tree: lark.Tree[Any]) -> set[str]:
    """The names an expression reads (its ``ident`` nodes; function names are
    ``ident_arg``, fields after a dot ``member_dot``)."""
    return {str(c) for sub in tree.iter_subtrees() if sub.data == "ident"
            for c in sub.children if isinstance(c, lark.Token) and c.type == "IDENT"}


def transition(rule: RowFilter, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None,
               now: dt.datetime | None = None) -> str | None:
    """What a change becomes at a leaf whose subset ``rule`` selects, as
    PostgreSQL 15's row filters do for an UPDATE: ``old``/``new`` the row's
    images (None: there is none, an INSERT or a DELETE). A row that moves
    into the subset arrives whole ("insert"), one that moves out is removed
    ("delete"), one that stays in is an "update"; None: the leaf never
    sees it."""
    now = now or dt.datetime.now(dt.UTC)  # both images judged at one moment
    return becomes(old is not None and rule.select([old], now)[0],
                   new is not None and rule.select([new], now)[0])


def becomes(was: bool, is_in: bool) -> str | None:
    """What a change becomes at a leaf, from whether its row was in the
    subset before it and is after it (``transition``'s rule)."""
    if was and is_in:
        return "update"
    if is_in:
        return "insert"
    return "delete" if was else None
