"""Disaster recovery shared by nodes and clients: settings, the routing map
in etcd, and the planned route moves (switchover, switchback, failback).

The node side (lease, fencing, HTTP health endpoint, automatic failover)
lives in node.dr; this package holds what both sides must agree on.
"""
