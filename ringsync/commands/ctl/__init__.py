"""`ringsync ctl`: scripted calls to the nodes, text or --json.

    status     status of every node and link; verify: table digests compared
    conflicts  the conflict log: list, show, resolve
    dlq        dead letters: list, show, retry, discard
    dr         the routing map and planned moves (route, switchover, switchback, failback)
"""
