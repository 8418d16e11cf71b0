"""Masking functions for masked leaves (issue 19): the building block, not yet wired.

A masked test environment must never receive a real direct identifier. The
parent masks each row before it leaves (so nothing real crosses the link);
this module is what it will mask with: pure functions of a value and a
secret key kept per environment. Every function is **deterministic** for a
given key (the same patient gets the same pseudonym on every load, so joins
and repeated loads line up) and **keyed** (without the key a pseudonym
cannot be recomputed from a guessed identity: HMAC-SHA-256, not a bare
hash). Different environments use different keys, so their pseudonyms do
not link.

- ``pseudonym``: an opaque token, e.g. for a medical record number.
- ``chinese_name``: a plausible Chinese name (a common surname and one or
  two given-name characters).
- ``mobile``: an 11-digit mainland mobile number on a real carrier prefix.
- ``resident_id``: an 18-digit resident identity number (GB 11643) with a
  valid check digit (ISO 7064 MOD 11-2), its birth date shifted as the
  patient's dates are, its region drawn from a fixed list by the key, not
  copied from the original (a region is a quasi-identifier).
- ``shift_date``: a date moved by a per-patient number of days, never 0, so
  intervals between one patient's events are kept (GB/T 39725's date
  shifting).
- ``address``: a fake street address.
- ``redact``: free text dropped.

``RowMasker`` applies them to a table's rows by column (``ColumnMask``: the
kind, and for dates the patient column whose dates move together); a key
or reference column masked as ``pseudonym`` in every table keeps joins
(the same value gives the same token). A value a rule cannot mask (a date
column holding text that is no date) is refused, never passed through.

Nothing here is random at run time, and nothing keeps state.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董萧程曹袁邓许傅沈曾彭吕"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰建国志红文斌"
MOBILE_PREFIXES = ("130", "131", "132", "135", "136", "137", "138", "139", "150", "151",
                   "152", "157", "158", "159", "166", "176", "177", "186", "187", "188")
# Region codes (province, city, county) drawn from, none a real patient's by design.
REGIONS = ("340102", "340103", "340104", "340111", "340121", "340122", "340123", "341202",
           "341203", "341204", "341221", "341222")
STREETS = ("长江路", "黄山路", "淮河路", "宿州路", "望江路", "金寨路", "芜湖路", "徽州大道")
ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK = "10X98765432"
MAX_SHIFT_DAYS = 365


class Masker:
    """The masking functions of one environment, keyed by its secret."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("a masking key needs at least 16 bytes; generate one with "
                             "`head -c 32 /dev/urandom | base64` and keep it per environment")
        self._key = key

    def _digest(self, kind: str, value: str) -> bytes:
        return hmac.new(self._key, f"{kind}\x00{value}".encode(), hashlib.sha256).digest()

    def _number(self, kind: str, value: str) -> int:
        return int.from_bytes(self._digest(kind, value), "big")

    def pseudonym(self, value: str, prefix: str = "P") -> str:
        """An opaque, stable token for ``value`` (``prefix``-16 hex digits)."""
        return f"{prefix}-{self._digest('pseudonym', value)[:8].hex()}"

    def chinese_name(self, value: str) -> str:
        n = self._number("name", value)
        surname = SURNAMES[n % len(SURNAMES)]
        n //= len(SURNAMES)
        given = GIVEN[n % len(GIVEN)]
        n //= len(GIVEN)
        if n % 3:  # two thirds of names have two given characters
            given += GIVEN[(n // 3) % len(GIVEN)]
        return surname + given

    def mobile(self, value: str) -> str:
        n = self._number("mobile", value)
        prefix = MOBILE_PREFIXES[n % len(MOBILE_PREFIXES)]
        return prefix + f"{(n // len(MOBILE_PREFIXES)) % 10**8:08d}"

    def shift_days(self, patient: str) -> int:
        """The patient's date shift: ±1..MAX_SHIFT_DAYS days, the same for every
        date of that patient."""
        n = self._number("shift", patient)
        days = 1 + n % MAX_SHIFT_DAYS
        return days if (n // MAX_SHIFT_DAYS) % 2 else -days

    def shift_date(self, day: dt.date, patient: str) -> dt.date:
        return day + dt.timedelta(days=self.shift_days(patient))

    def resident_id(self, value: str, birth: dt.date | None = None,
                    patient: str | None = None) -> str:
        """A valid 18-digit resident identity number standing for ``value``:
        region from REGIONS, the birth date (``birth``, shifted by
        ``patient``'s shift; else one derived from the value), a sequence
        number, the check digit."""
        n = self._number("resident-id", value)
        region = REGIONS[n % len(REGIONS)]
        n //= len(REGIONS)
        if birth is None:
            born = dt.date(1940, 1, 1) + dt.timedelta(days=n % (365 * 80))
        else:
            born = self.shift_date(birth, patient or value)
        n //= 365 * 80
        body = f"{region}{born:%Y%m%d}{n % 1000:03d}"
        return body + id_check_digit(body)

    def address(self, value: str) -> str:
        n = self._number("address", value)
        street = STREETS[n % len(STREETS)]
        n //= len(STREETS)
        return f"合肥市{street}{1 + n % 999}号{1 + (n // 999) % 30}栋{101 + (n // 29970) % 20}室"

    @staticmethod
    def redact(text: str | None) -> None:
        """Free text can hold anything (a name in a clinical note): dropped."""
        return None


def id_check_digit(body: str) -> str:
    """The check character of a resident identity number's first 17 digits
    (GB 11643-1999, ISO 7064 MOD 11-2)."""
    if len(body) != 17 or not body.isdigit():
        raise ValueError(f"a resident identity number's body is 17 digits, not {body!r}")
    return ID_CHECK[sum(int(d) * w for d, w in zip(body, ID_WEIGHTS, strict=True)) % 11]


def valid_resident_id(number: str) -> bool:
    """Whether ``number`` is 18 characters with a correct check character."""
    return (len(number) == 18 and number[:17].isdigit()
            and id_check_digit(number[:17]) == number[17].upper())


KINDS = ("pseudonym", "name", "mobile", "resident_id", "date_shift", "address", "redact")


class MaskingError(ValueError):
    """A masking rule that cannot be applied: never a value let through unmasked."""


@dataclass(frozen=True)
class ColumnMask:
    """How one column is masked. ``patient``: the column whose value keys the
    date shift (``date_shift``, ``resident_id``), so all of one patient's
    dates move together."""

    column: str
    kind: str
    patient: str | None = None


class RowMasker:
    """Masks rows of one table (canonical tuples in the table's column order)."""

    def __init__(self, table: str, columns: tuple[str, ...], masks: list[ColumnMask],
                 masker: Masker) -> None:
        self.table, self.masker = table, masker
        index = {c: i for i, c in enumerate(columns)}
        self._rules: list[tuple[int, ColumnMask, int | None]] = []
        for m in masks:
            if m.column not in index:
                raise MaskingError(f"masking of {table}.{m.column}: {table} has no column "
                                   f"{m.column} (its columns: {', '.join(columns)})")
            if m.kind not in KINDS:
                raise MaskingError(f"masking of {table}.{m.column}: unknown kind {m.kind!r}; "
                                   f"pick one of {', '.join(KINDS)}")
            if m.patient is not None and m.patient not in index:
                raise MaskingError(f"masking of {table}.{m.column}: the patient column "
                                   f"{m.patient} is not a column of {table}")
            if m.kind == "date_shift" and m.patient is None:
                raise MaskingError(f"masking of {table}.{m.column}: a date shift needs the "
                                   "patient column whose dates move together (patient = ...)")
            self._rules.append((index[m.column], m,
                                None if m.patient is None else index[m.patient]))

    def mask(self, row: tuple[Any, ...]) -> tuple[Any, ...]:
        out = list(row)
        for i, rule, patient_at in self._rules:  # patient keys read from the original row
            patient = None if patient_at is None else str(row[patient_at])
            out[i] = self._one(row[i], rule, patient)
        return tuple(out)

    def _one(self, value: Any, rule: ColumnMask, patient: str | None) -> Any:
        if value is None:
            return None
        m = self.masker
        if rule.kind == "redact":
            return m.redact(value)
        if rule.kind == "date_shift":
            return _shift(value, m.shift_days(patient or ""), f"{self.table}.{rule.column}")
        text = str(value)
        if rule.kind == "pseudonym":
            return m.pseudonym(text)
        if rule.kind == "name":
            return m.chinese_name(text)
        if rule.kind == "mobile":
            return m.mobile(text)
        if rule.kind == "address":
            return m.address(text)
        return m.resident_id(text, _birth_of(text), patient)  # resident_id


def _shift(value: Any, days: int, where: str) -> Any:
    """A date, a timestamp or their ISO text, moved by ``days`` (text stays text
    in the same shape); anything else is refused, never passed on as it is."""
    delta = dt.timedelta(days=days)
    if isinstance(value, dt.date):  # datetime too
        return value + delta
    if isinstance(value, str):
        try:
            if len(value) == 10:
                return (dt.date.fromisoformat(value) + delta).isoformat()
            moved = dt.datetime.fromisoformat(value.replace("Z", "+00:00")) + delta
        except ValueError:
            pass
        else:
            text = moved.isoformat()
            return text.replace("+00:00", "Z") if value.endswith("Z") else text
    raise MaskingError(f"masking of {where}: {value!r} is not a date or a timestamp, so it "
                       "cannot be shifted; mask the column as redact instead")


def _birth_of(number: str) -> dt.date | None:
    """The birth date inside an 18-digit resident identity number, if it has one."""
    if len(number) == 18 and number[:17].isdigit():
        try:
            return dt.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
        except ValueError:
            return None
    return None
