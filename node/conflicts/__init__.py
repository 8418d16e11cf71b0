"""Multi-writer conflicts: policies (policy), per-row resolution (resolve) and
how row versions are stored beside the data (metacodec)."""
