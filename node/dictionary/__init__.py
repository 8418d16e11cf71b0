"""Per-campus code dictionaries: local codes translated to canonical ones at
the edges of the node (ringsync.dictionaries; node.dictionary.coded)."""
