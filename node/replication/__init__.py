"""Replication machinery: journal, vectors, ring sender, receiver, applier.

The loops (capture, applier, sender, pruner, syncrep, join) and the stream
handlers (receiver, snapshot) share two parts, created by node.runtime:
``resources.NodeResources`` (engine, journal, worker threads, notifiers)
and ``state.ReplicationState`` (vectors, links, counters, errors).
"""

# Bumped whenever the replication stream changes incompatibly.
# 2: frames may carry INSERTs as COPY text (TxnFrame.raw_inserts).
PROTOCOL_VERSION = 2
