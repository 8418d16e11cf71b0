"""Row version metadata as stored beside the data (one text value per row).

The common case is one write per register whose value is in the table
already; only the origin, sequence and stamp are stored then. Values are
stored only when the table cannot supply them: concurrent versions kept for
a later decision, and the registers of a deleted row (its tombstone).

Row keys are stored as canonical text too, so one metadata table serves
every replicated table on both engines.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

from node.codec import from_value, to_value
from node.conflicts.resolve import LIVE, Rec, RowMeta, is_mark
from ringsync.v1 import values_pb2 as pb

_OMITTED = object()


def _enc(value: Any) -> str:
    out = pb.Value()
    to_value(value, out)
    return base64.b64encode(out.SerializeToString()).decode("ascii")


def _dec(text: str) -> Any:
    return from_value(pb.Value.FromString(base64.b64decode(text)))


def key_text(key: Sequence[Any]) -> str:
    """A row key as canonical text: equal keys give equal text on every engine."""
    return json.dumps([_enc(v) for v in key], separators=(",", ":"))


def encode_meta(meta: RowMeta, row: tuple[Any, ...] | None) -> str:
    if row is not None and len(meta.recs) == 1:
        # The common case (one writer, row present): every value is implied.
        r = meta.recs[0]
        regs = ",".join(f"[{g}]" for g in r.regs)
        return f'{{"r":[[{json.dumps(r.origin)},{r.seq},{r.hlc},[{regs}]]]}}'
    return encode_meta_general(meta, row)


def encode_meta_general(meta: RowMeta, row: tuple[Any, ...] | None) -> str:
    counts: dict[int, int] = {}
    for r in meta.recs:
        for g in r.regs:
            counts[g] = counts.get(g, 0) + 1
    recs = []
    for r in meta.recs:
        regs = []
        for g, value in r.regs.items():
            implied = is_mark(g) or (row is not None and counts[g] == 1)
            regs.append([g] if implied else [g, _enc(value)])
        recs.append([r.origin, r.seq, r.hlc, regs])
    doc: dict[str, Any] = {"r": recs}
    if row is None and meta.counters:
        doc["c"] = [[c, _enc(v)] for c, v in meta.counters.items()]
    return json.dumps(doc, separators=(",", ":"))


def decode_meta(text: str, row: tuple[Any, ...] | None, delta: Sequence[int]) -> RowMeta:
    doc = json.loads(text)
    recs = []
    for origin, seq, hlc, regs in doc["r"]:
        values: dict[int, Any] = {}
        for item in regs:
            g = item[0]
            if len(item) > 1:
                values[g] = _dec(item[1])
            elif is_mark(g):
                values[g] = True  # a delta column's change mark carries no value
            elif g == LIVE:
                values[g] = row is not None
            else:
                values[g] = row[g] if row is not None else None
        recs.append(Rec(origin, seq, hlc, values))
    if "c" in doc:
        counters = {c: _dec(v) for c, v in doc["c"]}
    else:
        counters = {c: row[c] for c in delta} if row is not None else {}
    return RowMeta(recs, counters)
