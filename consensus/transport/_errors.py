"""Exceptions the transport raises on purpose."""

from __future__ import annotations

from consensus.errors import RaftError


class TransportError(RaftError):
    """Base class of the transport's errors."""


class MessageTooLargeError(TransportError, ValueError):
    """A single message whose encoding cannot fit in one gRPC message (it is never sent)."""


class FaultRuleError(TransportError, ValueError):
    """A fault rule with a field out of range, or one rule too many."""
