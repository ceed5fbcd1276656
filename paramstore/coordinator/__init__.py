"""The coordinator's replicated state machine: training-job metadata (a key/value store with
revisions and watch history), client sessions for exactly-once commands, and the numbered
cluster configuration (store groups, shard maps, worker leases, the model registry).

It is sans-I/O and deterministic: plug ``CoordinatorStateMachine`` into a
``consensus.runtime.RaftNode`` and propose ``encode_command(...)`` bytes; each proposal
resolves with the bytes of its ``CommandResult`` (``decode_result``).
"""

from paramstore.coordinator._codec import (
    CommandDecodeError,
    decode_command,
    decode_result,
    encode_command,
    encode_result,
)
from paramstore.coordinator._commands import (
    AddGroup,
    AssignShards,
    Command,
    CompareAndSet,
    Delete,
    DeletePrefix,
    DeleteRange,
    KeepAlive,
    Operation,
    Put,
    RegisterModel,
    RegisterWorker,
    RemoveGroup,
    Tick,
    UnregisterWorker,
)
from paramstore.coordinator._limits import CoordinatorLimits
from paramstore.coordinator._machine import SNAPSHOT_FORMAT_VERSION, CoordinatorStateMachine
from paramstore.coordinator._types import (
    Change,
    ChangeKind,
    CommandResult,
    Config,
    CoordinatorError,
    ErrorCode,
    GroupMember,
    KeyValue,
    LeafSpec,
    ModelSpec,
    RangeResult,
    SnapshotFormatError,
    SyncMode,
    WatchBatch,
    WorkerLease,
)

__all__ = [
    "SNAPSHOT_FORMAT_VERSION",
    "AddGroup",
    "AssignShards",
    "Change",
    "ChangeKind",
    "Command",
    "CommandDecodeError",
    "CommandResult",
    "CompareAndSet",
    "Config",
    "CoordinatorError",
    "CoordinatorLimits",
    "CoordinatorStateMachine",
    "Delete",
    "DeletePrefix",
    "DeleteRange",
    "ErrorCode",
    "GroupMember",
    "KeepAlive",
    "KeyValue",
    "LeafSpec",
    "ModelSpec",
    "Operation",
    "Put",
    "RangeResult",
    "RegisterModel",
    "RegisterWorker",
    "RemoveGroup",
    "SnapshotFormatError",
    "SyncMode",
    "Tick",
    "UnregisterWorker",
    "WatchBatch",
    "WorkerLease",
    "decode_command",
    "decode_result",
    "encode_command",
    "encode_result",
]
