"""host:port addresses in configuration files, checked the same way everywhere.

Both the cluster/node files (ringsync.config) and the [dr] section
(ringsync.dr.settings) name addresses; this module sits below both, so
neither imports the other to check one.
"""

from __future__ import annotations

from pathlib import Path

from ringsync.errors import ConfigError


def check_address(address: str, path: Path, where: str) -> str:
    """``address`` if it is host:port with a port in 1-65535, else ConfigError
    naming the file and the key."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{path}: {where} = {address!r} must be host:port, e.g. 127.0.0.1:7400")
    return address
