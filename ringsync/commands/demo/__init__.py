"""The demo: a local cluster of campus nodes, an LIS workload, and the console."""
