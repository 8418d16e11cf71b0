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
    ColumnMask,
    Masker,
    MaskingError,
    RowMasker,
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


PATIENT_COLUMNS = ("patient_id", "mrn", "name", "birth_date", "mobile", "id_number",
                   "address", "note")
PATIENT_MASKS = [ColumnMask("patient_id", "pseudonym"), ColumnMask("mrn", "pseudonym"),
                 ColumnMask("name", "name"),
                 ColumnMask("birth_date", "date_shift", patient="patient_id"),
                 ColumnMask("mobile", "mobile"),
                 ColumnMask("id_number", "resident_id", patient="patient_id"),
                 ColumnMask("address", "address"), ColumnMask("note", "redact")]


def patient_rows(n: int) -> list[tuple[object, ...]]:
    rows = []
    for i, p in enumerate(people(n, seed=11)):
        born = dt.date(1940, 1, 1) + dt.timedelta(days=(i * 37) % 29_000)
        body = f"340104{born:%Y%m%d}{i % 1000:03d}"
        rows.append((f"pat-{i:05d}", p["mrn"], p["name"], born.isoformat(), p["mobile"],
                     body + id_check_digit(body), f"幸福路{i % 500 + 1}号", f"{p['name']} 胸痛"))
    return rows


def test_ten_thousand_patients_masked_keep_no_identifier_and_still_join() -> None:
    m = Masker(KEY)
    patients = RowMasker("patients", PATIENT_COLUMNS, PATIENT_MASKS, m)
    orders = RowMasker("lab_orders", ("order_id", "patient_id", "ordered_at"),
                       [ColumnMask("patient_id", "pseudonym"),
                        ColumnMask("ordered_at", "date_shift", patient="patient_id")], m)
    rows = patient_rows(10_000)
    masked = [patients.mask(r) for r in rows]
    # no exact identifier (key, MRN, mobile, ID number, address) survives anywhere
    for column in (0, 1, 4, 5, 6):
        original = {r[column] for r in rows}
        assert not original & {v for mr in masked for v in mr}, PATIENT_COLUMNS[column]
    assert all(mr[7] is None for mr in masked)  # free text dropped
    assert all(valid_resident_id(str(mr[5])) for mr in masked)
    # a fake name equals its patient's real one only by chance (both from common names)
    assert sum(mr[2] == r[2] for mr, r in zip(masked, rows, strict=True)) < 10
    # the same masking in another table keeps joins and the patient's intervals
    first = rows[0]
    order = orders.mask(("ord-1", first[0], "2026-03-01T08:30:00Z"))
    assert order[1] == masked[0][0]
    shift = m.shift_days(str(first[0]))
    assert order[2] == (dt.datetime(2026, 3, 1, 8, 30) + dt.timedelta(days=shift)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    assert masked[0][3] == (dt.date.fromisoformat(str(first[3]))
                            + dt.timedelta(days=shift)).isoformat()
    assert [patients.mask(r) for r in rows[:50]] == masked[:50]  # a second load lines up


def test_masking_rules_are_checked_and_unmaskable_values_refused() -> None:
    m = Masker(KEY)
    with pytest.raises(MaskingError, match="has no column phone"):
        RowMasker("patients", PATIENT_COLUMNS, [ColumnMask("phone", "mobile")], m)
    with pytest.raises(MaskingError, match="unknown kind 'scramble'"):
        RowMasker("patients", PATIENT_COLUMNS, [ColumnMask("name", "scramble")], m)
    with pytest.raises(MaskingError, match="needs the patient column"):
        RowMasker("patients", PATIENT_COLUMNS, [ColumnMask("birth_date", "date_shift")], m)
    shifter = RowMasker("patients", PATIENT_COLUMNS,
                        [ColumnMask("birth_date", "date_shift", patient="patient_id")], m)
    bad = ("pat-1", "m", "n", "unknown", None, None, None, None)
    with pytest.raises(MaskingError, match="not a date or a timestamp"):
        shifter.mask(bad)
    assert shifter.mask(("pat-1", "m", "n", None, None, None, None, None))[3] is None
