"""The masking functions masked leaves will use (issue 19): deterministic per
key, different across keys, well-formed fakes (valid resident identity
numbers, real mobile prefixes, Chinese names), per-patient date shifts that
keep intervals, and no original identifier surviving."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from ringsync.masking import (
    GIVEN,
    MAX_SHIFT_DAYS,
    MOBILE_PREFIXES,
    SURNAMES,
    Masker,
    id_check_digit,
    valid_resident_id,
)

KEY = b"environment-test-key-0001"


def people(n: int, seed: int = 3) -> list[dict[str, str]]:
    rng = random.Random(seed)
    return [{"mrn": f"CH{rng.randrange(10**8):08d}",
             "name": rng.choice(SURNAMES) + "".join(rng.choices(GIVEN, k=rng.choice((1, 2)))),
             "mobile": rng.choice(MOBILE_PREFIXES) + f"{rng.randrange(10**8):08d}",
             "id": (body := f"340104{rng.randrange(1940, 2020)}0{rng.randrange(1, 10)}"
                    f"{rng.randrange(10, 29)}{rng.randrange(1000):03d}") + id_check_digit(body)}
            for _ in range(n)]


def test_the_published_example_resident_id_checks() -> None:
    assert id_check_digit("11010519491231002") == "X"  # GB 11643's own example
    assert valid_resident_id("11010519491231002X") and not valid_resident_id("110105194912310021")
    with pytest.raises(ValueError):
        id_check_digit("1234")


def test_masking_is_stable_per_key_and_differs_across_keys() -> None:
    a, again, other = Masker(KEY), Masker(KEY), Masker(b"another-environment-key!")
    for p in people(200):
        for f in ("pseudonym", "chinese_name", "mobile", "resident_id", "address"):
            value = p["mrn"]
            assert getattr(a, f)(value) == getattr(again, f)(value)
        assert a.pseudonym(p["mrn"]) != other.pseudonym(p["mrn"])
    with pytest.raises(ValueError, match="16 bytes"):
        Masker(b"short")


def test_fakes_are_well_formed_and_no_identifier_survives() -> None:
    m = Masker(KEY)
    records = people(10_000)
    tokens = {m.pseudonym(p["mrn"]) for p in records}
    assert len(tokens) == len({p["mrn"] for p in records})  # no two patients share one
    for p in records:
        name, phone = m.chinese_name(p["mrn"]), m.mobile(p["mrn"])
        number = m.resident_id(p["id"], dt.date(1970, 5, 17), p["mrn"])
        assert name[0] in SURNAMES and all(c in GIVEN for c in name[1:]) and 2 <= len(name) <= 3
        assert len(phone) == 11 and phone.isdigit() and phone[:3] in MOBILE_PREFIXES
        assert valid_resident_id(number)
        assert phone != p["mobile"] and number != p["id"] and p["mrn"] not in m.pseudonym(p["mrn"])
        assert valid_resident_id(m.resident_id(p["id"]))  # a derived birth date: still valid
    assert m.redact("王伟, 13912345678, chest pain") is None


def test_one_patients_dates_shift_together_never_by_zero() -> None:
    m = Masker(KEY)
    shifts = {m.shift_days(p["mrn"]) for p in people(2_000)}
    assert 0 not in shifts and all(abs(s) <= MAX_SHIFT_DAYS for s in shifts)
    assert min(shifts) < 0 < max(shifts)
    admitted, discharged = dt.date(2026, 3, 1), dt.date(2026, 3, 9)
    moved = [m.shift_date(d, "CH00000001") for d in (admitted, discharged)]
    assert moved[1] - moved[0] == discharged - admitted and moved[0] != admitted
    born = m.resident_id("340104197005170012", dt.date(1970, 5, 17), "CH00000001")[6:14]
    assert born == f"{m.shift_date(dt.date(1970, 5, 17), 'CH00000001'):%Y%m%d}"
