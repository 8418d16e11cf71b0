"""Disaster recovery shared by nodes and clients: settings (settings), the
routing map and the pure rules on it (routes), the store that holds it
(routestore: the RouteStore Protocol; store: etcd; memstore: in memory, for
unit tests), the routing map as an operator sees it (routemap), and the
planned route moves (moves: switchover, switchback, failback).

The node side (lease, fencing, HTTP health endpoint, automatic failover)
lives in node.dr; this package holds what both sides must agree on.
"""
