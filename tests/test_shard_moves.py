"""Shard moves in the shard state machine: ReleaseShard, AcceptShard parts, DropShard.

The reference: a machine that never moves anything gets the same pushes; a moved shard's
keys must end bit-identical to it, wherever they were pushed.
"""

from __future__ import annotations

import numpy as np
import pytest

from paramstore.coordinator import SyncMode
from paramstore.shard import (
    ErrorCode,
    ShardError,
    ShardStateMachine,
    accept_parts,
    decode_result,
    encode_drop,
    encode_install,
    encode_push,
    encode_release,
    encode_set_workers,
    shard_of,
)
from proto import shard_pb2 as pb

NUM_SHARDS = 8
ADAM = {"name": "adam", "learning_rate": 0.01}
KEYS = {f"layer{i}/w": np.linspace(-1, 1, 16 + i, dtype=np.float32) for i in range(12)}


def _shard_keys(shard: int) -> list[str]:
    return [key for key in KEYS if shard_of(key, NUM_SHARDS) == shard]


MOVED = next(s for s in range(NUM_SHARDS) if len(_shard_keys(s)) >= 2)
STAYING = [key for key in KEYS if shard_of(key, NUM_SHARDS) != MOVED]


def _install(machine: ShardStateMachine, sync_mode: SyncMode = SyncMode.ASYNC) -> None:
    result = decode_result(
        machine.apply_bytes(encode_install("m", ADAM, KEYS, NUM_SHARDS, sync_mode=sync_mode))
    )
    assert result.ok, result


def _grads(keys: list[str], seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {key: rng.standard_normal(KEYS[key].size).astype(np.float32) for key in keys}


def _push(machine: ShardStateMachine, client: str, sequence: int, grads: dict[str, np.ndarray]):
    return decode_result(machine.apply_bytes(encode_push("m", [(client, sequence)], grads)))


def _move(giver: ShardStateMachine, taker: ShardStateMachine, move_id: int, part_bytes_max: int = 64) -> int:
    """Release at ``giver``, every part accepted at ``taker``; returns the number of parts."""
    assert decode_result(giver.apply_bytes(encode_release("m", MOVED, move_id))).ok
    model, keys = giver.released_shard("m", MOVED, move_id)
    parts = list(accept_parts(model, MOVED, move_id, keys, part_bytes_max))
    for part in parts:
        result = decode_result(taker.apply_bytes(pb.ShardCommand(accept_shard=part).SerializeToString()))
        assert result.ok, result
    return len(parts)


def test_a_moved_shard_continues_bit_identical_at_its_new_group() -> None:
    giver, taker, reference = ShardStateMachine(), ShardStateMachine(), ShardStateMachine()
    for machine in (giver, reference):
        _install(machine)
    for sequence in range(1, 4):
        grads = _grads(list(KEYS), sequence)
        assert _push(giver, "c", sequence, grads).ok
        assert _push(reference, "c", sequence, grads).ok
    parts = _move(giver, taker, move_id=7, part_bytes_max=64)
    assert parts >= 2  # small parts: staged, then served
    for sequence in range(4, 7):
        grads = _grads(list(KEYS), sequence)
        assert _push(giver, "c", sequence, {k: grads[k] for k in STAYING}).ok
        assert _push(taker, "c", sequence, {k: grads[k] for k in _shard_keys(MOVED)}).ok
        assert _push(reference, "c", sequence, grads).ok
    expected = reference.pull("m", list(KEYS))
    got = giver.pull("m", STAYING) | taker.pull("m", _shard_keys(MOVED))
    for key in KEYS:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)
        owner = taker if key in _shard_keys(MOVED) else giver
        assert owner.key_step("m", key) == reference.key_step("m", key)
    assert sorted(taker.keys("m")) == sorted(_shard_keys(MOVED))


def test_after_release_the_shard_is_refused_and_nothing_changes() -> None:
    giver = ShardStateMachine()
    _install(giver)
    grads = _grads(list(KEYS), 1)
    assert _push(giver, "c", 1, grads).ok
    assert decode_result(giver.apply_bytes(encode_release("m", MOVED, 3))).ok
    before = giver.snapshot()
    refused = _push(giver, "c", 2, grads)
    assert refused.code == ErrorCode.WRONG_GROUP and "moved to another group" in refused.message
    install = decode_result(giver.apply_bytes(encode_install("m", ADAM, KEYS, NUM_SHARDS)))
    assert install.code == ErrorCode.WRONG_GROUP
    assert giver.snapshot() == before
    # A retry of the push applied before the release is still acknowledged (dedup first).
    retry = _push(giver, "c", 1, grads)
    assert retry.ok and retry.duplicate
    with pytest.raises(ShardError) as caught:
        giver.pull("m", _shard_keys(MOVED))
    assert caught.value.code == ErrorCode.WRONG_GROUP
    # The other keys are served as before.
    assert _push(giver, "c", 2, {k: grads[k] for k in STAYING}).ok


def test_every_step_is_idempotent_and_drop_frees_the_frozen_state() -> None:
    giver, taker = ShardStateMachine(), ShardStateMachine()
    _install(giver)
    _move(giver, taker, move_id=5)
    giver_state, taker_state = giver.snapshot(), taker.snapshot()
    assert decode_result(giver.apply_bytes(encode_release("m", MOVED, 5))).ok
    model, keys = giver.released_shard("m", MOVED, 5)
    for part in accept_parts(model, MOVED, 5, keys, 64):
        again = decode_result(taker.apply_bytes(pb.ShardCommand(accept_shard=part).SerializeToString()))
        assert again.ok and "already" in again.message
    assert (giver.snapshot(), taker.snapshot()) == (giver_state, taker_state)
    assert decode_result(giver.apply_bytes(encode_drop("m", MOVED, 5))).ok
    with pytest.raises(ShardError):
        giver.released_shard("m", MOVED, 5)
    dropped = giver.snapshot()
    assert len(dropped) < len(giver_state)
    assert decode_result(giver.apply_bytes(encode_drop("m", MOVED, 5))).ok
    assert giver.snapshot() == dropped
    # A later release by another move of a shard that is gone is refused.
    other = decode_result(giver.apply_bytes(encode_release("m", MOVED, 6)))
    assert other.code == ErrorCode.WRONG_GROUP


def test_a_shard_moves_back_and_an_occupied_target_refuses() -> None:
    first, second = ShardStateMachine(), ShardStateMachine()
    _install(first)
    _move(first, second, move_id=1)
    _move(second, first, move_id=2)
    assert sorted(first.keys("m")) == sorted(KEYS)
    assert decode_result(first.apply_bytes(encode_push("m", [("c", 1)], _grads(list(KEYS), 9)))).ok
    # first serves the shard now: accepting it again (a stale move) is refused, state kept.
    model, keys = second.released_shard("m", MOVED, 2)
    before = first.snapshot()
    stale = next(iter(accept_parts(model, MOVED, 3, keys, 1 << 20)))
    result = decode_result(first.apply_bytes(pb.ShardCommand(accept_shard=stale).SerializeToString()))
    assert result.code == ErrorCode.SPEC_CONFLICT
    assert first.snapshot() == before


def test_snapshots_mid_move_restore_the_same_state() -> None:
    giver, taker = ShardStateMachine(), ShardStateMachine()
    _install(giver)
    assert _push(giver, "c", 1, _grads(list(KEYS), 1)).ok
    assert decode_result(giver.apply_bytes(encode_release("m", MOVED, 4))).ok
    model, keys = giver.released_shard("m", MOVED, 4)
    parts = list(accept_parts(model, MOVED, 4, keys, 64))
    assert len(parts) >= 2
    taker.apply_bytes(pb.ShardCommand(accept_shard=parts[0]).SerializeToString())
    for machine in (giver, taker):
        restored = ShardStateMachine()
        restored.restore(machine.snapshot())
        assert restored.snapshot() == machine.snapshot()
    with pytest.raises(ShardError) as caught:  # staged, not served yet
        taker.pull("m", [parts[0].keys[0].key])
    assert caught.value.code == ErrorCode.WRONG_GROUP
    resumed = ShardStateMachine()
    resumed.restore(taker.snapshot())
    for part in parts[1:]:
        assert decode_result(resumed.apply_bytes(pb.ShardCommand(accept_shard=part).SerializeToString())).ok
    np.testing.assert_array_equal(
        resumed.pull("m", _shard_keys(MOVED))[_shard_keys(MOVED)[0]], keys[_shard_keys(MOVED)[0]].weights
    )


def test_a_bsp_shard_moves_mid_step_with_its_barrier() -> None:
    giver, taker, reference = ShardStateMachine(), ShardStateMachine(), ShardStateMachine()
    for machine in (giver, reference):
        _install(machine, SyncMode.BSP)
    for machine in (giver, taker, reference):
        machine.apply_bytes(encode_set_workers("m", 1, ["w1", "w2"]))
    first, second = _grads(list(KEYS), 1), _grads(list(KEYS), 2)

    def bsp_push(machine: ShardStateMachine, worker: str, grads: dict[str, np.ndarray]):
        return decode_result(machine.apply_bytes(encode_push("m", [(worker, 1)], grads, step=0)))

    assert bsp_push(giver, "w1", first).ok and bsp_push(reference, "w1", first).ok
    _move(giver, taker, move_id=9)  # mid-step: w1 pushed for step 0, w2 not yet
    taker.apply_bytes(encode_set_workers("m", 1, ["w1", "w2"]))
    refused = bsp_push(giver, "w2", second)
    assert refused.code == ErrorCode.WRONG_GROUP
    # w2 sends the moved keys to the taker, the rest to the giver: both for step 0.
    assert bsp_push(giver, "w2", {k: second[k] for k in STAYING}).step == 1
    assert taker.step("m") == 0  # the moved shard still waits for w2
    done = decode_result(
        taker.apply_bytes(encode_push("m", [("w2", 1)], {k: second[k] for k in _shard_keys(MOVED)}, step=0))
    )
    assert done.ok and done.step == 1
    assert bsp_push(reference, "w2", second).step == 1
    expected = reference.pull("m", list(KEYS))
    got = giver.pull("m", STAYING) | taker.pull("m", _shard_keys(MOVED))
    for key in KEYS:
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)
    restored = ShardStateMachine()
    restored.restore(taker.snapshot())
    assert restored.snapshot() == taker.snapshot()


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (lambda p: setattr(p, "shard", NUM_SHARDS), ErrorCode.INVALID_ARGUMENT),
        (lambda p: setattr(p, "move_id", 0), ErrorCode.INVALID_ARGUMENT),
        (lambda p: p.keys[0].slots.pop(), ErrorCode.INVALID_ARGUMENT),
        (lambda p: setattr(p.keys[0], "key", "not-on-this-shard"), ErrorCode.INVALID_ARGUMENT),
        (
            lambda p: setattr(p.definition, "optimizer_json", '{"name":"sgd","learning_rate":1}'),
            ErrorCode.SPEC_CONFLICT,
        ),
    ],
)
def test_bad_accept_parts_are_refused_and_change_nothing(change, code) -> None:  # type: ignore[no-untyped-def]
    giver, taker = ShardStateMachine(), ShardStateMachine()
    _install(giver)
    _install(taker)  # the taker holds the model (other shards): the definition must match,
    assert decode_result(taker.apply_bytes(encode_release("m", MOVED, 1))).ok  # not this shard
    assert decode_result(giver.apply_bytes(encode_release("m", MOVED, 2))).ok
    model, keys = giver.released_shard("m", MOVED, 2)
    part = next(iter(accept_parts(model, MOVED, 2, keys, 1 << 20)))
    change(part)
    before = taker.snapshot()
    result = decode_result(taker.apply_bytes(pb.ShardCommand(accept_shard=part).SerializeToString()))
    assert result.code == code, result
    assert taker.snapshot() == before


def test_moving_a_shard_without_keys_leaves_the_bsp_step_alone() -> None:
    shards = 64  # more shards than keys: some hold none
    empty = next(s for s in range(shards) if all(shard_of(key, shards) != s for key in KEYS))
    giver, taker = ShardStateMachine(), ShardStateMachine()
    for machine in (giver, taker):
        install = encode_install("m", ADAM, KEYS, shards, sync_mode=SyncMode.BSP)
        assert decode_result(machine.apply_bytes(install)).ok
        machine.apply_bytes(encode_set_workers("m", 1, ["w1"]))
        push = encode_push("m", [("w1", 1)], _grads(list(KEYS), 1), step=0)
        assert decode_result(machine.apply_bytes(push)).step == 1
    assert decode_result(giver.apply_bytes(encode_release("m", empty, 1))).ok
    model, keys = giver.released_shard("m", empty, 1)
    assert keys == {}
    for part in accept_parts(model, empty, 1, keys, 1 << 20):
        assert decode_result(taker.apply_bytes(pb.ShardCommand(accept_shard=part).SerializeToString())).ok
    assert taker.step("m") == giver.step("m") == 1


def test_a_called_off_move_gives_the_shard_back_to_its_group() -> None:
    giver = ShardStateMachine()
    _install(giver)
    assert _push(giver, "c", 1, _grads(list(KEYS), 1)).ok
    before = giver.pull("m", list(KEYS))
    assert decode_result(giver.apply_bytes(encode_release("m", MOVED, 4))).ok
    model, keys = giver.released_shard("m", MOVED, 4)
    for part in accept_parts(model, MOVED, 4, keys, 64):  # the giver accepts its own state back
        assert decode_result(giver.apply_bytes(pb.ShardCommand(accept_shard=part).SerializeToString())).ok
    after = giver.pull("m", list(KEYS))
    for key in KEYS:
        np.testing.assert_array_equal(after[key], before[key])
    assert _push(giver, "c", 2, _grads(list(KEYS), 2)).ok
    # A late retry of the called-off move's release is refused as stale, nothing changes.
    snapshot = giver.snapshot()
    late = decode_result(giver.apply_bytes(encode_release("m", MOVED, 3)))
    assert late.code == ErrorCode.WRONG_GROUP and "stale" in late.message
    assert giver.snapshot() == snapshot
    restored = ShardStateMachine()
    restored.restore(snapshot)
    assert restored.snapshot() == snapshot
