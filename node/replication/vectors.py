"""Per-origin position vectors and the arithmetic on them.

A vector maps origin campus -> highest complete sequence number. Missing
origins count as 0. Sequence numbers are gapless per origin, so a vector
names exactly which transactions a campus holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

Vector = dict[str, int]


def lag(ahead: Mapping[str, int], behind: Mapping[str, int]) -> int:
    """Transactions ``ahead`` holds that ``behind`` lacks."""
    return sum(max(0, seq - behind.get(origin, 0)) for origin, seq in ahead.items())


def merge_max(a: Mapping[str, int], b: Mapping[str, int]) -> Vector:
    out = dict(a)
    for origin, seq in b.items():
        if seq > out.get(origin, 0):
            out[origin] = seq
    return out


def meet(vectors: Iterable[Mapping[str, int]], origins: Iterable[str]) -> Vector:
    """Component-wise minimum over vectors: what every one of them holds."""
    vectors = list(vectors)
    return {o: min((v.get(o, 0) for v in vectors), default=0) for o in origins}
