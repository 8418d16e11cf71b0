"""`ringsync bench`: throughput, lag, CPU and memory beside PostgreSQL's native
logical replication, measured in one run on one machine (see run.py)."""
