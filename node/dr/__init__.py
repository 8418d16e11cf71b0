"""The node's disaster-recovery side: lease, fence, drains and failover
(agent), and the HTTP health endpoint load balancers follow (http)."""
