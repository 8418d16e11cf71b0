"""The project's exception hierarchy: one root, so callers can catch ours."""

from __future__ import annotations


class RingsyncError(Exception):
    """Root of every error ringsync raises on purpose.

    The message is written for the operator: it says what is wrong and what
    to do about it.
    """


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


class JournalError(RingsyncError):
    """The node's journal is unreadable or inconsistent."""


class SchemaMismatch(RingsyncError):
    """Two campuses define a replicated table differently."""


class PeerRejected(RingsyncError):
    """A caller's identity does not allow what it asked for."""


class NotReady(RingsyncError):
    """This campus is still joining the ring and cannot serve that yet."""


class JoinRefused(RingsyncError):
    """A joining campus holds data that differs from its donor's."""
