"""The cluster file's [dictionaries] section (ringsync.dictionaries)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ringsync.config import load_cluster
from ringsync.errors import ConfigError


def cluster(tmp_path: Path, tables: list[str], section: str) -> Path:
    path = tmp_path / "cluster.toml"
    campuses = "".join(f'\n[[campus]]\nname = "{c}"\naddress = "127.0.0.1:{7001 + i}"\n'
                       for i, c in enumerate(("east", "west")))
    quoted = ", ".join(f'"{t}"' for t in tables)
    path.write_text(f'[cluster]\nname = "u"\nring = ["east", "west"]\ntables = [{quoted}]\n'
                    f'{section}{campuses}')
    return path


def test_dictionaries_are_read(tmp_path: Path) -> None:
    c = load_cluster(cluster(tmp_path, ["code_maps", "lab_orders", "specimens"],
                             '[dictionaries]\ntable = "code_maps"\n'
                             'columns = ["lab_orders.test_code", "specimens.kind"]\n'
                             'lossy = ["specimens.kind"]\n'))
    d = c.dictionaries
    assert d.enabled and d.table == "code_maps"
    assert d.columns == {"lab_orders": ("test_code",), "specimens": ("kind",)}
    assert d.lossy == frozenset({"specimens.kind"})
    assert d.names() == ["lab_orders.test_code", "specimens.kind"]


def test_no_section_means_no_dictionaries(tmp_path: Path) -> None:
    assert not load_cluster(cluster(tmp_path, ["lab_orders"], "")).dictionaries.enabled


@pytest.mark.parametrize(("tables", "section", "message"), [
    (["lab_orders"], 'table = "code_maps"\ncolumns = ["lab_orders.test_code"]',
     "must name the code map table"),
    (["code_maps", "lab_orders"], 'table = "code_maps"\ncolumns = []', "must list"),
    (["code_maps", "lab_orders"], 'table = "code_maps"\ncolumns = ["test_code"]',
     "is not \"table.column\""),
    (["code_maps", "lab_orders"], 'table = "code_maps"\ncolumns = ["orders.test_code"]',
     "not in cluster.tables"),
    (["lab_orders", "code_maps"], 'table = "code_maps"\ncolumns = ["lab_orders.test_code"]',
     "list 'code_maps' first"),
    (["code_maps", "lab_orders"], 'table = "code_maps"\ncolumns = ["code_maps.local_code"]',
     "the map table itself"),
    (["code_maps", "lab_orders"],
     'table = "code_maps"\ncolumns = ["lab_orders.test_code"]\nlossy = ["lab_orders.kind"]',
     "not in dictionaries.columns"),
    (["code_maps", "lab_orders"], 'table = "code_maps"\ncolumns = ["lab_orders.a"]\ncolum = 1',
     "colum"),
])
def test_bad_dictionaries_are_clear_errors(tmp_path: Path, tables: list[str], section: str,
                                           message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_cluster(cluster(tmp_path, tables, f"[dictionaries]\n{section}\n"))
