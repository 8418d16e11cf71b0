"""A leaf checked against its parent: does it hold exactly what its route selects?

``ctl verify`` runs this for every ``[[leaf]]`` after the ring's own
comparison (ringsync.verification). Per table of the leaf's route:

1. the leaf hashes its rows into key-hash buckets, as every campus does;
2. its first parent that answers hashes its own rows *as the leaf's route
   makes them* (filtered, masked, projected: node.leaf.verify), into the
   same buckets;
3. buckets that differ are narrowed to rows: ``missing`` (the route selects
   it, the leaf lacks it), ``extra`` (the leaf holds a row the route does not
   select, or one deleted at the ring), ``changed`` (both hold the key, with
   different values);
4. a difference is ``in_flight`` while the two have not applied the same
   transactions (the leaf's applied vector behind its parent's, or the
   parent lacking the leaf's own latest), and is asked again after
   ``settle`` seconds, up to ``ROUNDS`` times; what remains is ``diverged``.

A leaf's own writes that moved a row out of its own subset stay at the leaf
(docs/leaves.md): they show as ``extra``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import grpc

from ringsync.client import ClusterClient, describe_rpc_error
from ringsync.leaves import LeafSettings

BITS = 8
ROUNDS = 3
ROW_BUCKETS_PER_ASK = 32


class Unanswered(Exception):
    """A campus (the leaf, or the parent asked) did not answer."""

    def __init__(self, campus: str, reason: str) -> None:
        super().__init__(f"{campus}: {reason}")
        self.campus, self.reason = campus, reason


def _buckets(answer: Any) -> dict[int, tuple[int, bytes]]:
    return {b.bucket: (b.rows, b.digest) for b in answer.buckets if b.rows}


def _behind(leaf: str, leaf_applied: dict[str, int], parent_applied: dict[str, int]) -> bool:
    """Have the two applied different transactions (so rows may still be moving)?"""
    theirs = {o: s for o, s in parent_applied.items() if o != leaf}
    mine = {o: s for o, s in leaf_applied.items() if o != leaf}
    return (any(mine.get(o, 0) != s for o, s in theirs.items() if s)
            or parent_applied.get(leaf, 0) < leaf_applied.get(leaf, 0))


async def _rows(client: ClusterClient, campus: str, table: str, buckets: list[int],
                route: str) -> dict[str, tuple[bytes, str]]:
    """key text -> (row digest, key as JSON) for the rows of ``buckets``."""
    out: dict[str, tuple[bytes, str]] = {}
    for i in range(0, len(buckets), ROW_BUCKETS_PER_ASK):
        answer = await client.verify(campus, table, BITS, buckets[i:i + ROW_BUCKETS_PER_ASK],
                                     route=route)
        out.update({r.key: (r.digest, r.key_json) for r in answer.rows})
    return out


async def _table(client: ClusterClient, leaf: LeafSettings, parent: str,
                 table: str) -> tuple[dict[str, Any], list[dict[str, Any]], bool]:
    """One round over one table: its summary, its differences, and whether the
    two had applied different transactions (differences may be in flight)."""
    try:
        mine = await client.verify(leaf.name, table, BITS)
    except grpc.aio.AioRpcError as e:
        raise Unanswered(leaf.name, describe_rpc_error(e)) from None
    try:
        theirs = await client.verify(parent, table, BITS, route=leaf.name)
    except grpc.aio.AioRpcError as e:
        raise Unanswered(parent, describe_rpc_error(e)) from None
    moving = _behind(leaf.name, dict(mine.applied.seqs), dict(theirs.applied.seqs))
    a, b = _buckets(mine), _buckets(theirs)
    summary = {"leaf_rows": sum(n for n, _ in a.values()),
               "parent_rows": sum(n for n, _ in b.values()),
               "held_back": bool(theirs.drift)}
    differing = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    if not differing:
        return summary, [], moving
    held = await _rows(client, leaf.name, table, differing, "")
    selected = await _rows(client, parent, table, differing, leaf.name)
    out = []
    for key in sorted(held.keys() | selected.keys()):
        here, there = held.get(key), selected.get(key)
        if here is not None and there is not None and here[0] == there[0]:
            continue
        kind = "missing" if here is None else "extra" if there is None else "changed"
        shown = (there or here)[1]  # type: ignore[index]
        out.append({"table": table, "key": json.loads(shown), "kind": kind})
    return summary, out, moving


async def check_leaf(client: ClusterClient, leaf: LeafSettings, tables: list[str],
                     settle: float) -> dict[str, Any]:
    """The leaf's report: {"parent", "consistent", "tables", "differences", "error"}."""
    wanted = [t for t in leaf.tables if t in tables]
    errors = []
    for parent in leaf.parents:
        try:
            return await _rounds(client, leaf, parent, wanted, settle)
        except Unanswered as e:
            errors.append(f"{e.campus}: {e.reason}")
            if e.campus == leaf.name:
                break  # another parent cannot answer for the leaf itself
    return {"parent": None, "consistent": False, "tables": {}, "differences": [],
            "error": "; ".join(errors)}


async def _rounds(client: ClusterClient, leaf: LeafSettings, parent: str, tables: list[str],
                  settle: float) -> dict[str, Any]:
    summaries: dict[str, Any] = {}
    found: dict[str, list[dict[str, Any]]] = {}
    pending = list(tables)
    for round_ in range(ROUNDS):
        still = []
        for table in pending:
            summaries[table], found[table], moving = await _table(client, leaf, parent, table)
            for d in found[table]:
                d["state"] = "in_flight" if moving else "diverged"
            if found[table] and moving:
                still.append(table)
        pending = still
        if not pending or round_ == ROUNDS - 1:
            break
        await asyncio.sleep(settle)
    differences = [d for t in tables for d in found.get(t, [])]
    return {"parent": parent, "consistent": not differences and not any(
        s["held_back"] for s in summaries.values()), "tables": summaries,
        "differences": differences, "error": None}
