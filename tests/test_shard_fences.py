"""Fences: a shard released by a move while its group held nothing of the model.

The race they close: a model is registered in the coordinator, a shard move starts before
a client installed the model's keys on the giving group, the giving group (knowing nothing
of the model) hands nothing over, and the client, with the shard map it read before the
move, installs the shard's keys there and pushes to them: acknowledged pushes on a group
the coordinator no longer routes to, lost. With the fence, those keys are refused.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest

from paramstore.shard import (
    ErrorCode,
    ShardStateMachine,
    SnapshotFormatError,
    accept_parts,
    decode_result,
    encode_drop,
    encode_install,
    encode_push,
    encode_release,
    shard_of,
)
from proto import shard_pb2 as pb

NUM_SHARDS = 8
SGD = {"name": "sgd", "learning_rate": 0.5}
KEYS = {f"layer{i}/w": np.full(4 + i, float(i), dtype=np.float32) for i in range(12)}
FENCED = next(s for s in range(NUM_SHARDS) if any(shard_of(k, NUM_SHARDS) == s for k in KEYS))
FENCED_KEYS = {k: v for k, v in KEYS.items() if shard_of(k, NUM_SHARDS) == FENCED}
OTHER_KEYS = {k: v for k, v in KEYS.items() if shard_of(k, NUM_SHARDS) != FENCED}


def _apply(machine: ShardStateMachine, data: bytes):  # type: ignore[no-untyped-def]
    return decode_result(machine.apply_bytes(data))


def _install(machine: ShardStateMachine, keys: dict[str, np.ndarray]):  # type: ignore[no-untyped-def]
    return _apply(machine, encode_install("m", SGD, keys, NUM_SHARDS))


def _lift(move_id: int) -> bytes:
    part = pb.AcceptShard(model="m", shard=FENCED, move_id=move_id, last=True)
    return pb.ShardCommand(accept_shard=part).SerializeToString()


def test_a_release_before_the_model_came_fences_the_shard_and_its_keys_are_refused() -> None:
    giver = ShardStateMachine()
    fenced = _apply(giver, encode_release("m", FENCED, 5))
    assert fenced.ok and "fenced for move 5" in fenced.message
    assert _apply(giver, encode_release("m", FENCED, 5)).ok  # a repeat is a no-op
    # An install that includes the fenced shard's keys is refused whole: nothing changes.
    before = giver.snapshot()
    refused = _install(giver, KEYS)
    assert refused.code == ErrorCode.WRONG_GROUP and "moved to another group" in refused.message
    assert giver.snapshot() == before and giver.models() == ()
    # The model's other shards are installed and served; the fenced one stays refused.
    assert _install(giver, OTHER_KEYS).ok
    assert sorted(giver.keys("m")) == sorted(OTHER_KEYS)
    assert _install(giver, FENCED_KEYS).code == ErrorCode.WRONG_GROUP
    push = _apply(giver, encode_push("m", [("c", 1)], {k: np.ones_like(v) for k, v in FENCED_KEYS.items()}))
    assert push.code == ErrorCode.WRONG_GROUP
    # The move hands over an empty shard, and its drop is accepted.
    model, frozen = giver.released_shard("m", FENCED, 5)
    assert frozen == {}
    parts = list(accept_parts(model, FENCED, 5, frozen, 1 << 20))
    taker = ShardStateMachine()
    for part in parts:
        assert _apply(taker, pb.ShardCommand(accept_shard=part).SerializeToString()).ok
    assert _install(taker, FENCED_KEYS).ok  # the new group serves the shard's keys
    assert _apply(giver, encode_drop("m", FENCED, 5)).ok
    assert _install(giver, FENCED_KEYS).code == ErrorCode.WRONG_GROUP


def test_a_fence_survives_a_snapshot_and_stale_or_bad_releases_change_nothing() -> None:
    giver = ShardStateMachine()
    assert _apply(giver, encode_release("m", FENCED, 5)).ok
    snapshot = giver.snapshot()
    restored = ShardStateMachine()
    restored.restore(snapshot)
    assert restored.snapshot() == snapshot
    assert _install(restored, KEYS).code == ErrorCode.WRONG_GROUP
    stale = _apply(restored, encode_release("m", FENCED, 4))
    assert stale.code == ErrorCode.WRONG_GROUP and "stale" in stale.message
    bad_move = _apply(restored, encode_release("m", FENCED, 0))
    assert bad_move.code == ErrorCode.INVALID_ARGUMENT
    bad_shard = _apply(restored, encode_release("m", 1 << 20, 6))
    assert bad_shard.code == ErrorCode.INVALID_ARGUMENT
    assert restored.snapshot() == snapshot


def test_a_called_off_move_takes_its_fence_back() -> None:
    giver = ShardStateMachine()
    assert _apply(giver, encode_release("m", FENCED, 5)).ok
    assert _apply(giver, _lift(4)).ok  # another move's: nothing lifted
    assert _install(giver, FENCED_KEYS).code == ErrorCode.WRONG_GROUP
    lifted = _apply(giver, _lift(5))
    assert lifted.ok and "served here again" in lifted.message
    assert _apply(giver, _lift(5)).ok  # a repeat is a no-op
    assert _install(giver, KEYS).ok
    assert sorted(giver.keys("m")) == sorted(KEYS)


def test_a_format_4_snapshot_reads_as_a_state_without_fences() -> None:
    machine = ShardStateMachine()
    assert _install(machine, KEYS).ok
    current = machine.snapshot()
    magic, version, header_bytes = struct.unpack_from(">8sIQ", current)
    assert version == 5
    old = struct.pack(">8sIQ", magic, 4, header_bytes) + current[struct.calcsize(">8sIQ") :]
    restored = ShardStateMachine()
    restored.restore(old)
    assert restored.snapshot() == current
    # A format 4 snapshot cannot carry fences.
    fenced = ShardStateMachine()
    assert _apply(fenced, encode_release("x", 0, 1)).ok
    data = fenced.snapshot()
    magic, _, header_bytes = struct.unpack_from(">8sIQ", data)
    with pytest.raises(SnapshotFormatError, match="cannot hold fences"):
        ShardStateMachine().restore(struct.pack(">8sIQ", magic, 4, header_bytes) + data[20:])
