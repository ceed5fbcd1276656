from proto import raft_pb2 as _raft_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FaultDirection(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FAULT_DIRECTION_UNSPECIFIED: _ClassVar[FaultDirection]
    FAULT_DIRECTION_OUTBOUND: _ClassVar[FaultDirection]
    FAULT_DIRECTION_INBOUND: _ClassVar[FaultDirection]
    FAULT_DIRECTION_BOTH: _ClassVar[FaultDirection]
FAULT_DIRECTION_UNSPECIFIED: FaultDirection
FAULT_DIRECTION_OUTBOUND: FaultDirection
FAULT_DIRECTION_INBOUND: FaultDirection
FAULT_DIRECTION_BOTH: FaultDirection

class RaftBatch(_message.Message):
    __slots__ = ("from_node", "to_node", "messages")
    FROM_NODE_FIELD_NUMBER: _ClassVar[int]
    TO_NODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    from_node: int
    to_node: int
    messages: _containers.RepeatedCompositeFieldContainer[_raft_pb2.Message]
    def __init__(self, from_node: _Optional[int] = ..., to_node: _Optional[int] = ..., messages: _Optional[_Iterable[_Union[_raft_pb2.Message, _Mapping]]] = ...) -> None: ...

class StreamAck(_message.Message):
    __slots__ = ("batches", "messages")
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    batches: int
    messages: int
    def __init__(self, batches: _Optional[int] = ..., messages: _Optional[int] = ...) -> None: ...

class FaultRule(_message.Message):
    __slots__ = ("id", "peers", "direction", "drop_probability", "duplicate_probability", "delay_ms_min", "delay_ms_max", "partition")
    ID_FIELD_NUMBER: _ClassVar[int]
    PEERS_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    DROP_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    DELAY_MS_MIN_FIELD_NUMBER: _ClassVar[int]
    DELAY_MS_MAX_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    id: int
    peers: _containers.RepeatedScalarFieldContainer[int]
    direction: FaultDirection
    drop_probability: float
    duplicate_probability: float
    delay_ms_min: float
    delay_ms_max: float
    partition: bool
    def __init__(self, id: _Optional[int] = ..., peers: _Optional[_Iterable[int]] = ..., direction: _Optional[_Union[FaultDirection, str]] = ..., drop_probability: _Optional[float] = ..., duplicate_probability: _Optional[float] = ..., delay_ms_min: _Optional[float] = ..., delay_ms_max: _Optional[float] = ..., partition: _Optional[bool] = ...) -> None: ...

class InjectFaultRequest(_message.Message):
    __slots__ = ("rule",)
    RULE_FIELD_NUMBER: _ClassVar[int]
    rule: FaultRule
    def __init__(self, rule: _Optional[_Union[FaultRule, _Mapping]] = ...) -> None: ...

class InjectFaultResponse(_message.Message):
    __slots__ = ("rule_id",)
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    rule_id: int
    def __init__(self, rule_id: _Optional[int] = ...) -> None: ...

class ClearFaultsRequest(_message.Message):
    __slots__ = ("rule_ids",)
    RULE_IDS_FIELD_NUMBER: _ClassVar[int]
    rule_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, rule_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class ClearFaultsResponse(_message.Message):
    __slots__ = ("cleared",)
    CLEARED_FIELD_NUMBER: _ClassVar[int]
    cleared: int
    def __init__(self, cleared: _Optional[int] = ...) -> None: ...

class ListFaultsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListFaultsResponse(_message.Message):
    __slots__ = ("rules", "seed")
    RULES_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    rules: _containers.RepeatedCompositeFieldContainer[FaultRule]
    seed: int
    def __init__(self, rules: _Optional[_Iterable[_Union[FaultRule, _Mapping]]] = ..., seed: _Optional[int] = ...) -> None: ...

class SetTickRateRequest(_message.Message):
    __slots__ = ("factor",)
    FACTOR_FIELD_NUMBER: _ClassVar[int]
    factor: float
    def __init__(self, factor: _Optional[float] = ...) -> None: ...

class SetTickRateResponse(_message.Message):
    __slots__ = ("previous_factor", "factor", "driven")
    PREVIOUS_FACTOR_FIELD_NUMBER: _ClassVar[int]
    FACTOR_FIELD_NUMBER: _ClassVar[int]
    DRIVEN_FIELD_NUMBER: _ClassVar[int]
    previous_factor: float
    factor: float
    driven: bool
    def __init__(self, previous_factor: _Optional[float] = ..., factor: _Optional[float] = ..., driven: _Optional[bool] = ...) -> None: ...
