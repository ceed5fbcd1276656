"""The operations a coordinator command carries, as plain frozen values.

These say what was asked, not whether it is allowed: the state machine checks every field
when it applies the command and answers a bad one with an error result.
"""

from __future__ import annotations

from dataclasses import dataclass

from paramstore.coordinator._types import GroupMember, ModelSpec

__all__ = [
    "AddGroup",
    "AssignShards",
    "Command",
    "CompareAndSet",
    "Delete",
    "DeletePrefix",
    "DeleteRange",
    "KeepAlive",
    "Operation",
    "Put",
    "RegisterModel",
    "RegisterWorker",
    "RemoveGroup",
    "Tick",
    "UnregisterWorker",
]


@dataclass(frozen=True, slots=True)
class Put:
    key: str
    value: bytes
    lease: str = ""  # a worker id whose lease owns the key


@dataclass(frozen=True, slots=True)
class Delete:
    key: str


@dataclass(frozen=True, slots=True)
class DeleteRange:
    start: str
    end: str = ""  # exclusive; "" means no upper bound


@dataclass(frozen=True, slots=True)
class DeletePrefix:
    prefix: str


@dataclass(frozen=True, slots=True)
class CompareAndSet:
    """Set ``key`` to ``new_value`` if exactly one given expectation holds."""

    key: str
    new_value: bytes
    expected_value: bytes | None = None
    expected_version: int | None = None
    expect_absent: bool = False
    lease: str = ""

    def __post_init__(self) -> None:
        given = (self.expected_value is not None) + (self.expected_version is not None) + self.expect_absent
        if given != 1:
            raise ValueError(
                "CompareAndSet needs exactly one of expected_value, expected_version, expect_absent; "
                f"got {given}"
            )


@dataclass(frozen=True, slots=True)
class AddGroup:
    group_id: int
    members: tuple[GroupMember, ...]


@dataclass(frozen=True, slots=True)
class RemoveGroup:
    group_id: int


@dataclass(frozen=True, slots=True)
class AssignShards:
    model: str
    assignments: tuple[tuple[int, int], ...]  # (shard, group id) pairs


@dataclass(frozen=True, slots=True)
class RegisterWorker:
    worker_id: str
    model: str
    ttl_ms: int


@dataclass(frozen=True, slots=True)
class KeepAlive:
    worker_id: str


@dataclass(frozen=True, slots=True)
class UnregisterWorker:
    worker_id: str


@dataclass(frozen=True, slots=True)
class RegisterModel:
    spec: ModelSpec


@dataclass(frozen=True, slots=True)
class Tick:
    """Advances the log clock only; carries no session."""


Operation = (
    Put
    | Delete
    | DeleteRange
    | DeletePrefix
    | CompareAndSet
    | AddGroup
    | RemoveGroup
    | AssignShards
    | RegisterWorker
    | KeepAlive
    | UnregisterWorker
    | RegisterModel
    | Tick
)


@dataclass(frozen=True, slots=True)
class Command:
    """One log entry: an operation, the client session it belongs to, and the leader's clock."""

    op: Operation
    client_id: str = ""
    sequence: int = 0
    now_ms: int = 0
