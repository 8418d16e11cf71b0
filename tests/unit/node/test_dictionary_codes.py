"""Code maps (node.dictionary.codes) and translation (node.dictionary.translate):
pure logic, no database."""

from __future__ import annotations

import pytest

from node.dictionary.codes import CodeMap, MapRow, Unmapped, map_row, parse_marker
from node.dictionary.translate import Dictionaries
from node.model import Change, Op, TableShape
from ringsync.dictionaries import DictionarySettings
from ringsync.errors import SchemaError

D = "lab_orders.test_code"
MAP = TableShape("code_maps", ("campus", "dictionary", "local_code", "canonical_code",
                               "preferred"), (0, 1, 2), ("text", "text", "text", "text", "int"))
ORDERS = TableShape("lab_orders", ("order_id", "test_code", "status"), (0,),
                    ("text", "text", "text"))


def codes(*rows: MapRow, lossy: frozenset[str] = frozenset()) -> CodeMap:
    return CodeMap.build(rows, lossy, "code_maps")


def test_local_and_canonical_codes_translate_both_ways() -> None:
    m = codes(MapRow("east", D, "CBC", "CBC"), MapRow("west", D, "HEM-01", "CBC"))
    assert m.canonical("west", D, "HEM-01") == "CBC"
    assert m.local("west", D, "CBC", "east") == "HEM-01"
    assert m.local("east", D, "CBC", "west") == "CBC"
    assert m.canonical("west", D, "NOPE") is None


def test_a_canonical_code_the_campus_lacks_names_campus_column_code_and_the_fix() -> None:
    m = codes(MapRow("east", D, "CBC", "CBC"))
    with pytest.raises(Unmapped) as e:
        m.local("west", D, "CBC", "east")
    text = str(e.value)
    assert "campus west has no local code for canonical code 'CBC' of lab_orders.test_code" in text
    assert "a change from east" in text and "INSERT INTO code_maps" in text
    assert "dlq retry" in text


def test_an_unmapped_local_code_travels_as_a_marker_and_translates_once_mapped() -> None:
    d = Dictionaries(DictionarySettings("code_maps", {"lab_orders": ("test_code",)}), "west")
    d.bind({"code_maps": MAP, "lab_orders": ORDERS})
    d.publish(codes(MapRow("east", D, "CBC", "CBC")))
    row = d.canonical_row("lab_orders", ("o1", "NEWB", "ordered"), d.codes, count=True)
    assert parse_marker(row[1]) == ("west", "NEWB")
    assert d.unmapped_captured == 1 and "NEWB" in d.last_unmapped
    # back home it is the campus's own code; elsewhere it parks until mapped
    assert d.local_row("lab_orders", row, "west", d.codes) == ("o1", "NEWB", "ordered")
    with pytest.raises(Unmapped, match="campus west has no canonical code for its local code "
                                       "'NEWB'"):
        d.codes.local("east", D, row[1], "west")
    mapped = d.codes.changed([(None, MapRow("west", D, "NEWB", "TSH")),
                              (None, MapRow("east", D, "TSH", "TSH"))])
    assert mapped.local("east", D, row[1], "west") == "TSH"


def test_a_lossy_map_keeps_a_rows_own_code_and_otherwise_gives_the_preferred_one() -> None:
    rows = (MapRow("west", D, "FBC", "CBC", preferred=True), MapRow("west", D, "FBC-X", "CBC"))
    m = codes(*rows, lossy=frozenset({D}))
    assert m.errors == []
    assert m.canonical("west", D, "FBC-X") == "CBC"
    assert m.local("west", D, "CBC", "east") == "FBC"               # preferred
    assert m.local("west", D, "CBC", "east", keep="FBC-X") == "FBC-X"  # the row's own stays
    assert m.local("west", D, "CBC", "east", keep="OTHER") == "FBC"


def test_many_to_one_without_lossy_or_preferred_is_a_map_error_and_parks() -> None:
    rows = (MapRow("west", D, "FBC", "CBC"), MapRow("west", D, "FBC-X", "CBC"))
    m = codes(*rows)
    assert len(m.errors) == 1 and "not declared lossy" in m.errors[0]
    with pytest.raises(Unmapped, match="marks none preferred"):
        m.local("west", D, "CBC", "east")


def test_bad_map_rows_are_ignored_with_a_reason() -> None:
    assert isinstance(map_row(MAP.columns, ("west", D, "", "CBC", 0)), str)
    bad = map_row(MAP.columns, ("west", D, "X", "ringsync-unmapped:east:X", 0))
    assert isinstance(bad, str) and "may not start with" in bad
    ok = map_row(MAP.columns, ("west", D, "X", "CBC", 1))
    assert ok == MapRow("west", D, "X", "CBC", True)


def test_map_changes_follow_inserts_updates_and_deletes_in_order() -> None:
    d = Dictionaries(DictionarySettings("code_maps", {"lab_orders": ("test_code",)}), "west")
    d.bind({"code_maps": MAP, "lab_orders": ORDERS})
    m = d.observe_changes(d.codes, [
        Change("code_maps", Op.INSERT, ("west", D, "A", "CBC", 0)),
        Change("code_maps", Op.UPDATE, ("west", D, "A", "BMP", 0), ("west", D, "A", "CBC", 0)),
        Change("code_maps", Op.INSERT, ("west", D, "B", "TROP", 0)),
        Change("code_maps", Op.DELETE, old=("west", D, "B", "TROP", 0)),
        Change("lab_orders", Op.INSERT, ("o1", "A", "x")),
    ])
    assert m.canonical("west", D, "A") == "BMP" and m.canonical("west", D, "B") is None


@pytest.mark.parametrize(("shape", "message"), [
    (TableShape("lab_orders", ("order_id", "status"), (0,)), "has no column 'test_code'"),
    (TableShape("lab_orders", ("test_code", "status"), (0,)), "a primary key column"),
    (TableShape("lab_orders", ("order_id", "test_code"), (0,), ("text", "int")), "codes are text"),
])
def test_mapped_columns_are_checked_at_open(shape: TableShape, message: str) -> None:
    d = Dictionaries(DictionarySettings("code_maps", {"lab_orders": ("test_code",)}), "west")
    with pytest.raises(SchemaError, match=message):
        d.bind({"code_maps": MAP, "lab_orders": shape})


def test_the_map_table_needs_its_columns_and_key() -> None:
    d = Dictionaries(DictionarySettings("code_maps", {"lab_orders": ("test_code",)}), "west")
    wrong_key = TableShape("code_maps", MAP.columns, (0, 2))
    with pytest.raises(SchemaError, match="primary key"):
        d.bind({"code_maps": wrong_key, "lab_orders": ORDERS})
    no_canonical = TableShape("code_maps", ("campus", "dictionary", "local_code"), (0, 1, 2))
    with pytest.raises(SchemaError, match="lacks columns"):
        d.bind({"code_maps": no_canonical, "lab_orders": ORDERS})
