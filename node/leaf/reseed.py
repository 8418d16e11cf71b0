"""A leaf copies its subset again: when its route changed, or it fell past its retention.

Two things make what a leaf holds stop being what its route selects at its
parent: its route changed (node.leaf.state.route_change), or it lacked
transactions for longer than its parents keep them (a parent refuses to
follow it with ReseedNeeded). Either way it re-seeds, by itself:

1. **Upload first.** Its own writes must reach the ring before its tables are
   replaced, or the copy would not hold them: it waits until a parent's
   journal (as the parent last said) holds its own head; the sender keeps
   sending meanwhile. Status shows what it waits for.
2. **Copy.** With apply held (``res.apply_gate``), it asks the parent for a
   new copy of its subset and replaces its route's tables with it, in one
   database transaction that also sets the applied vector to the copy's
   (node.replication.join ``copy_again``; progress shows as a join). If the
   copy lacks one of its own transactions after all (written during the
   copy), nothing is changed, and it uploads and copies again.
3. **Reseat.** Its journal drops every other origin's frames and takes the
   copy's heads; its own frames stay. The applier reads the applied vector
   again, the route's fingerprint is recorded, and it follows from there.
"""

from __future__ import annotations

import asyncio
import logging

from node.hlc import HybridClock
from node.leaf.state import LeafLink, record_route
from node.replication.join import IN_RING, CopyBehind, Joiner
from node.replication.resources import NodeResources
from node.replication.state import ReplicationState
from ringsync.client import Credentials
from ringsync.config import NodeConfig

log = logging.getLogger(__name__)

UPLOAD_POLL_SECONDS = 0.5
ATTEMPTS = 5


class Reseeder:
    def __init__(self, config: NodeConfig, res: NodeResources, state: ReplicationState,
                 credentials: Credentials, link: LeafLink) -> None:
        self.config, self.res, self.state, self.link = config, res, state, link
        self.credentials = credentials
        self.reseeds = 0

    async def run(self, parent: str, why: str) -> None:
        """Re-seed from ``parent``; raises what stopped it (the follower retries)."""
        leaf, state, res = self.config.leaf, self.state, self.res
        assert leaf is not None
        log.warning("re-seeding from %s: %s", parent, why)
        progress = state.join
        progress.donor, progress.detail = parent, why
        try:
            for _ in range(ATTEMPTS):
                await self._uploaded(parent)
                joiner = Joiner(self.config, res, state, HybridClock(0), self.credentials)
                try:
                    async with res.apply_gate:
                        vector = await joiner.copy_again(parent, check_own=leaf.uploads)
                        await res.in_journal(res.journal.reseat, vector)
                        state.applied = {o: s for o, s in vector.items() if o != leaf.name}
                        state.restart_apply = True
                    break
                except CopyBehind as e:
                    log.info("the copy lacks some of this leaf's own writes (%s); uploading "
                             "them and copying again", e)
                finally:
                    await joiner.close()
            else:
                raise CopyBehind(f"{ATTEMPTS} copies from {parent} each lacked some of this "
                                 f"leaf's own writes; it is written to faster than it uploads")
        finally:
            progress.state = IN_RING
        await asyncio.to_thread(record_route, self.config.data_dir, leaf)
        self.reseeds += 1
        res.journal_changed.notify()
        log.info("re-seeded from %s at %s", parent, res.journal.vector())

    async def _uploaded(self, parent: str) -> None:
        """Wait until a parent's journal holds this leaf's own head."""
        leaf, state, res = self.config.leaf, self.state, self.res
        assert leaf is not None
        progress = state.join
        while True:
            own = res.journal.vector().get(leaf.name, 0)
            held = max((state.known.get(p, {}).get(leaf.name, 0) for p in leaf.parents),
                       default=0)
            if not leaf.uploads or held >= own:
                return
            progress.state = "uploading"
            progress.detail = (f"sending its own transactions up before re-seeding: "
                               f"{own - held} not yet held by a parent ({parent} or another)")
            await asyncio.sleep(UPLOAD_POLL_SECONDS)
