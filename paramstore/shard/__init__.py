"""The shard side of the parameter store: a model's keys and shards, and the replicated
state machine of a store group (weights, optimizer slots, step counts, dedup table).

Usage::

    from paramstore import shard

    layout = shard.ModelLayout.from_spec(spec)              # keys, their shards and ranges
    blocks = layout.split("params/dense/kernel", kernel)   # key -> view of the flat leaf
    machine = shard.ShardStateMachine()
    machine.apply_bytes(shard.encode_install("m", {"name": "sgd", "learning_rate": 0.1},
                                             initial_values, num_shards=layout.num_shards))
    result = shard.decode_result(machine.apply_bytes(shard.encode_push("m", [("w1", 1)], grads)))
    weights = machine.pull("m", ["params/dense/kernel#0"])
"""

from paramstore.shard._codec import (
    accept_parts,
    decode_result,
    encode_drop,
    encode_install,
    encode_push,
    encode_release,
    encode_result,
    encode_set_workers,
)
from paramstore.shard._keys import (
    BLOCK_ELEMENTS_MAX_DEFAULT,
    KEYS_MAX_DEFAULT,
    KeyPlacement,
    ModelLayout,
    block_key,
    shard_of,
)
from paramstore.shard._limits import ShardLimits
from paramstore.shard._machine import ShardStateMachine
from paramstore.shard._push_wire import KeyGradient, PushOp, WireTensor
from paramstore.shard._snapshot import SNAPSHOT_FORMAT_VERSION
from paramstore.shard._sync import SyncState
from paramstore.shard._tensors import all_finite, decode_tensor, encode_tensor
from paramstore.shard._types import (
    ClientSequence,
    ErrorCode,
    NonFinitePolicy,
    Replay,
    ShardError,
    ShardResult,
    SnapshotFormatError,
)

__all__ = [
    "BLOCK_ELEMENTS_MAX_DEFAULT",
    "KEYS_MAX_DEFAULT",
    "SNAPSHOT_FORMAT_VERSION",
    "ClientSequence",
    "ErrorCode",
    "KeyGradient",
    "KeyPlacement",
    "ModelLayout",
    "NonFinitePolicy",
    "PushOp",
    "Replay",
    "ShardError",
    "ShardLimits",
    "ShardResult",
    "ShardStateMachine",
    "SnapshotFormatError",
    "SyncState",
    "WireTensor",
    "accept_parts",
    "all_finite",
    "block_key",
    "decode_result",
    "decode_tensor",
    "encode_drop",
    "encode_install",
    "encode_push",
    "encode_release",
    "encode_result",
    "encode_set_workers",
    "encode_tensor",
    "shard_of",
]
