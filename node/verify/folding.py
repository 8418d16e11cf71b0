"""The fold loop: kept verification digests' deltas folded into their base.

With ``[verify] incremental`` every write appends a delta row per bucket it
touched (node.engines.postgres.digests) or the keys it touched
(node.engines.sqlite.digests); reading the digests sums base and deltas, so
the deltas are folded away every FOLD_SECONDS, off the engine thread, on a
connection of the verifier's own. Often, so that what a check reads stays
about what changed since the last few seconds: a bulk load of a million
rows leaves about a million delta rows, and a check read right after it
(before a fold) would read them all. A failure is logged and
retried next time; the digests stay correct meanwhile (only reads slow).
"""

from __future__ import annotations

import asyncio
import logging

from node.engines.base import Verifier

log = logging.getLogger(__name__)

FOLD_SECONDS = 5.0


async def fold_loop(verifier: Verifier, interval: float = FOLD_SECONDS) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            folded = await asyncio.to_thread(verifier.fold_digests)
        except Exception as e:  # never let the loop die; the next round retries
            log.warning("folding verification digests failed (retried in %.0f s): %s",
                        interval, e)
            continue
        if folded:
            log.debug("folded %d verification digest deltas", folded)
