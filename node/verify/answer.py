"""The node's answer to Control.Verify: validate, scan off the engine thread, reply.

One verification scan runs at a time per node (a second waits its turn), in
a worker thread on the verifier's own connection: apply and capture keep
running on the engine thread meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import time

from node.leaf.route import LeafRoute
from node.leaf.verify import route_view
from node.runtime import NodeRuntime
from node.verify.rowhash import MAX_BITS, display_field, parse_record
from node.verify.snapshot import TableVerify
from ringsync.errors import NotReady, ProtocolError, RingsyncError
from ringsync.v1 import control_pb2 as cpb
from ringsync.v1 import replication_pb2 as rpb

_ONE_AT_A_TIME = asyncio.Lock()
ANSWER_BYTES = 6 << 20  # below the 8 MB a node sends by default ([replication] max_message_bytes)


class AnswerTooLarge(RingsyncError):
    """The rows of the buckets asked for do not fit one message: ask for fewer."""

    grpc_code = "RESOURCE_EXHAUSTED"


def check_request(request: cpb.VerifyRequest, tables: list[str]) -> None:
    """Refuse a question this node cannot answer, saying why (INVALID_ARGUMENT)."""
    if request.table not in tables:
        raise ProtocolError(f"table {request.table!r} is not replicated (tables: {tables})")
    if request.bits > MAX_BITS:
        raise ProtocolError(f"bucket depth {request.bits} is deeper than {MAX_BITS} bits")
    if any(b >> request.bits for b in request.buckets):
        raise ProtocolError(f"a bucket number is not below 2^{request.bits}")


def _key_json(kinds: tuple[str, ...], columns: tuple[str, ...], key_text: str) -> str:
    fields = parse_record(key_text)
    return json.dumps({c: display_field(k, f) for c, k, f in zip(columns, kinds, fields,
                                                                 strict=True)},
                      ensure_ascii=False)


async def answer_verify(rt: NodeRuntime, request: cpb.VerifyRequest) -> cpb.VerifyResponse:
    check_request(request, list(rt.config.tables))
    if not rt.initialized.is_set():
        raise NotReady(f"campus {rt.campus} is still joining the ring: its copy is not "
                       f"complete, so it has nothing to compare yet")
    verifier = rt.engine.verifier
    async with _ONE_AT_A_TIME:
        started = time.monotonic()
        result: TableVerify
        if request.route:  # a leaf's view of this table (node.leaf.verify)
            result = await asyncio.to_thread(
                route_view, rt.engine, rt.campus, rt.config.cluster.leaf(request.route),
                request.table, request.bits, list(request.buckets))
        elif request.buckets:
            result = await asyncio.to_thread(verifier.row_hashes, request.table, request.bits,
                                             list(request.buckets))
        else:
            result = await asyncio.to_thread(verifier.bucket_digests, request.table,
                                             request.bits, request.incremental)
        seconds = time.monotonic() - started
    shape = rt.engine.shapes()[request.table]
    leaf = rt.config.cluster.leaf(request.route) if request.route else None
    if leaf is not None and request.table in leaf.columns:  # keys as the leaf holds them
        shape = LeafRoute(leaf, {t: s for t, s in rt.engine.shapes().items()
                                 if t in leaf.tables}).shapes[request.table]
    key_kinds = tuple(shape.kinds[i] for i in shape.key_indexes)
    answer = cpb.VerifyResponse(
        campus=rt.campus, table=request.table, bits=request.bits,
        applied=rpb.Vector(seqs=result.applied), journal=rpb.Vector(seqs=rt.journal.vector()),
        buckets=[cpb.BucketDigest(bucket=b, rows=d.rows, digest=bytes.fromhex(d.hex()))
                 for b, d in sorted(result.buckets.items())],
        rows=[cpb.RowDigest(key=r.key_text, bucket=r.bucket, digest=r.digest,
                            key_json=_key_json(key_kinds, shape.key_columns, r.key_text))
              for r in result.rows],
        seconds=seconds, mode=result.mode, drift=result.drift)
    limit = min(ANSWER_BYTES, rt.config.replication.max_message_bytes - (64 << 10))
    if len(request.buckets) and answer.ByteSize() > limit:
        raise AnswerTooLarge(f"the rows of the {len(request.buckets)} bucket(s) asked for take "
                             f"{answer.ByteSize():,} bytes, more than {limit:,}: ask for fewer")
    return answer
