"""Canonical values that every engine produces and consumes the same way.

A change travels between campuses as canonical Python values
(node.model, node.codec); each engine's values module converts its
database's representation to and from them. What is the same on every
engine lives here, once.
"""

from __future__ import annotations

import json

from node.model import Json


def canonical_json(text: str) -> Json:
    """JSON text in one spelling: keys sorted, no spaces, UTF-8 kept."""
    return Json(json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False))
