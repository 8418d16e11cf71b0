"""The project's exception hierarchy: one root, so callers can catch ours.

Each class names the gRPC status code a node answers with when it refuses a
call for that reason (``grpc_code``, a ``grpc.StatusCode`` member name, the
way psycopg's errors carry their SQLSTATE); subclasses inherit it. The node's
servicers (node/servicers.py) turn the name into the code in one lookup.
"""

from __future__ import annotations

from typing import ClassVar


class RingsyncError(Exception):
    """Root of every error ringsync raises on purpose.

    The message is written for the operator: it says what is wrong and what
    to do about it.
    """

    grpc_code: ClassVar[str] = "INTERNAL"


class ConfigError(RingsyncError):
    """A configuration file is missing, malformed or inconsistent."""


class TLSConfigError(ConfigError):
    """A certificate or key is missing, unreadable or does not fit."""


class EngineError(RingsyncError):
    """The campus database refused an operation or is unusable."""


class SchemaError(EngineError):
    """A replicated table cannot be replicated as it is defined."""


class ProtocolError(RingsyncError):
    """A peer sent a message that breaks the replication protocol."""

    grpc_code = "INVALID_ARGUMENT"


class JournalError(RingsyncError):
    """The node's journal is unreadable or inconsistent."""

    grpc_code = "UNAVAILABLE"


class SchemaMismatch(RingsyncError):
    """Two campuses define a replicated table differently."""

    grpc_code = "FAILED_PRECONDITION"


class ReseedNeeded(RingsyncError):
    """A leaf lacks what its parent's journal no longer holds: it must copy its
    subset again (node.leaf.reseed)."""

    grpc_code = "FAILED_PRECONDITION"


class PeerRejected(RingsyncError):
    """A caller's identity does not allow what it asked for."""

    grpc_code = "PERMISSION_DENIED"


class NotReady(RingsyncError):
    """This campus is still joining the ring and cannot serve that yet."""

    grpc_code = "UNAVAILABLE"


class JoinRefused(RingsyncError):
    """A joining campus holds data that differs from its donor's."""
