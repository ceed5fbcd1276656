from proto import coordinator_pb2 as _coordinator_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MembershipChange(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MEMBERSHIP_CHANGE_UNSPECIFIED: _ClassVar[MembershipChange]
    MEMBERSHIP_CHANGE_ADD_LEARNER: _ClassVar[MembershipChange]
    MEMBERSHIP_CHANGE_PROMOTE_LEARNER: _ClassVar[MembershipChange]
    MEMBERSHIP_CHANGE_REMOVE_NODE: _ClassVar[MembershipChange]
    MEMBERSHIP_CHANGE_ADD_VOTER: _ClassVar[MembershipChange]
MEMBERSHIP_CHANGE_UNSPECIFIED: MembershipChange
MEMBERSHIP_CHANGE_ADD_LEARNER: MembershipChange
MEMBERSHIP_CHANGE_PROMOTE_LEARNER: MembershipChange
MEMBERSHIP_CHANGE_REMOVE_NODE: MembershipChange
MEMBERSHIP_CHANGE_ADD_VOTER: MembershipChange

class ExecuteRequest(_message.Message):
    __slots__ = ("command",)
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    command: _coordinator_pb2.Command
    def __init__(self, command: _Optional[_Union[_coordinator_pb2.Command, _Mapping]] = ...) -> None: ...

class ExecuteResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: _coordinator_pb2.CommandResult
    def __init__(self, result: _Optional[_Union[_coordinator_pb2.CommandResult, _Mapping]] = ...) -> None: ...

class SessionRequest(_message.Message):
    __slots__ = ("request_id", "command", "timeout_ms")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    command: _coordinator_pb2.Command
    timeout_ms: int
    def __init__(self, request_id: _Optional[int] = ..., command: _Optional[_Union[_coordinator_pb2.Command, _Mapping]] = ..., timeout_ms: _Optional[int] = ...) -> None: ...

class SessionRequests(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[SessionRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[SessionRequest, _Mapping]]] = ...) -> None: ...

class SessionResponses(_message.Message):
    __slots__ = ("responses",)
    RESPONSES_FIELD_NUMBER: _ClassVar[int]
    responses: _containers.RepeatedCompositeFieldContainer[SessionResponse]
    def __init__(self, responses: _Optional[_Iterable[_Union[SessionResponse, _Mapping]]] = ...) -> None: ...

class SessionResponse(_message.Message):
    __slots__ = ("request_id", "status", "details", "result", "leader_id", "leader_address")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    LEADER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    status: int
    details: str
    result: _coordinator_pb2.CommandResult
    leader_id: int
    leader_address: str
    def __init__(self, request_id: _Optional[int] = ..., status: _Optional[int] = ..., details: _Optional[str] = ..., result: _Optional[_Union[_coordinator_pb2.CommandResult, _Mapping]] = ..., leader_id: _Optional[int] = ..., leader_address: _Optional[str] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("key", "serializable")
    KEY_FIELD_NUMBER: _ClassVar[int]
    SERIALIZABLE_FIELD_NUMBER: _ClassVar[int]
    key: str
    serializable: bool
    def __init__(self, key: _Optional[str] = ..., serializable: _Optional[bool] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("found", "kv", "revision")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    KV_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    found: bool
    kv: _coordinator_pb2.StoredKey
    revision: int
    def __init__(self, found: _Optional[bool] = ..., kv: _Optional[_Union[_coordinator_pb2.StoredKey, _Mapping]] = ..., revision: _Optional[int] = ...) -> None: ...

class RangeRequest(_message.Message):
    __slots__ = ("start", "end", "prefix", "limit", "serializable")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    SERIALIZABLE_FIELD_NUMBER: _ClassVar[int]
    start: str
    end: str
    prefix: str
    limit: int
    serializable: bool
    def __init__(self, start: _Optional[str] = ..., end: _Optional[str] = ..., prefix: _Optional[str] = ..., limit: _Optional[int] = ..., serializable: _Optional[bool] = ...) -> None: ...

class RangeResponse(_message.Message):
    __slots__ = ("kvs", "more", "revision")
    KVS_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    kvs: _containers.RepeatedCompositeFieldContainer[_coordinator_pb2.StoredKey]
    more: bool
    revision: int
    def __init__(self, kvs: _Optional[_Iterable[_Union[_coordinator_pb2.StoredKey, _Mapping]]] = ..., more: _Optional[bool] = ..., revision: _Optional[int] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("prefix", "start_revision")
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    START_REVISION_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    start_revision: int
    def __init__(self, prefix: _Optional[str] = ..., start_revision: _Optional[int] = ...) -> None: ...

class WatchResponse(_message.Message):
    __slots__ = ("changes", "next_revision", "revision")
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    NEXT_REVISION_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[_coordinator_pb2.Change]
    next_revision: int
    revision: int
    def __init__(self, changes: _Optional[_Iterable[_Union[_coordinator_pb2.Change, _Mapping]]] = ..., next_revision: _Optional[int] = ..., revision: _Optional[int] = ...) -> None: ...

class GetConfigRequest(_message.Message):
    __slots__ = ("serializable",)
    SERIALIZABLE_FIELD_NUMBER: _ClassVar[int]
    serializable: bool
    def __init__(self, serializable: _Optional[bool] = ...) -> None: ...

class GetConfigResponse(_message.Message):
    __slots__ = ("config_number", "groups", "models", "workers")
    CONFIG_NUMBER_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    config_number: int
    groups: _containers.RepeatedCompositeFieldContainer[_coordinator_pb2.Group]
    models: _containers.RepeatedCompositeFieldContainer[_coordinator_pb2.Model]
    workers: _containers.RepeatedCompositeFieldContainer[_coordinator_pb2.Worker]
    def __init__(self, config_number: _Optional[int] = ..., groups: _Optional[_Iterable[_Union[_coordinator_pb2.Group, _Mapping]]] = ..., models: _Optional[_Iterable[_Union[_coordinator_pb2.Model, _Mapping]]] = ..., workers: _Optional[_Iterable[_Union[_coordinator_pb2.Worker, _Mapping]]] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PeerStatus(_message.Message):
    __slots__ = ("node_id", "address", "match_index")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    MATCH_INDEX_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    address: str
    match_index: int
    def __init__(self, node_id: _Optional[int] = ..., address: _Optional[str] = ..., match_index: _Optional[int] = ...) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("cluster_id", "node_id", "address", "role", "term", "leader_id", "leader_address", "commit_index", "applied_index", "last_index", "snapshot_index", "voters", "learners", "peers", "fsync", "revision", "config_number")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    LEADER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    APPLIED_INDEX_FIELD_NUMBER: _ClassVar[int]
    LAST_INDEX_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_INDEX_FIELD_NUMBER: _ClassVar[int]
    VOTERS_FIELD_NUMBER: _ClassVar[int]
    LEARNERS_FIELD_NUMBER: _ClassVar[int]
    PEERS_FIELD_NUMBER: _ClassVar[int]
    FSYNC_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    CONFIG_NUMBER_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    node_id: int
    address: str
    role: str
    term: int
    leader_id: int
    leader_address: str
    commit_index: int
    applied_index: int
    last_index: int
    snapshot_index: int
    voters: _containers.RepeatedScalarFieldContainer[int]
    learners: _containers.RepeatedScalarFieldContainer[int]
    peers: _containers.RepeatedCompositeFieldContainer[PeerStatus]
    fsync: str
    revision: int
    config_number: int
    def __init__(self, cluster_id: _Optional[str] = ..., node_id: _Optional[int] = ..., address: _Optional[str] = ..., role: _Optional[str] = ..., term: _Optional[int] = ..., leader_id: _Optional[int] = ..., leader_address: _Optional[str] = ..., commit_index: _Optional[int] = ..., applied_index: _Optional[int] = ..., last_index: _Optional[int] = ..., snapshot_index: _Optional[int] = ..., voters: _Optional[_Iterable[int]] = ..., learners: _Optional[_Iterable[int]] = ..., peers: _Optional[_Iterable[_Union[PeerStatus, _Mapping]]] = ..., fsync: _Optional[str] = ..., revision: _Optional[int] = ..., config_number: _Optional[int] = ...) -> None: ...

class ChangeMembershipRequest(_message.Message):
    __slots__ = ("change", "node_id")
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    change: MembershipChange
    node_id: int
    def __init__(self, change: _Optional[_Union[MembershipChange, str]] = ..., node_id: _Optional[int] = ...) -> None: ...

class ChangeMembershipResponse(_message.Message):
    __slots__ = ("voters", "learners")
    VOTERS_FIELD_NUMBER: _ClassVar[int]
    LEARNERS_FIELD_NUMBER: _ClassVar[int]
    voters: _containers.RepeatedScalarFieldContainer[int]
    learners: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, voters: _Optional[_Iterable[int]] = ..., learners: _Optional[_Iterable[int]] = ...) -> None: ...

class TransferLeaderRequest(_message.Message):
    __slots__ = ("target_id",)
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    target_id: int
    def __init__(self, target_id: _Optional[int] = ...) -> None: ...

class TransferLeaderResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
