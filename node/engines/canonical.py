"""Canonical values that every engine produces and consumes the same way.

A change travels between campuses as canonical Python values
(node.model, node.codec); each engine's values module converts its
database's representation to and from them. What is the same on every
engine lives here, once.
"""

from __future__ import annotations

import json
from decimal import Decimal

from node.model import Json


def canonical_json(text: str) -> Json:
    """JSON text in one spelling: keys sorted, no spaces, UTF-8 kept."""
    return Json(json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False))


def canonical_decimal(v: Decimal) -> Decimal:
    """An exact decimal without the trailing fractional zeros a column's
    declared scale adds (MariaDB's DECIMAL(20,6) reads 12.5 as 12.500000):
    equal values get one spelling, so checksums and row hashes agree
    across campuses whatever scale each declares. Never in exponent form."""
    if v.as_tuple().exponent >= 0:  # type: ignore[operator]
        return v
    text = format(v, "f").rstrip("0").rstrip(".")
    return Decimal(text if text not in ("", "-", "-0") else "0")
