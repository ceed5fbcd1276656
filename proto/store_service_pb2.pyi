from proto import shard_pb2 as _shard_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FetchShardRequest(_message.Message):
    __slots__ = ("model", "shard", "move_id", "part_bytes_max")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    MOVE_ID_FIELD_NUMBER: _ClassVar[int]
    PART_BYTES_MAX_FIELD_NUMBER: _ClassVar[int]
    model: str
    shard: int
    move_id: int
    part_bytes_max: int
    def __init__(self, model: _Optional[str] = ..., shard: _Optional[int] = ..., move_id: _Optional[int] = ..., part_bytes_max: _Optional[int] = ...) -> None: ...

class MoveResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: _shard_pb2.ShardResult
    def __init__(self, result: _Optional[_Union[_shard_pb2.ShardResult, _Mapping]] = ...) -> None: ...

class TensorPiece(_message.Message):
    __slots__ = ("key", "dtype", "data")
    KEY_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    key: str
    dtype: _shard_pb2.DType
    data: bytes
    def __init__(self, key: _Optional[str] = ..., dtype: _Optional[_Union[_shard_pb2.DType, str]] = ..., data: _Optional[bytes] = ...) -> None: ...

class InstallRequest(_message.Message):
    __slots__ = ("install",)
    INSTALL_FIELD_NUMBER: _ClassVar[int]
    install: _shard_pb2.InstallKeys
    def __init__(self, install: _Optional[_Union[_shard_pb2.InstallKeys, _Mapping]] = ...) -> None: ...

class InstallResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: _shard_pb2.ShardResult
    def __init__(self, result: _Optional[_Union[_shard_pb2.ShardResult, _Mapping]] = ...) -> None: ...

class PushRequest(_message.Message):
    __slots__ = ("model", "client_id", "sequence", "config_number", "step", "gradients")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    CONFIG_NUMBER_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    GRADIENTS_FIELD_NUMBER: _ClassVar[int]
    model: str
    client_id: str
    sequence: int
    config_number: int
    step: int
    gradients: _containers.RepeatedCompositeFieldContainer[TensorPiece]
    def __init__(self, model: _Optional[str] = ..., client_id: _Optional[str] = ..., sequence: _Optional[int] = ..., config_number: _Optional[int] = ..., step: _Optional[int] = ..., gradients: _Optional[_Iterable[_Union[TensorPiece, _Mapping]]] = ...) -> None: ...

class PushResponse(_message.Message):
    __slots__ = ("result", "merged_pushes")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    MERGED_PUSHES_FIELD_NUMBER: _ClassVar[int]
    result: _shard_pb2.ShardResult
    merged_pushes: int
    def __init__(self, result: _Optional[_Union[_shard_pb2.ShardResult, _Mapping]] = ..., merged_pushes: _Optional[int] = ...) -> None: ...

class PullRequest(_message.Message):
    __slots__ = ("model", "keys", "serializable", "piece_bytes_max", "min_step", "worker_id", "wait_ms")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    SERIALIZABLE_FIELD_NUMBER: _ClassVar[int]
    PIECE_BYTES_MAX_FIELD_NUMBER: _ClassVar[int]
    MIN_STEP_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    model: str
    keys: _containers.RepeatedScalarFieldContainer[str]
    serializable: bool
    piece_bytes_max: int
    min_step: int
    worker_id: str
    wait_ms: int
    def __init__(self, model: _Optional[str] = ..., keys: _Optional[_Iterable[str]] = ..., serializable: _Optional[bool] = ..., piece_bytes_max: _Optional[int] = ..., min_step: _Optional[int] = ..., worker_id: _Optional[str] = ..., wait_ms: _Optional[int] = ...) -> None: ...

class PullResponse(_message.Message):
    __slots__ = ("step", "weights")
    STEP_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    step: int
    weights: _containers.RepeatedCompositeFieldContainer[TensorPiece]
    def __init__(self, step: _Optional[int] = ..., weights: _Optional[_Iterable[_Union[TensorPiece, _Mapping]]] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelStatus(_message.Message):
    __slots__ = ("name", "step", "keys", "skipped_pushes", "workers", "applied_pushes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_PUSHES_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    APPLIED_PUSHES_FIELD_NUMBER: _ClassVar[int]
    name: str
    step: int
    keys: int
    skipped_pushes: int
    workers: _containers.RepeatedScalarFieldContainer[str]
    applied_pushes: int
    def __init__(self, name: _Optional[str] = ..., step: _Optional[int] = ..., keys: _Optional[int] = ..., skipped_pushes: _Optional[int] = ..., workers: _Optional[_Iterable[str]] = ..., applied_pushes: _Optional[int] = ...) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("cluster_id", "group_id", "node_id", "address", "role", "term", "leader_id", "leader_address", "commit_index", "applied_index", "last_index", "models", "push_entries", "merged_entries", "merged_pushes", "linearizable_pulls", "serializable_pulls")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    LEADER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    APPLIED_INDEX_FIELD_NUMBER: _ClassVar[int]
    LAST_INDEX_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    PUSH_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    MERGED_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    MERGED_PUSHES_FIELD_NUMBER: _ClassVar[int]
    LINEARIZABLE_PULLS_FIELD_NUMBER: _ClassVar[int]
    SERIALIZABLE_PULLS_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    group_id: int
    node_id: int
    address: str
    role: str
    term: int
    leader_id: int
    leader_address: str
    commit_index: int
    applied_index: int
    last_index: int
    models: _containers.RepeatedCompositeFieldContainer[ModelStatus]
    push_entries: int
    merged_entries: int
    merged_pushes: int
    linearizable_pulls: int
    serializable_pulls: int
    def __init__(self, cluster_id: _Optional[str] = ..., group_id: _Optional[int] = ..., node_id: _Optional[int] = ..., address: _Optional[str] = ..., role: _Optional[str] = ..., term: _Optional[int] = ..., leader_id: _Optional[int] = ..., leader_address: _Optional[str] = ..., commit_index: _Optional[int] = ..., applied_index: _Optional[int] = ..., last_index: _Optional[int] = ..., models: _Optional[_Iterable[_Union[ModelStatus, _Mapping]]] = ..., push_entries: _Optional[int] = ..., merged_entries: _Optional[int] = ..., merged_pushes: _Optional[int] = ..., linearizable_pulls: _Optional[int] = ..., serializable_pulls: _Optional[int] = ...) -> None: ...
