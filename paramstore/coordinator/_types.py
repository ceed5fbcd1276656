"""Value types of the coordinator: error codes, key/value records, model specs, the config."""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Change",
    "ChangeKind",
    "CommandResult",
    "Config",
    "CoordinatorError",
    "ErrorCode",
    "GroupMember",
    "KeyValue",
    "LeafSpec",
    "ModelSpec",
    "RangeResult",
    "Rejected",
    "SnapshotFormatError",
    "SyncMode",
    "WatchBatch",
    "WorkerLease",
    "canonical_json",
]


class ErrorCode(enum.IntEnum):
    """Numbers equal ``proto/coordinator.proto``'s ``ErrorCode`` (0 = unspecified is not a code)."""

    OK = 1
    INVALID_ARGUMENT = 2
    TOO_LARGE = 3
    CAS_MISMATCH = 4
    UNKNOWN_GROUP = 5
    UNKNOWN_MODEL = 6
    UNKNOWN_WORKER = 7
    GROUP_EXISTS = 8
    GROUP_IN_USE = 9
    SPEC_CONFLICT = 10
    WORKER_EXISTS = 11
    STALE_SEQUENCE = 12
    SESSION_EXPIRED = 13
    RESOURCE_EXHAUSTED = 14
    COMPACTED = 15
    FUTURE_REVISION = 16


class SyncMode(enum.IntEnum):
    BSP = 1
    SSP = 2
    ASYNC = 3


class ChangeKind(enum.IntEnum):
    PUT = 1
    DELETE = 2


class CoordinatorError(Exception):
    """A read that cannot be served as asked; ``code`` says why (e.g. ``COMPACTED``)."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


class Rejected(Exception):
    """Raised inside the state machine when a command is refused; ``apply`` turns it into an
    error result. Raised only before the command changed anything."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


class SnapshotFormatError(ValueError):
    """Snapshot bytes that do not decode to a consistent coordinator state."""


def canonical_json(value: object) -> str:
    """The one text of a JSON-able value: sorted keys, no spaces, ASCII, no NaN or infinities."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


# ---- key/value ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyValue:
    """A stored key. ``version`` is the revision of its last modification (what CompareAndSet's
    ``expected_version`` compares); ``lease`` is the worker id whose lease owns it, or ""."""

    key: str
    value: bytes
    version: int
    create_revision: int
    lease: str = ""


@dataclass(frozen=True, slots=True)
class Change:
    """One modification of the key/value store (each has its own revision)."""

    revision: int
    kind: ChangeKind
    key: str
    value: bytes = b""  # PUT only


@dataclass(frozen=True, slots=True)
class RangeResult:
    kvs: tuple[KeyValue, ...]
    more: bool  # keys past the limit are left: ask again from after the last key
    revision: int  # the store's revision the read saw (watch from here)


@dataclass(frozen=True, slots=True)
class WatchBatch:
    changes: tuple[Change, ...]
    # Pass this to the next ``changes_since``: everything up to it was looked at (changes
    # outside the prefix included), so nothing is scanned twice.
    next_revision: int
    more: bool  # changes after next_revision exist (the limit or the scan bound was reached)
    revision: int  # the store's current revision


# ---- cluster configuration ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GroupMember:
    node_id: int
    address: str


@dataclass(frozen=True, slots=True)
class LeafSpec:
    path: str
    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A model's layout. ``optimizer_json`` is a JSON object kept in canonical form, so that
    two specs that mean the same optimizer compare equal; build specs with ``create``."""

    name: str
    leaves: tuple[LeafSpec, ...]
    num_shards: int
    optimizer_json: str = "{}"
    sync_mode: SyncMode = SyncMode.BSP
    staleness_bound: int = 0

    @classmethod
    def create(
        cls,
        name: str,
        leaves: tuple[LeafSpec, ...] | list[LeafSpec],
        num_shards: int,
        optimizer: Mapping[str, Any] | None = None,
        sync_mode: SyncMode = SyncMode.BSP,
        staleness_bound: int = 0,
    ) -> ModelSpec:
        return cls(
            name=name,
            leaves=tuple(leaves),
            num_shards=num_shards,
            optimizer_json=canonical_json(dict(optimizer or {})),
            sync_mode=sync_mode,
            staleness_bound=staleness_bound,
        )

    @property
    def optimizer(self) -> dict[str, Any]:
        """A fresh copy of the optimizer spec."""
        value = json.loads(self.optimizer_json)
        assert isinstance(value, dict), "optimizer_json is validated to be a JSON object"
        return value


@dataclass(frozen=True, slots=True)
class WorkerLease:
    worker_id: str
    model: str
    ttl_ms: int
    deadline_ms: int  # on the log clock: the lease expires once the clock reaches it


@dataclass(frozen=True)
class Config:
    """One numbered cluster configuration (read-only views; a new change makes a new Config).

    ``shard_maps[model][shard]`` is the group that owns the shard, 0 while unassigned.
    ``workers`` maps each live worker to its model.
    """

    number: int
    groups: Mapping[int, tuple[GroupMember, ...]]
    models: Mapping[str, ModelSpec]
    shard_maps: Mapping[str, tuple[int, ...]]
    workers: Mapping[str, str]

    def group_of(self, model: str, shard: int) -> int:
        """The group owning ``shard`` of ``model`` (0 if unassigned); KeyError for an unknown model."""
        return self.shard_maps[model][shard]

    def workers_of(self, model: str) -> tuple[str, ...]:
        """The live workers of ``model``, sorted."""
        return tuple(sorted(worker for worker, m in self.workers.items() if m == model))


# ---- results --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What applying one command gave (see ``CommandResult`` in ``proto/coordinator.proto``)."""

    code: ErrorCode
    message: str = ""
    revision: int = 0
    config_number: int = 0
    key_version: int = 0
    deleted: int = 0
    more: bool = False
    lease_deadline_ms: int = 0

    @property
    def ok(self) -> bool:
        return self.code == ErrorCode.OK
