"""Messages the console's workers post to the UI."""

from __future__ import annotations

import time
from collections.abc import Sequence

from textual.message import Message

from ringsync.client import NodeReply


class StatusRefreshed(Message):
    """A fresh status snapshot from every campus (unreachable ones carry an error)."""

    def __init__(self, replies: Sequence[NodeReply]) -> None:
        super().__init__()
        self.replies = list(replies)
        self.at = time.time()
