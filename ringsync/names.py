"""Names the node and the commands must agree on.

The node connects to PostgreSQL with this application_name, so operators,
fence checks (which sessions are the node's own) and the benchmark (which
excludes the node's sessions from what it measures) find its sessions.
"""

from __future__ import annotations

NODE_APPLICATION_NAME = "ringsync-node"
