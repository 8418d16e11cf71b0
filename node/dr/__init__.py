"""The node's disaster-recovery side: lease, fence, drains and failover
(agent; its pure decisions in decisions, the leader's in leading, what it
uses of the node in host, the set fences in setfencing), single-writer set
epochs and verdicts (sets), and the HTTP health endpoint load balancers
follow (http)."""
