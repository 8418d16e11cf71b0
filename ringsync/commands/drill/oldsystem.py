"""The dual-track drill's old system: the engines of its two campuses and
the history its MariaDB database holds before ringsync runs.

The harness (ringsync.commands.drill.harness) builds the drill's cluster
from these and loads the history; ringsync.commands.drill.dualtrack then
drives the migration.
"""

from __future__ import annotations

from ringsync.commands.demo.cluster import CampusLayout
from ringsync.commands.drill.checker import TABLE, mariadb_connect

# The old system first (it seeds the ring), the new one joining from it.
DUAL_TRACK_ENGINES = ("mariadb", "postgres")
HISTORY_BATCH = 1000


def preload_history(old_system: CampusLayout, rows: int) -> set[str]:
    """``rows`` rows written to the old system before ringsync ran; their ids."""
    ids = [f"history-{i}" for i in range(rows)]
    conn = mariadb_connect(old_system, autocommit=False)
    try:
        with conn.cursor() as cur:
            for i in range(0, rows, HISTORY_BATCH):
                cur.executemany(f"INSERT INTO {TABLE} VALUES (%s, %s, %s, %s)",
                                [(row_id, old_system.name, old_system.name, 0.0)
                                 for row_id in ids[i:i + HISTORY_BATCH]])
        conn.commit()
    finally:
        conn.close()
    return set(ids)
