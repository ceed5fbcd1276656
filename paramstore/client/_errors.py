"""Errors a coordinator client raises: each says what failed and what the caller can do."""

from __future__ import annotations

from paramstore.coordinator import CommandResult, ErrorCode

__all__ = [
    "ClientError",
    "ClusterUnavailableError",
    "CommandRejectedError",
    "DeadlineExceededError",
    "RequestInvalidError",
]


class ClientError(Exception):
    """Base class of everything the client raises."""


class ClusterUnavailableError(ClientError):
    """No coordinator answered as leader within the call's deadline and retry budget."""


class DeadlineExceededError(ClientError):
    """The call's deadline passed; a command's outcome is unknown (retrying it with the same
    sequence is safe: the client does so itself until the deadline)."""


class RequestInvalidError(ClientError):
    """The server refused the request as malformed (INVALID_ARGUMENT); nothing changed."""


class CommandRejectedError(ClientError):
    """The state machine applied the command as a refusal (``result.code`` says why)."""

    def __init__(self, result: CommandResult) -> None:
        super().__init__(f"{ErrorCode(result.code).name}: {result.message}")
        self.result = result
        self.code = ErrorCode(result.code)
