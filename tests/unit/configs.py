"""Cluster and node files for unit tests that build one campus in a temp dir.

Campus i of the ring listens (nominally) on 127.0.0.1:7001+i; nothing is
started there unless a test starts it.
"""

from __future__ import annotations

import json

UNIT_TABLES = ("patients", "lab_orders", "specimens", "lab_results")


def cluster_toml(ring: tuple[str, ...], extra: str = "") -> str:
    """A cluster file named "unit" replicating the demo's lab tables;
    ``extra``: more sections (e.g. [conflicts...]) before the campuses."""
    campuses = "".join(f'\n[[campus]]\nname = "{c}"\naddress = "127.0.0.1:{7001 + i}"\n'
                       for i, c in enumerate(ring))
    return (f'[cluster]\nname = "unit"\nring = {json.dumps(list(ring))}\n'
            f'tables = {json.dumps(list(UNIT_TABLES))}\n{extra}{campuses}')


def node_toml(campus: str, pki: str = "", extra: str = "") -> str:
    """A node file for ``campus`` on SQLite (``<campus>.db``), its certificates
    under ``pki`` (a directory prefix, e.g. "pki/"); ``extra``: top-level keys."""
    return (f'campus = "{campus}"\ncluster_file = "cluster.toml"\n{extra}'
            f'[database]\nengine = "sqlite"\npath = "{campus}.db"\n'
            f'[tls]\nca = "{pki}ca.crt"\ncert = "{pki}{campus}.crt"\nkey = "{pki}{campus}.key"\n')
