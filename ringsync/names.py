"""Names the node and the commands must agree on.

The node connects to PostgreSQL with this application_name, so operators,
fence checks (which sessions are the node's own) and the benchmark (which
excludes the node's sessions from what it measures) find its sessions.
Campus names, ring members' and leaves' alike, follow one rule.
"""

from __future__ import annotations

import re

CAMPUS_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")

NODE_APPLICATION_NAME = "ringsync-node"
