from node.replication.vectors import lag, meet, merge_max


def test_lag_counts_only_missing_transactions() -> None:
    assert lag({"a": 5, "b": 3}, {"a": 2, "b": 3}) == 3
    assert lag({"a": 5}, {"a": 9}) == 0
    assert lag({"a": 5}, {}) == 5


def test_meet_is_what_everyone_holds() -> None:
    assert meet([{"a": 5, "b": 2}, {"a": 3}], ["a", "b"]) == {"a": 3, "b": 0}


def test_merge_max_never_goes_backwards() -> None:
    assert merge_max({"a": 5, "b": 1}, {"a": 2, "b": 4, "c": 1}) == {"a": 5, "b": 4, "c": 1}
