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
    ERROR_CODE_UNKNOWN_MODEL: _ClassVar[ErrorCode]
    ERROR_CODE_UNKNOWN_KEY: _ClassVar[ErrorCode]
    ERROR_CODE_SPEC_CONFLICT: _ClassVar[ErrorCode]
    ERROR_CODE_SHAPE_MISMATCH: _ClassVar[ErrorCode]
    ERROR_CODE_DTYPE_MISMATCH: _ClassVar[ErrorCode]
    ERROR_CODE_NON_FINITE: _ClassVar[ErrorCode]
    ERROR_CODE_STALE_SEQUENCE: _ClassVar[ErrorCode]
    ERROR_CODE_PARTIAL_DUPLICATE: _ClassVar[ErrorCode]
    ERROR_CODE_RESOURCE_EXHAUSTED: _ClassVar[ErrorCode]
    ERROR_CODE_NOT_A_WORKER: _ClassVar[ErrorCode]
    ERROR_CODE_WRONG_STEP: _ClassVar[ErrorCode]
    ERROR_CODE_WRONG_GROUP: _ClassVar[ErrorCode]

class SyncMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SYNC_MODE_UNSPECIFIED: _ClassVar[SyncMode]
    SYNC_MODE_BSP: _ClassVar[SyncMode]
    SYNC_MODE_SSP: _ClassVar[SyncMode]
    SYNC_MODE_ASYNC: _ClassVar[SyncMode]

class DType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    D_TYPE_UNSPECIFIED: _ClassVar[DType]
    D_TYPE_FLOAT32: _ClassVar[DType]
    D_TYPE_FLOAT16: _ClassVar[DType]
    D_TYPE_BFLOAT16: _ClassVar[DType]

class NonFinitePolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NON_FINITE_POLICY_UNSPECIFIED: _ClassVar[NonFinitePolicy]
    NON_FINITE_POLICY_REJECT: _ClassVar[NonFinitePolicy]
    NON_FINITE_POLICY_SKIP: _ClassVar[NonFinitePolicy]
ERROR_CODE_UNSPECIFIED: ErrorCode
ERROR_CODE_OK: ErrorCode
ERROR_CODE_INVALID_ARGUMENT: ErrorCode
ERROR_CODE_TOO_LARGE: ErrorCode
ERROR_CODE_UNKNOWN_MODEL: ErrorCode
ERROR_CODE_UNKNOWN_KEY: ErrorCode
ERROR_CODE_SPEC_CONFLICT: ErrorCode
ERROR_CODE_SHAPE_MISMATCH: ErrorCode
ERROR_CODE_DTYPE_MISMATCH: ErrorCode
ERROR_CODE_NON_FINITE: ErrorCode
ERROR_CODE_STALE_SEQUENCE: ErrorCode
ERROR_CODE_PARTIAL_DUPLICATE: ErrorCode
ERROR_CODE_RESOURCE_EXHAUSTED: ErrorCode
ERROR_CODE_NOT_A_WORKER: ErrorCode
ERROR_CODE_WRONG_STEP: ErrorCode
ERROR_CODE_WRONG_GROUP: ErrorCode
SYNC_MODE_UNSPECIFIED: SyncMode
SYNC_MODE_BSP: SyncMode
SYNC_MODE_SSP: SyncMode
SYNC_MODE_ASYNC: SyncMode
D_TYPE_UNSPECIFIED: DType
D_TYPE_FLOAT32: DType
D_TYPE_FLOAT16: DType
D_TYPE_BFLOAT16: DType
NON_FINITE_POLICY_UNSPECIFIED: NonFinitePolicy
NON_FINITE_POLICY_REJECT: NonFinitePolicy
NON_FINITE_POLICY_SKIP: NonFinitePolicy

class Tensor(_message.Message):
    __slots__ = ("dtype", "data")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    dtype: DType
    data: bytes
    def __init__(self, dtype: _Optional[_Union[DType, str]] = ..., data: _Optional[bytes] = ...) -> None: ...

class KeyTensor(_message.Message):
    __slots__ = ("key", "tensor")
    KEY_FIELD_NUMBER: _ClassVar[int]
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    key: str
    tensor: Tensor
    def __init__(self, key: _Optional[str] = ..., tensor: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class InstallKeys(_message.Message):
    __slots__ = ("model", "optimizer_json", "non_finite_policy", "num_shards", "keys", "sync_mode", "staleness_bound")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    OPTIMIZER_JSON_FIELD_NUMBER: _ClassVar[int]
    NON_FINITE_POLICY_FIELD_NUMBER: _ClassVar[int]
    NUM_SHARDS_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    SYNC_MODE_FIELD_NUMBER: _ClassVar[int]
    STALENESS_BOUND_FIELD_NUMBER: _ClassVar[int]
    model: str
    optimizer_json: str
    non_finite_policy: NonFinitePolicy
    num_shards: int
    keys: _containers.RepeatedCompositeFieldContainer[KeyTensor]
    sync_mode: SyncMode
    staleness_bound: int
    def __init__(self, model: _Optional[str] = ..., optimizer_json: _Optional[str] = ..., non_finite_policy: _Optional[_Union[NonFinitePolicy, str]] = ..., num_shards: _Optional[int] = ..., keys: _Optional[_Iterable[_Union[KeyTensor, _Mapping]]] = ..., sync_mode: _Optional[_Union[SyncMode, str]] = ..., staleness_bound: _Optional[int] = ...) -> None: ...

class ClientSequence(_message.Message):
    __slots__ = ("client_id", "sequence")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    sequence: int
    def __init__(self, client_id: _Optional[str] = ..., sequence: _Optional[int] = ...) -> None: ...

class Push(_message.Message):
    __slots__ = ("model", "covers", "config_number", "gradients", "step", "now_ms")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    COVERS_FIELD_NUMBER: _ClassVar[int]
    CONFIG_NUMBER_FIELD_NUMBER: _ClassVar[int]
    GRADIENTS_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    NOW_MS_FIELD_NUMBER: _ClassVar[int]
    model: str
    covers: _containers.RepeatedCompositeFieldContainer[ClientSequence]
    config_number: int
    gradients: _containers.RepeatedCompositeFieldContainer[KeyTensor]
    step: int
    now_ms: int
    def __init__(self, model: _Optional[str] = ..., covers: _Optional[_Iterable[_Union[ClientSequence, _Mapping]]] = ..., config_number: _Optional[int] = ..., gradients: _Optional[_Iterable[_Union[KeyTensor, _Mapping]]] = ..., step: _Optional[int] = ..., now_ms: _Optional[int] = ...) -> None: ...

class SetWorkers(_message.Message):
    __slots__ = ("model", "config_number", "workers")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CONFIG_NUMBER_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    model: str
    config_number: int
    workers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model: _Optional[str] = ..., config_number: _Optional[int] = ..., workers: _Optional[_Iterable[str]] = ...) -> None: ...

class ReleaseShard(_message.Message):
    __slots__ = ("model", "shard", "move_id")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    MOVE_ID_FIELD_NUMBER: _ClassVar[int]
    model: str
    shard: int
    move_id: int
    def __init__(self, model: _Optional[str] = ..., shard: _Optional[int] = ..., move_id: _Optional[int] = ...) -> None: ...

class MovedKey(_message.Message):
    __slots__ = ("key", "step", "initial_digest", "weights", "slots", "gathered")
    KEY_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    INITIAL_DIGEST_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    GATHERED_FIELD_NUMBER: _ClassVar[int]
    key: str
    step: int
    initial_digest: bytes
    weights: Tensor
    slots: _containers.RepeatedCompositeFieldContainer[Tensor]
    gathered: Tensor
    def __init__(self, key: _Optional[str] = ..., step: _Optional[int] = ..., initial_digest: _Optional[bytes] = ..., weights: _Optional[_Union[Tensor, _Mapping]] = ..., slots: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ..., gathered: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class AcceptShard(_message.Message):
    __slots__ = ("model", "shard", "move_id", "definition", "keys", "last", "model_step", "barrier_step", "barrier_pushed", "barrier_gathered_pushes")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    MOVE_ID_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    MODEL_STEP_FIELD_NUMBER: _ClassVar[int]
    BARRIER_STEP_FIELD_NUMBER: _ClassVar[int]
    BARRIER_PUSHED_FIELD_NUMBER: _ClassVar[int]
    BARRIER_GATHERED_PUSHES_FIELD_NUMBER: _ClassVar[int]
    model: str
    shard: int
    move_id: int
    definition: InstallKeys
    keys: _containers.RepeatedCompositeFieldContainer[MovedKey]
    last: bool
    model_step: int
    barrier_step: int
    barrier_pushed: _containers.RepeatedScalarFieldContainer[str]
    barrier_gathered_pushes: int
    def __init__(self, model: _Optional[str] = ..., shard: _Optional[int] = ..., move_id: _Optional[int] = ..., definition: _Optional[_Union[InstallKeys, _Mapping]] = ..., keys: _Optional[_Iterable[_Union[MovedKey, _Mapping]]] = ..., last: _Optional[bool] = ..., model_step: _Optional[int] = ..., barrier_step: _Optional[int] = ..., barrier_pushed: _Optional[_Iterable[str]] = ..., barrier_gathered_pushes: _Optional[int] = ...) -> None: ...

class DropShard(_message.Message):
    __slots__ = ("model", "shard", "move_id")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    MOVE_ID_FIELD_NUMBER: _ClassVar[int]
    model: str
    shard: int
    move_id: int
    def __init__(self, model: _Optional[str] = ..., shard: _Optional[int] = ..., move_id: _Optional[int] = ...) -> None: ...

class ShardCommand(_message.Message):
    __slots__ = ("install_keys", "push", "set_workers", "release_shard", "accept_shard", "drop_shard")
    INSTALL_KEYS_FIELD_NUMBER: _ClassVar[int]
    PUSH_FIELD_NUMBER: _ClassVar[int]
    SET_WORKERS_FIELD_NUMBER: _ClassVar[int]
    RELEASE_SHARD_FIELD_NUMBER: _ClassVar[int]
    ACCEPT_SHARD_FIELD_NUMBER: _ClassVar[int]
    DROP_SHARD_FIELD_NUMBER: _ClassVar[int]
    install_keys: InstallKeys
    push: Push
    set_workers: SetWorkers
    release_shard: ReleaseShard
    accept_shard: AcceptShard
    drop_shard: DropShard
    def __init__(self, install_keys: _Optional[_Union[InstallKeys, _Mapping]] = ..., push: _Optional[_Union[Push, _Mapping]] = ..., set_workers: _Optional[_Union[SetWorkers, _Mapping]] = ..., release_shard: _Optional[_Union[ReleaseShard, _Mapping]] = ..., accept_shard: _Optional[_Union[AcceptShard, _Mapping]] = ..., drop_shard: _Optional[_Union[DropShard, _Mapping]] = ...) -> None: ...

class Replay(_message.Message):
    __slots__ = ("push", "result")
    PUSH_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    push: ClientSequence
    result: bytes
    def __init__(self, push: _Optional[_Union[ClientSequence, _Mapping]] = ..., result: _Optional[bytes] = ...) -> None: ...

class ShardResult(_message.Message):
    __slots__ = ("code", "message", "step", "skipped", "keys", "installed", "duplicate", "replays")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    INSTALLED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    REPLAYS_FIELD_NUMBER: _ClassVar[int]
    code: ErrorCode
    message: str
    step: int
    skipped: bool
    keys: _containers.RepeatedScalarFieldContainer[str]
    installed: int
    duplicate: bool
    replays: _containers.RepeatedCompositeFieldContainer[Replay]
    def __init__(self, code: _Optional[_Union[ErrorCode, str]] = ..., message: _Optional[str] = ..., step: _Optional[int] = ..., skipped: _Optional[bool] = ..., keys: _Optional[_Iterable[str]] = ..., installed: _Optional[int] = ..., duplicate: _Optional[bool] = ..., replays: _Optional[_Iterable[_Union[Replay, _Mapping]]] = ...) -> None: ...

class StoredKey(_message.Message):
    __slots__ = ("key", "elements", "step", "initial_digest")
    KEY_FIELD_NUMBER: _ClassVar[int]
    ELEMENTS_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    INITIAL_DIGEST_FIELD_NUMBER: _ClassVar[int]
    key: str
    elements: int
    step: int
    initial_digest: bytes
    def __init__(self, key: _Optional[str] = ..., elements: _Optional[int] = ..., step: _Optional[int] = ..., initial_digest: _Optional[bytes] = ...) -> None: ...

class StoredModel(_message.Message):
    __slots__ = ("name", "optimizer_json", "non_finite_policy", "num_shards", "step", "skipped_pushes", "keys", "sync_mode", "staleness_bound", "workers_config", "workers", "gathered_pushes", "applied_pushes", "shards", "barriers")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OPTIMIZER_JSON_FIELD_NUMBER: _ClassVar[int]
    NON_FINITE_POLICY_FIELD_NUMBER: _ClassVar[int]
    NUM_SHARDS_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_PUSHES_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    SYNC_MODE_FIELD_NUMBER: _ClassVar[int]
    STALENESS_BOUND_FIELD_NUMBER: _ClassVar[int]
    WORKERS_CONFIG_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    GATHERED_PUSHES_FIELD_NUMBER: _ClassVar[int]
    APPLIED_PUSHES_FIELD_NUMBER: _ClassVar[int]
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    BARRIERS_FIELD_NUMBER: _ClassVar[int]
    name: str
    optimizer_json: str
    non_finite_policy: NonFinitePolicy
    num_shards: int
    step: int
    skipped_pushes: int
    keys: _containers.RepeatedCompositeFieldContainer[StoredKey]
    sync_mode: SyncMode
    staleness_bound: int
    workers_config: int
    workers: _containers.RepeatedCompositeFieldContainer[StoredWorker]
    gathered_pushes: int
    applied_pushes: int
    shards: _containers.RepeatedCompositeFieldContainer[StoredShard]
    barriers: _containers.RepeatedCompositeFieldContainer[StoredBarrier]
    def __init__(self, name: _Optional[str] = ..., optimizer_json: _Optional[str] = ..., non_finite_policy: _Optional[_Union[NonFinitePolicy, str]] = ..., num_shards: _Optional[int] = ..., step: _Optional[int] = ..., skipped_pushes: _Optional[int] = ..., keys: _Optional[_Iterable[_Union[StoredKey, _Mapping]]] = ..., sync_mode: _Optional[_Union[SyncMode, str]] = ..., staleness_bound: _Optional[int] = ..., workers_config: _Optional[int] = ..., workers: _Optional[_Iterable[_Union[StoredWorker, _Mapping]]] = ..., gathered_pushes: _Optional[int] = ..., applied_pushes: _Optional[int] = ..., shards: _Optional[_Iterable[_Union[StoredShard, _Mapping]]] = ..., barriers: _Optional[_Iterable[_Union[StoredBarrier, _Mapping]]] = ...) -> None: ...

class StoredBarrier(_message.Message):
    __slots__ = ("shard", "step", "pushed", "gathered_pushes", "gathered_keys")
    SHARD_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    PUSHED_FIELD_NUMBER: _ClassVar[int]
    GATHERED_PUSHES_FIELD_NUMBER: _ClassVar[int]
    GATHERED_KEYS_FIELD_NUMBER: _ClassVar[int]
    shard: int
    step: int
    pushed: _containers.RepeatedScalarFieldContainer[str]
    gathered_pushes: int
    gathered_keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, shard: _Optional[int] = ..., step: _Optional[int] = ..., pushed: _Optional[_Iterable[str]] = ..., gathered_pushes: _Optional[int] = ..., gathered_keys: _Optional[_Iterable[str]] = ...) -> None: ...

class StoredShard(_message.Message):
    __slots__ = ("shard", "released_move", "released_dropped", "accepted_move", "staging_move", "released_keys", "staged_keys", "released_barrier", "staged_gathered", "last_move")
    SHARD_FIELD_NUMBER: _ClassVar[int]
    RELEASED_MOVE_FIELD_NUMBER: _ClassVar[int]
    RELEASED_DROPPED_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_MOVE_FIELD_NUMBER: _ClassVar[int]
    STAGING_MOVE_FIELD_NUMBER: _ClassVar[int]
    RELEASED_KEYS_FIELD_NUMBER: _ClassVar[int]
    STAGED_KEYS_FIELD_NUMBER: _ClassVar[int]
    RELEASED_BARRIER_FIELD_NUMBER: _ClassVar[int]
    STAGED_GATHERED_FIELD_NUMBER: _ClassVar[int]
    LAST_MOVE_FIELD_NUMBER: _ClassVar[int]
    shard: int
    released_move: int
    released_dropped: bool
    accepted_move: int
    staging_move: int
    released_keys: _containers.RepeatedCompositeFieldContainer[StoredKey]
    staged_keys: _containers.RepeatedCompositeFieldContainer[StoredKey]
    released_barrier: StoredBarrier
    staged_gathered: _containers.RepeatedScalarFieldContainer[str]
    last_move: int
    def __init__(self, shard: _Optional[int] = ..., released_move: _Optional[int] = ..., released_dropped: _Optional[bool] = ..., accepted_move: _Optional[int] = ..., staging_move: _Optional[int] = ..., released_keys: _Optional[_Iterable[_Union[StoredKey, _Mapping]]] = ..., staged_keys: _Optional[_Iterable[_Union[StoredKey, _Mapping]]] = ..., released_barrier: _Optional[_Union[StoredBarrier, _Mapping]] = ..., staged_gathered: _Optional[_Iterable[str]] = ..., last_move: _Optional[int] = ...) -> None: ...

class StoredWorker(_message.Message):
    __slots__ = ("worker_id", "clock")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    CLOCK_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    clock: int
    def __init__(self, worker_id: _Optional[str] = ..., clock: _Optional[int] = ...) -> None: ...

class StoredSession(_message.Message):
    __slots__ = ("client_id", "last_sequence", "last_result", "last_ms")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    LAST_RESULT_FIELD_NUMBER: _ClassVar[int]
    LAST_MS_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    last_sequence: int
    last_result: bytes
    last_ms: int
    def __init__(self, client_id: _Optional[str] = ..., last_sequence: _Optional[int] = ..., last_result: _Optional[bytes] = ..., last_ms: _Optional[int] = ...) -> None: ...

class StoredFence(_message.Message):
    __slots__ = ("model", "shard", "move_id")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    MOVE_ID_FIELD_NUMBER: _ClassVar[int]
    model: str
    shard: int
    move_id: int
    def __init__(self, model: _Optional[str] = ..., shard: _Optional[int] = ..., move_id: _Optional[int] = ...) -> None: ...

class ShardStateHeader(_message.Message):
    __slots__ = ("limits_json", "models", "sessions", "clock_ms", "fences")
    LIMITS_JSON_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    CLOCK_MS_FIELD_NUMBER: _ClassVar[int]
    FENCES_FIELD_NUMBER: _ClassVar[int]
    limits_json: str
    models: _containers.RepeatedCompositeFieldContainer[StoredModel]
    sessions: _containers.RepeatedCompositeFieldContainer[StoredSession]
    clock_ms: int
    fences: _containers.RepeatedCompositeFieldContainer[StoredFence]
    def __init__(self, limits_json: _Optional[str] = ..., models: _Optional[_Iterable[_Union[StoredModel, _Mapping]]] = ..., sessions: _Optional[_Iterable[_Union[StoredSession, _Mapping]]] = ..., clock_ms: _Optional[int] = ..., fences: _Optional[_Iterable[_Union[StoredFence, _Mapping]]] = ...) -> None: ...
