"""Value types of the shard state machine: error codes, policies, results, errors."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "ClientSequence",
    "ErrorCode",
    "NonFinitePolicy",
    "Rejected",
    "Replay",
    "ShardError",
    "ShardResult",
    "SnapshotFormatError",
]


class ErrorCode(enum.IntEnum):
    """Numbers equal ``proto/shard.proto``'s ``ErrorCode`` (0 = unspecified is not a code)."""

    OK = 1
    INVALID_ARGUMENT = 2
    TOO_LARGE = 3
    UNKNOWN_MODEL = 4
    UNKNOWN_KEY = 5
    SPEC_CONFLICT = 6
    SHAPE_MISMATCH = 7
    DTYPE_MISMATCH = 8
    NON_FINITE = 9
    STALE_SEQUENCE = 10
    PARTIAL_DUPLICATE = 11
    RESOURCE_EXHAUSTED = 12
    NOT_A_WORKER = 13
    WRONG_STEP = 14
    WRONG_GROUP = 15


class NonFinitePolicy(enum.IntEnum):
    """What a push with a NaN or infinite gradient does (``proto/shard.proto``'s numbers)."""

    REJECT = 1  # refused, changes nothing, and a retry is refused again
    SKIP = 2  # consumed (deduplicated, counted) without touching the weights


@dataclass(frozen=True, slots=True, order=True)
class ClientSequence:
    client_id: str
    sequence: int


@dataclass(frozen=True, slots=True)
class Replay:
    """A covered push that was applied before, with the encoded result it got then."""

    push: ClientSequence
    result: bytes


@dataclass(frozen=True, slots=True)
class ShardResult:
    """What applying one command gave (``ShardResult`` in ``proto/shard.proto``)."""

    code: ErrorCode
    message: str = ""
    step: int = 0
    skipped: bool = False
    keys: tuple[str, ...] = ()
    installed: int = 0
    duplicate: bool = False
    replays: tuple[Replay, ...] = ()

    @property
    def ok(self) -> bool:
        return self.code == ErrorCode.OK


class Rejected(Exception):
    """Raised inside the state machine when a command is refused, before it changed anything."""

    def __init__(self, code: ErrorCode, message: str, **fields: object) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.fields = fields


class ShardError(Exception):
    """A read that cannot be served as asked (unknown model or key); ``code`` says why."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


class SnapshotFormatError(ValueError):
    """Snapshot bytes that do not decode to a consistent shard state."""
