from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ErrorCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_CODE_UNSPECIFIED: _ClassVar[ErrorCode]
    ERROR_CODE_OK: _ClassVar[ErrorCode]
    ERROR_CODE_INVALID_ARGUMENT: _ClassVar[ErrorCode]
    ERROR_CODE_TOO_LARGE: _ClassVar[ErrorCode]
    ERROR_CODE_CAS_MISMATCH: _ClassVar[ErrorCode]
    ERROR_CODE_UNKNOWN_GROUP: _ClassVar[ErrorCode]
    ERROR_CODE_UNKNOWN_MODEL: _ClassVar[ErrorCode]
    ERROR_CODE_UNKNOWN_WORKER: _ClassVar[ErrorCode]
    ERROR_CODE_GROUP_EXISTS: _ClassVar[ErrorCode]
    ERROR_CODE_GROUP_IN_USE: _ClassVar[ErrorCode]
    ERROR_CODE_SPEC_CONFLICT: _ClassVar[ErrorCode]
    ERROR_CODE_WORKER_EXISTS: _ClassVar[ErrorCode]
    ERROR_CODE_STALE_SEQUENCE: _ClassVar[ErrorCode]
    ERROR_CODE_SESSION_EXPIRED: _ClassVar[ErrorCode]
    ERROR_CODE_RESOURCE_EXHAUSTED: _ClassVar[ErrorCode]
    ERROR_CODE_COMPACTED: _ClassVar[ErrorCode]
    ERROR_CODE_FUTURE_REVISION: _ClassVar[ErrorCode]

class SyncMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SYNC_MODE_UNSPECIFIED: _ClassVar[SyncMode]
    SYNC_MODE_BSP: _ClassVar[SyncMode]
    SYNC_MODE_SSP: _ClassVar[SyncMode]
    SYNC_MODE_ASYNC: _ClassVar[SyncMode]

class ChangeKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHANGE_KIND_UNSPECIFIED: _ClassVar[ChangeKind]
    CHANGE_KIND_PUT: _ClassVar[ChangeKind]
    CHANGE_KIND_DELETE: _ClassVar[ChangeKind]
ERROR_CODE_UNSPECIFIED: ErrorCode
ERROR_CODE_OK: ErrorCode
ERROR_CODE_INVALID_ARGUMENT: ErrorCode
ERROR_CODE_TOO_LARGE: ErrorCode
ERROR_CODE_CAS_MISMATCH: ErrorCode
ERROR_CODE_UNKNOWN_GROUP: ErrorCode
ERROR_CODE_UNKNOWN_MODEL: ErrorCode
ERROR_CODE_UNKNOWN_WORKER: ErrorCode
ERROR_CODE_GROUP_EXISTS: ErrorCode
ERROR_CODE_GROUP_IN_USE: ErrorCode
ERROR_CODE_SPEC_CONFLICT: ErrorCode
ERROR_CODE_WORKER_EXISTS: ErrorCode
ERROR_CODE_STALE_SEQUENCE: ErrorCode
ERROR_CODE_SESSION_EXPIRED: ErrorCode
ERROR_CODE_RESOURCE_EXHAUSTED: ErrorCode
ERROR_CODE_COMPACTED: ErrorCode
ERROR_CODE_FUTURE_REVISION: ErrorCode
SYNC_MODE_UNSPECIFIED: SyncMode
SYNC_MODE_BSP: SyncMode
SYNC_MODE_SSP: SyncMode
SYNC_MODE_ASYNC: SyncMode
CHANGE_KIND_UNSPECIFIED: ChangeKind
CHANGE_KIND_PUT: ChangeKind
CHANGE_KIND_DELETE: ChangeKind

class Put(_message.Message):
    __slots__ = ("key", "value", "lease")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: bytes
    lease: str
    def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ..., lease: _Optional[str] = ...) -> None: ...

class Delete(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: str
    def __init__(self, key: _Optional[str] = ...) -> None: ...

class DeleteRange(_message.Message):
    __slots__ = ("start", "end")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    start: str
    end: str
    def __init__(self, start: _Optional[str] = ..., end: _Optional[str] = ...) -> None: ...

class DeletePrefix(_message.Message):
    __slots__ = ("prefix",)
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    def __init__(self, prefix: _Optional[str] = ...) -> None: ...

class CompareAndSet(_message.Message):
    __slots__ = ("key", "expected_value", "expected_version", "expect_absent", "new_value", "lease")
    KEY_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VALUE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    EXPECT_ABSENT_FIELD_NUMBER: _ClassVar[int]
    NEW_VALUE_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    key: str
    expected_value: bytes
    expected_version: int
    expect_absent: bool
    new_value: bytes
    lease: str
    def __init__(self, key: _Optional[str] = ..., expected_value: _Optional[bytes] = ..., expected_version: _Optional[int] = ..., expect_absent: _Optional[bool] = ..., new_value: _Optional[bytes] = ..., lease: _Optional[str] = ...) -> None: ...

class GroupMember(_message.Message):
    __slots__ = ("node_id", "address")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    address: str
    def __init__(self, node_id: _Optional[int] = ..., address: _Optional[str] = ...) -> None: ...

class AddGroup(_message.Message):
    __slots__ = ("group_id", "members")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    group_id: int
    members: _containers.RepeatedCompositeFieldContainer[GroupMember]
    def __init__(self, group_id: _Optional[int] = ..., members: _Optional[_Iterable[_Union[GroupMember, _Mapping]]] = ...) -> None: ...

class RemoveGroup(_message.Message):
    __slots__ = ("group_id",)
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    group_id: int
    def __init__(self, group_id: _Optional[int] = ...) -> None: ...

class ShardAssignment(_message.Message):
    __slots__ = ("shard", "group_id")
    SHARD_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    shard: int
    group_id: int
    def __init__(self, shard: _Optional[int] = ..., group_id: _Optional[int] = ...) -> None: ...

class AssignShards(_message.Message):
    __slots__ = ("model", "assignments")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENTS_FIELD_NUMBER: _ClassVar[int]
    model: str
    assignments: _containers.RepeatedCompositeFieldContainer[ShardAssignment]
    def __init__(self, model: _Optional[str] = ..., assignments: _Optional[_Iterable[_Union[ShardAssignment, _Mapping]]] = ...) -> None: ...

class RegisterWorker(_message.Message):
    __slots__ = ("worker_id", "model", "ttl_ms")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    model: str
    ttl_ms: int
    def __init__(self, worker_id: _Optional[str] = ..., model: _Optional[str] = ..., ttl_ms: _Optional[int] = ...) -> None: ...

class KeepAlive(_message.Message):
    __slots__ = ("worker_id",)
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    def __init__(self, worker_id: _Optional[str] = ...) -> None: ...

class UnregisterWorker(_message.Message):
    __slots__ = ("worker_id",)
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    def __init__(self, worker_id: _Optional[str] = ...) -> None: ...

class LeafSpec(_message.Message):
    __slots__ = ("path", "shape", "dtype")
    PATH_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    path: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    dtype: str
    def __init__(self, path: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., dtype: _Optional[str] = ...) -> None: ...

class ModelSpec(_message.Message):
    __slots__ = ("name", "leaves", "num_shards", "optimizer_json", "sync_mode", "staleness_bound")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LEAVES_FIELD_NUMBER: _ClassVar[int]
    NUM_SHARDS_FIELD_NUMBER: _ClassVar[int]
    OPTIMIZER_JSON_FIELD_NUMBER: _ClassVar[int]
    SYNC_MODE_FIELD_NUMBER: _ClassVar[int]
    STALENESS_BOUND_FIELD_NUMBER: _ClassVar[int]
    name: str
    leaves: _containers.RepeatedCompositeFieldContainer[LeafSpec]
    num_shards: int
    optimizer_json: str
    sync_mode: SyncMode
    staleness_bound: int
    def __init__(self, name: _Optional[str] = ..., leaves: _Optional[_Iterable[_Union[LeafSpec, _Mapping]]] = ..., num_shards: _Optional[int] = ..., optimizer_json: _Optional[str] = ..., sync_mode: _Optional[_Union[SyncMode, str]] = ..., staleness_bound: _Optional[int] = ...) -> None: ...

class RegisterModel(_message.Message):
    __slots__ = ("spec",)
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: ModelSpec
    def __init__(self, spec: _Optional[_Union[ModelSpec, _Mapping]] = ...) -> None: ...

class Tick(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Command(_message.Message):
    __slots__ = ("client_id", "sequence", "now_ms", "put", "delete", "delete_range", "delete_prefix", "compare_and_set", "add_group", "remove_group", "assign_shards", "register_worker", "keep_alive", "unregister_worker", "register_model", "tick")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    NOW_MS_FIELD_NUMBER: _ClassVar[int]
    PUT_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    DELETE_RANGE_FIELD_NUMBER: _ClassVar[int]
    DELETE_PREFIX_FIELD_NUMBER: _ClassVar[int]
    COMPARE_AND_SET_FIELD_NUMBER: _ClassVar[int]
    ADD_GROUP_FIELD_NUMBER: _ClassVar[int]
    REMOVE_GROUP_FIELD_NUMBER: _ClassVar[int]
    ASSIGN_SHARDS_FIELD_NUMBER: _ClassVar[int]
    REGISTER_WORKER_FIELD_NUMBER: _ClassVar[int]
    KEEP_ALIVE_FIELD_NUMBER: _ClassVar[int]
    UNREGISTER_WORKER_FIELD_NUMBER: _ClassVar[int]
    REGISTER_MODEL_FIELD_NUMBER: _ClassVar[int]
    TICK_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    sequence: int
    now_ms: int
    put: Put
    delete: Delete
    delete_range: DeleteRange
    delete_prefix: DeletePrefix
    compare_and_set: CompareAndSet
    add_group: AddGroup
    remove_group: RemoveGroup
    assign_shards: AssignShards
    register_worker: RegisterWorker
    keep_alive: KeepAlive
    unregister_worker: UnregisterWorker
    register_model: RegisterModel
    tick: Tick
    def __init__(self, client_id: _Optional[str] = ..., sequence: _Optional[int] = ..., now_ms: _Optional[int] = ..., put: _Optional[_Union[Put, _Mapping]] = ..., delete: _Optional[_Union[Delete, _Mapping]] = ..., delete_range: _Optional[_Union[DeleteRange, _Mapping]] = ..., delete_prefix: _Optional[_Union[DeletePrefix, _Mapping]] = ..., compare_and_set: _Optional[_Union[CompareAndSet, _Mapping]] = ..., add_group: _Optional[_Union[AddGroup, _Mapping]] = ..., remove_group: _Optional[_Union[RemoveGroup, _Mapping]] = ..., assign_shards: _Optional[_Union[AssignShards, _Mapping]] = ..., register_worker: _Optional[_Union[RegisterWorker, _Mapping]] = ..., keep_alive: _Optional[_Union[KeepAlive, _Mapping]] = ..., unregister_worker: _Optional[_Union[UnregisterWorker, _Mapping]] = ..., register_model: _Optional[_Union[RegisterModel, _Mapping]] = ..., tick: _Optional[_Union[Tick, _Mapping]] = ...) -> None: ...

class CommandResult(_message.Message):
    __slots__ = ("code", "message", "revision", "config_number", "key_version", "deleted", "more", "lease_deadline_ms")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    CONFIG_NUMBER_FIELD_NUMBER: _ClassVar[int]
    KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    LEASE_DEADLINE_MS_FIELD_NUMBER: _ClassVar[int]
    code: ErrorCode
    message: str
    revision: int
    config_number: int
    key_version: int
    deleted: int
    more: bool
    lease_deadline_ms: int
    def __init__(self, code: _Optional[_Union[ErrorCode, str]] = ..., message: _Optional[str] = ..., revision: _Optional[int] = ..., config_number: _Optional[int] = ..., key_version: _Optional[int] = ..., deleted: _Optional[int] = ..., more: _Optional[bool] = ..., lease_deadline_ms: _Optional[int] = ...) -> None: ...

class StoredKey(_message.Message):
    __slots__ = ("key", "value", "version", "create_revision", "lease")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATE_REVISION_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: bytes
    version: int
    create_revision: int
    lease: str
    def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ..., version: _Optional[int] = ..., create_revision: _Optional[int] = ..., lease: _Optional[str] = ...) -> None: ...

class Change(_message.Message):
    __slots__ = ("revision", "kind", "key", "value")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    revision: int
    kind: ChangeKind
    key: str
    value: bytes
    def __init__(self, revision: _Optional[int] = ..., kind: _Optional[_Union[ChangeKind, str]] = ..., key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...

class Session(_message.Message):
    __slots__ = ("client_id", "last_sequence", "last_active_ms", "last_result")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    LAST_ACTIVE_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_RESULT_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    last_sequence: int
    last_active_ms: int
    last_result: bytes
    def __init__(self, client_id: _Optional[str] = ..., last_sequence: _Optional[int] = ..., last_active_ms: _Optional[int] = ..., last_result: _Optional[bytes] = ...) -> None: ...

class Group(_message.Message):
    __slots__ = ("group_id", "members")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    group_id: int
    members: _containers.RepeatedCompositeFieldContainer[GroupMember]
    def __init__(self, group_id: _Optional[int] = ..., members: _Optional[_Iterable[_Union[GroupMember, _Mapping]]] = ...) -> None: ...

class Model(_message.Message):
    __slots__ = ("spec", "shard_groups")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    SHARD_GROUPS_FIELD_NUMBER: _ClassVar[int]
    spec: ModelSpec
    shard_groups: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, spec: _Optional[_Union[ModelSpec, _Mapping]] = ..., shard_groups: _Optional[_Iterable[int]] = ...) -> None: ...

class Worker(_message.Message):
    __slots__ = ("worker_id", "model", "ttl_ms", "deadline_ms")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_MS_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    model: str
    ttl_ms: int
    deadline_ms: int
    def __init__(self, worker_id: _Optional[str] = ..., model: _Optional[str] = ..., ttl_ms: _Optional[int] = ..., deadline_ms: _Optional[int] = ...) -> None: ...

class CoordinatorState(_message.Message):
    __slots__ = ("clock_ms", "revision", "compacted_revision", "config_number", "keys", "history", "sessions", "groups", "models", "workers", "limits_json")
    CLOCK_MS_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    COMPACTED_REVISION_FIELD_NUMBER: _ClassVar[int]
    CONFIG_NUMBER_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    LIMITS_JSON_FIELD_NUMBER: _ClassVar[int]
    clock_ms: int
    revision: int
    compacted_revision: int
    config_number: int
    keys: _containers.RepeatedCompositeFieldContainer[StoredKey]
    history: _containers.RepeatedCompositeFieldContainer[Change]
    sessions: _containers.RepeatedCompositeFieldContainer[Session]
    groups: _containers.RepeatedCompositeFieldContainer[Group]
    models: _containers.RepeatedCompositeFieldContainer[Model]
    workers: _containers.RepeatedCompositeFieldContainer[Worker]
    limits_json: str
    def __init__(self, clock_ms: _Optional[int] = ..., revision: _Optional[int] = ..., compacted_revision: _Optional[int] = ..., config_number: _Optional[int] = ..., keys: _Optional[_Iterable[_Union[StoredKey, _Mapping]]] = ..., history: _Optional[_Iterable[_Union[Change, _Mapping]]] = ..., sessions: _Optional[_Iterable[_Union[Session, _Mapping]]] = ..., groups: _Optional[_Iterable[_Union[Group, _Mapping]]] = ..., models: _Optional[_Iterable[_Union[Model, _Mapping]]] = ..., workers: _Optional[_Iterable[_Union[Worker, _Mapping]]] = ..., limits_json: _Optional[str] = ...) -> None: ...
