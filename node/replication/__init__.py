"""Replication machinery: journal, vectors, ring sender, receiver, applier."""

# Bumped whenever the replication stream changes incompatibly.
PROTOCOL_VERSION = 1
