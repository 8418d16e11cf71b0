"""Conflict policies checked against the replicated tables' real shapes.

The policies themselves are parsed with the cluster file
(ringsync.conflict_policy); only the node knows the columns and their types.
"""

from __future__ import annotations

from collections.abc import Mapping

from node.model import TableShape
from ringsync.conflict_policy import DELTA_KINDS, ConflictSettings
from ringsync.errors import ConfigError


def check_policies(settings: ConflictSettings, shapes: Mapping[str, TableShape]) -> None:
    """Refuse policies naming columns the database lacks, key columns, or a
    delta column whose type cannot be added exactly."""
    for table, policy in settings.tables.items():
        shape = shapes.get(table)
        if shape is None:  # a leaf's route leaves the table out
            continue
        at = f"conflicts.tables.{table}"
        named = [policy.rank_column] if policy.rank_column else []
        for column in [*named, *policy.monotonic, *policy.delta]:
            if column not in shape.columns:
                raise ConfigError(f"{at} names column {column!r}, which {table} lacks "
                                  f"(columns: {', '.join(shape.columns)})")
            if column in shape.key_columns:
                raise ConfigError(f"{at}: {column!r} is part of the primary key; keys never "
                                  f"conflict, so no rule applies to them")
        for column in policy.delta:
            kind = shape.kinds[shape.columns.index(column)] if shape.kinds else ""
            if kind not in DELTA_KINDS:
                raise ConfigError(
                    f"{at}.delta: column {column!r} is {kind or 'of unknown type'}; only integer "
                    f"or exact decimal columns add up the same on every campus"
                )
