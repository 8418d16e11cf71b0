"""The demo's code dictionaries: each campus codes the same lab tests its own way.

With ``ringsync demo --dictionaries`` the cluster maps ``lab_orders.test_code``
through the replicated ``code_maps`` table (ringsync.dictionaries): the first
campus orders tests by the canonical codes (CBC, BMP, TROP, CRP), the others
by local codes of their own, and the ring carries canonical codes only.
Every campus's map rows are created with the schema, the same at each.
"""

from __future__ import annotations

from collections.abc import Iterable

from ringsync.commands.demo.lis import TESTS

MAP_TABLE = "code_maps"
DICTIONARY = "lab_orders.test_code"
DICTIONARIES_TOML = (f'[dictionaries]\ntable = "{MAP_TABLE}"\ncolumns = ["{DICTIONARY}"]\n')

# Local codes of the second and third campuses, as their old systems spell them;
# further campuses prefix the canonical code with their initial.
_LOCAL: tuple[dict[str, str], ...] = (
    {},
    {"CBC": "HEM-01", "BMP": "CHEM-07", "TROP": "CARD-TNI", "CRP": "INF-CRP"},
    {"CBC": "FBC", "BMP": "U&E", "TROP": "TROPI", "CRP": "CRP-HS"},
)

SQLITE_MAP_DDL = f"""
CREATE TABLE IF NOT EXISTS {MAP_TABLE}(
    campus TEXT NOT NULL,
    dictionary TEXT NOT NULL,
    local_code TEXT NOT NULL,
    canonical_code TEXT NOT NULL,
    preferred INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (campus, dictionary, local_code)
);
"""
POSTGRES_MAP_DDL = SQLITE_MAP_DDL.replace("INTEGER", "bigint")
MARIADB_MAP_DDL = (SQLITE_MAP_DDL.replace("TEXT NOT NULL", "VARCHAR(64) NOT NULL")
                   .replace("INTEGER", "BIGINT")
                   .replace("\n);", "\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 "
                                    "COLLATE=utf8mb4_bin;"))


def local_codes(campuses: tuple[str, ...], campus: str) -> dict[str, str]:
    """canonical test code -> the code ``campus`` orders it by."""
    index = campuses.index(campus)
    if index < len(_LOCAL):
        return {t: _LOCAL[index].get(t, t) for t in TESTS}
    return {t: f"{campus[0].upper()}-{t}" for t in TESTS}


def map_rows(campuses: Iterable[str]) -> list[tuple[str, str, str, str, int]]:
    """Every campus's map rows: (campus, dictionary, local, canonical, preferred)."""
    names = tuple(campuses)
    return [(c, DICTIONARY, local, canonical, 0) for c in names
            for canonical, local in local_codes(names, c).items()]


def seed_sql(campuses: Iterable[str]) -> str:
    """INSERT statements for every campus's map rows (one per statement)."""
    return ";\n".join(
        f"INSERT INTO {MAP_TABLE} VALUES ('{c}', '{d}', '{local}', '{canonical}', {p})"
        for c, d, local, canonical, p in map_rows(campuses)) + ";\n"
