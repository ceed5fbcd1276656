"""The shard state machine: install, push, exactly-once, bad input, snapshots (unit tests).

The stateful model-based test is in tests/test_shard_machine_stateful.py.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from consensus.messages import Entry
from paramstore import optim
from paramstore.shard import (
    ErrorCode,
    NonFinitePolicy,
    ShardError,
    ShardLimits,
    ShardResult,
    ShardStateMachine,
    SnapshotFormatError,
    decode_result,
    encode_install,
    encode_push,
)
from proto import shard_pb2 as pb

SGD = {"name": "sgd", "learning_rate": 1.0}
ADAM = {"name": "adam", "learning_rate": 0.01}


def _initial() -> dict[str, np.ndarray]:
    return {"a": np.arange(4, dtype=np.float32), "b": np.full(3, 2.0, np.float32)}


def _machine(
    optimizer: dict[str, object] = SGD,
    policy: NonFinitePolicy = NonFinitePolicy.REJECT,
    limits: ShardLimits | None = None,
) -> ShardStateMachine:
    machine = ShardStateMachine(limits)
    result = _apply(
        machine, encode_install("m", optimizer, _initial(), num_shards=4, non_finite_policy=policy)
    )
    assert result.ok and result.installed == 2, result
    return machine


def _apply(machine: ShardStateMachine, data: bytes) -> ShardResult:
    return decode_result(machine.apply_bytes(data))


def _grads(a: float = 1.0, b: float = 0.0, dtype: type = np.float32) -> dict[str, np.ndarray]:
    return {"a": np.full(4, a, dtype), "b": np.full(3, b, dtype)}


def _refused(machine: ShardStateMachine, data: bytes, code: ErrorCode) -> ShardResult:
    """``data`` is refused with ``code`` and leaves the state byte-identical."""
    before = machine.snapshot()
    result = _apply(machine, data)
    assert result.code == code, result
    assert result.message
    assert machine.snapshot() == before
    return result


# ---- install --------------------------------------------------------------------------------


def test_install_creates_the_model_and_repeating_it_is_a_no_op() -> None:
    machine = _machine()
    assert machine.models() == ("m",)
    assert machine.keys("m") == ("a", "b")
    assert machine.step("m") == 0
    np.testing.assert_array_equal(machine.pull("m", ["a"])["a"], np.arange(4, dtype=np.float32))
    before = machine.snapshot()
    # Same spec in another spelling (defaults filled in) is the same optimizer.
    again = encode_install("m", {"learning_rate": 1.0, "name": "sgd"}, _initial(), num_shards=4)
    result = _apply(machine, again)
    assert result.ok and result.installed == 0
    assert machine.snapshot() == before


def test_install_adds_keys_in_batches_even_after_training() -> None:
    machine = _machine()
    assert _apply(machine, encode_push("m", [("w", 1)], _grads())).ok
    result = _apply(
        machine, encode_install("m", SGD, {"c": np.ones(2, np.float32), **_initial()}, num_shards=4)
    )
    assert result.ok and result.installed == 1  # a and b are recognized by their initial values
    assert machine.keys("m") == ("a", "b", "c")


def test_install_conflicts_and_bad_definitions_change_nothing() -> None:
    machine = _machine()
    conflicts = [
        encode_install("m", ADAM, _initial(), num_shards=4),
        encode_install("m", SGD, _initial(), num_shards=5),
        encode_install("m", SGD, _initial(), num_shards=4, non_finite_policy=NonFinitePolicy.SKIP),
        encode_install("m", SGD, {"a": np.zeros(4, np.float32)}, num_shards=4),
        encode_install("m", SGD, {"a": np.arange(5, dtype=np.float32)}, num_shards=4),
    ]
    for data in conflicts:
        _refused(machine, data, ErrorCode.SPEC_CONFLICT)
    _refused(machine, encode_install("n", {"name": "nope"}, {}, num_shards=4), ErrorCode.INVALID_ARGUMENT)
    _refused(machine, encode_install("n", SGD, {}, num_shards=0), ErrorCode.INVALID_ARGUMENT)
    _refused(machine, encode_install("", SGD, {}, num_shards=1), ErrorCode.INVALID_ARGUMENT)
    nan = {"k": np.array([np.nan], np.float32)}
    _refused(machine, encode_install("n", SGD, nan, num_shards=1), ErrorCode.INVALID_ARGUMENT)
    half = {"k": np.ones(2, np.float16)}
    _refused(machine, encode_install("n", SGD, half, num_shards=1), ErrorCode.DTYPE_MISMATCH)
    no_policy = pb.ShardCommand(
        install_keys=pb.InstallKeys(model="n", optimizer_json='{"name":"sgd"}', num_shards=1)
    )
    _refused(machine, no_policy.SerializeToString(), ErrorCode.INVALID_ARGUMENT)
    repeated = pb.ShardCommand(
        install_keys=pb.InstallKeys(
            model="n",
            optimizer_json='{"name":"sgd","learning_rate":1}',
            non_finite_policy=pb.NON_FINITE_POLICY_REJECT,
            num_shards=1,
            keys=[pb.KeyTensor(key="k", tensor=pb.Tensor(dtype=pb.D_TYPE_FLOAT32, data=b"\0" * 4))] * 2,
        )
    )
    _refused(machine, repeated.SerializeToString(), ErrorCode.INVALID_ARGUMENT)


def test_install_bounds() -> None:
    limits = ShardLimits(models_max=1, keys_per_model_max=2, key_elements_max=4, elements_max=7)
    machine = _machine(limits=limits)
    _refused(machine, encode_install("n", SGD, {}, num_shards=1), ErrorCode.RESOURCE_EXHAUSTED)
    _refused(
        machine, encode_install("m", SGD, {"c": np.ones(1, np.float32)}, 4), ErrorCode.RESOURCE_EXHAUSTED
    )
    other = ShardStateMachine(limits)
    _refused(other, encode_install("m", SGD, {"c": np.ones(5, np.float32)}, 4), ErrorCode.TOO_LARGE)
    two = {"c": np.ones(4, np.float32), "d": np.ones(4, np.float32)}
    _refused(other, encode_install("m", SGD, two, 4), ErrorCode.RESOURCE_EXHAUSTED)


# ---- push -----------------------------------------------------------------------------------


def test_push_applies_the_optimizer_to_every_key_it_names() -> None:
    machine = _machine(ADAM)
    grads = _grads(0.5, -2.0)
    result = _apply(machine, encode_push("m", [("w1", 1), ("w2", 1)], grads, config_number=3))
    assert result.ok and result.step == 1 and not result.duplicate
    opt = optim.optimizer_from_spec(ADAM)
    for key, initial in _initial().items():
        weights = initial.copy()
        opt.apply(weights, grads[key], opt.init_slots(weights.shape), 0)
        assert machine.pull("m", [key])[key].tobytes() == weights.tobytes()
    # A push of only some keys steps only those keys' optimizer count.
    assert _apply(machine, encode_push("m", [("w1", 2)], {"a": np.ones(4, np.float32)})).ok
    assert (machine.step("m"), machine.key_step("m", "a"), machine.key_step("m", "b")) == (2, 2, 1)


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16])
def test_push_accepts_half_precision_gradients(dtype: type) -> None:
    machine = _machine()
    assert _apply(machine, encode_push("m", [("w", 1)], _grads(0.5, 0.25, dtype))).ok
    np.testing.assert_array_equal(machine.pull("m", ["a"])["a"], np.arange(4, dtype=np.float32) - 0.5)
    np.testing.assert_array_equal(machine.pull("m", ["b"])["b"], np.full(3, 1.75, np.float32))


def test_runtime_entries_are_applied() -> None:
    machine = _machine()
    result = decode_result(machine.apply(Entry(term=1, index=5, data=encode_push("m", [("w", 1)], _grads()))))
    assert result.ok and machine.step("m") == 1


def _raw_push(gradients: list[pb.KeyTensor], covers: list[tuple[str, int]] | None = None) -> bytes:
    covers = [("w", 1)] if covers is None else covers
    push = pb.Push(
        model="m", covers=[pb.ClientSequence(client_id=c, sequence=s) for c, s in covers], gradients=gradients
    )
    return pb.ShardCommand(push=push).SerializeToString()


def _f32(key: str, count: int) -> pb.KeyTensor:
    return pb.KeyTensor(key=key, tensor=pb.Tensor(dtype=pb.D_TYPE_FLOAT32, data=b"\0" * 4 * count))


def test_bad_pushes_are_refused_and_change_nothing() -> None:
    machine = _machine()
    assert _apply(machine, encode_push("m", [("w", 1)], _grads())).ok
    cases = [
        (encode_push("nope", [("w", 2)], _grads()), ErrorCode.UNKNOWN_MODEL),
        (encode_push("m", [("w", 2)], {"zzz": np.ones(1, np.float32)}), ErrorCode.UNKNOWN_KEY),
        (encode_push("m", [("w", 2)], {"a": np.ones(5, np.float32)}), ErrorCode.SHAPE_MISMATCH),
        (encode_push("m", [("w", 2)], {"a": np.ones(2, np.float16)}), ErrorCode.SHAPE_MISMATCH),
        (
            encode_push("m", [("w", 2)], {**_grads(), "b": np.array([1, np.nan, 1], np.float32)}),
            ErrorCode.NON_FINITE,
        ),
        (encode_push("m", [("w", 2)], {"a": np.array([np.inf] * 4, np.float16)}), ErrorCode.NON_FINITE),
        (encode_push("m", [("w", 0)], _grads()), ErrorCode.INVALID_ARGUMENT),
        (encode_push("m", [("", 2)], _grads()), ErrorCode.INVALID_ARGUMENT),
        (encode_push("m", [], _grads()), ErrorCode.INVALID_ARGUMENT),
        (encode_push("m", [("w", 2)], {}), ErrorCode.INVALID_ARGUMENT),
        (encode_push("m", [("w", 2), ("w", 3)], _grads()), ErrorCode.INVALID_ARGUMENT),
        (_raw_push([_f32("a", 4), _f32("a", 4)], [("w", 2)]), ErrorCode.INVALID_ARGUMENT),
        (
            _raw_push([pb.KeyTensor(key="a", tensor=pb.Tensor(data=b"\0" * 16))], [("w", 2)]),
            ErrorCode.DTYPE_MISMATCH,
        ),
        (
            _raw_push([pb.KeyTensor(key="a", tensor=pb.Tensor(dtype=1, data=b"\0" * 15))], [("w", 2)]),
            ErrorCode.INVALID_ARGUMENT,
        ),
        (b"\xff\xff\xff", ErrorCode.INVALID_ARGUMENT),
        (b"", ErrorCode.INVALID_ARGUMENT),
    ]
    for data, code in cases:
        _refused(machine, data, code)
    # A refused push is not recorded: once fixed, the same (client, sequence) applies.
    assert _apply(machine, encode_push("m", [("w", 2)], _grads())).step == 2


def test_non_finite_report_names_the_keys() -> None:
    machine = _machine()
    bad = {"a": np.ones(4, np.float32), "b": np.array([1, np.nan, 1], np.float32)}
    assert _refused(machine, encode_push("m", [("w", 1)], bad), ErrorCode.NON_FINITE).keys == ("b",)


def test_skip_policy_consumes_the_push_without_touching_weights() -> None:
    machine = _machine(policy=NonFinitePolicy.SKIP)
    weights_before = machine.pull("m", ["a", "b"])
    bad = {"a": np.ones(4, np.float32), "b": np.array([1, np.nan, 1], np.float32)}
    result = _apply(machine, encode_push("m", [("w", 1)], bad))
    assert result.ok and result.skipped and result.keys == ("b",) and result.step == 0
    assert machine.skipped_pushes("m") == 1 and machine.step("m") == 0
    for key, weights in machine.pull("m", ["a", "b"]).items():
        assert weights.tobytes() == weights_before[key].tobytes()
    # Its retry is a duplicate that returns the same (skipped) result.
    again = _apply(machine, encode_push("m", [("w", 1)], bad))
    assert again.duplicate and decode_result(again.replays[0].result).skipped


def test_too_large_command_and_full_dedup_table() -> None:
    limits = ShardLimits(command_bytes_max=200, dedup_clients_max=2, covers_per_push_max=3)
    machine = _machine(limits=limits)
    big = {"a": np.ones(4, np.float32)}
    _refused(machine, encode_push("m", [("w" * 200, 1)], big), ErrorCode.TOO_LARGE)
    _refused(machine, encode_push("m", [("a", 1), ("b", 1), ("c", 1), ("d", 1)], big), ErrorCode.TOO_LARGE)
    assert _apply(machine, encode_push("m", [("a", 1), ("b", 1)], big)).ok
    _refused(machine, encode_push("m", [("c", 1)], big), ErrorCode.RESOURCE_EXHAUSTED)
    assert _apply(machine, encode_push("m", [("a", 2)], big)).ok  # known clients go on


def test_a_full_dedup_table_forgets_only_clients_idle_for_long_enough_in_log_time() -> None:
    limits = ShardLimits(dedup_clients_max=2, dedup_idle_ms=10_000)
    machine, twin = _machine(limits=limits), _machine(limits=limits)
    grads = {"a": np.ones(4, np.float32)}

    def push(client: str, sequence: int, now_ms: int) -> bytes:
        return encode_push("m", [(client, sequence)], grads, now_ms=now_ms)

    entries = [push("a", 1, 1_000), push("b", 1, 5_000)]
    for entry in entries:
        assert _apply(machine, entry).ok
    # c at 9,000: nobody idle for 10 s yet, so no room, and nothing changes.
    before = machine.snapshot()
    refused = decode_result(machine.apply_bytes(push("c", 1, 9_000)))
    assert refused.code == ErrorCode.RESOURCE_EXHAUSTED and "idle for 10000 ms" in refused.message
    assert machine.snapshot() == before
    # A leader whose clock is behind does not turn log time back: still 9,000 < 11,000.
    assert decode_result(machine.apply_bytes(push("c", 1, 2_000))).code == ErrorCode.RESOURCE_EXHAUSTED
    # At 12,000 a (idle 11 s) is forgotten for c; b (idle 7 s) is kept and still deduplicated.
    entries.append(push("c", 1, 12_000))
    assert _apply(machine, entries[-1]).ok
    assert _apply(machine, push("b", 1, 12_500)).duplicate
    # Another replica applying the same entries (after a snapshot) ends in the same bytes.
    for entry in entries[:2]:
        twin.apply_bytes(entry)
    restored = _machine(limits=limits)
    restored.restore(twin.snapshot())
    restored.apply_bytes(entries[2])
    restored.apply_bytes(push("b", 1, 12_500))
    assert restored.snapshot() == machine.snapshot()
    # A forgotten client is a new one: a retry that late would apply again (why the idle time
    # is an hour, and a client gives up retrying after its deadline).
    assert not _apply(machine, push("a", 1, 30_000)).duplicate


# ---- exactly-once ---------------------------------------------------------------------------


def test_a_retried_entry_is_acknowledged_without_applying_again() -> None:
    machine = _machine()
    entry = encode_push("m", [("w1", 1), ("w2", 7)], _grads())
    first = machine.apply_bytes(entry)
    snapshot = machine.snapshot()
    again = _apply(machine, entry)
    assert again.ok and again.duplicate and again.step == 1
    assert sorted((r.push.client_id, r.push.sequence, r.result) for r in again.replays) == [
        ("w1", 1, first),
        ("w2", 7, first),
    ]
    assert machine.snapshot() == snapshot
    # The same pushes merged differently (a new leader) are duplicates too.
    split = _apply(machine, encode_push("m", [("w2", 7)], _grads()))
    assert split.duplicate and machine.snapshot() == snapshot


def test_partial_duplicates_are_refused_and_the_new_pushes_apply_alone() -> None:
    machine = _machine()
    assert _apply(machine, encode_push("m", [("w1", 1)], _grads(1.0))).ok
    merged = encode_push("m", [("w1", 1), ("w2", 1)], _grads(3.0))
    result = _refused(machine, merged, ErrorCode.PARTIAL_DUPLICATE)
    assert [(r.push.client_id, r.push.sequence) for r in result.replays] == [("w1", 1)]
    assert decode_result(result.replays[0].result).step == 1
    assert _apply(machine, encode_push("m", [("w2", 1)], _grads(2.0))).step == 2
    np.testing.assert_array_equal(machine.pull("m", ["a"])["a"], np.arange(4, dtype=np.float32) - 3.0)


def test_stale_sequences_are_refused() -> None:
    machine = _machine()
    assert _apply(machine, encode_push("m", [("w1", 1)], _grads())).ok
    assert _apply(machine, encode_push("m", [("w1", 5)], _grads())).ok  # gaps are allowed
    _refused(machine, encode_push("m", [("w1", 4)], _grads()), ErrorCode.STALE_SEQUENCE)
    _refused(machine, encode_push("m", [("w1", 1), ("w2", 1)], _grads()), ErrorCode.STALE_SEQUENCE)


# ---- reads ----------------------------------------------------------------------------------


def test_pull_copies_or_gives_read_only_views() -> None:
    machine = _machine()
    copy = machine.pull("m", ["a"])["a"]
    view = machine.pull("m", ["a"], copy=False)["a"]
    assert not view.flags.writeable
    assert _apply(machine, encode_push("m", [("w", 1)], _grads())).ok
    np.testing.assert_array_equal(copy, np.arange(4, dtype=np.float32))
    np.testing.assert_array_equal(view, np.arange(4, dtype=np.float32) - 1)
    for call in (
        lambda: machine.pull("x", ["a"]),
        lambda: machine.pull("m", ["x"]),
        lambda: machine.step("x"),
    ):
        with pytest.raises(ShardError):
            call()


# ---- snapshots ------------------------------------------------------------------------------


def _trained() -> ShardStateMachine:
    machine = _machine(ADAM)
    for sequence in range(1, 4):
        assert _apply(
            machine, encode_push("m", [("w1", sequence), ("w2", sequence)], _grads(sequence, 1.0))
        ).ok
    return machine


def test_snapshot_round_trip_is_exact_and_deterministic() -> None:
    machine = _trained()
    data = machine.snapshot()
    assert data[:8] == b"PSSHARD\x00"
    assert _trained().snapshot() == data  # same entries, same bytes
    restored = ShardStateMachine()
    restored.restore(data)
    assert restored.snapshot() == data
    # The restored machine goes on exactly as the original: same results, same bytes.
    entry = encode_push("m", [("w1", 4)], _grads(0.5, 0.5))
    assert restored.apply_bytes(entry) == machine.apply_bytes(entry)
    assert restored.snapshot() == machine.snapshot()
    # Dedup survives the snapshot.
    assert _apply(restored, encode_push("m", [("w2", 3)], _grads())).duplicate
    empty = ShardStateMachine()
    empty_restored = ShardStateMachine()
    empty_restored.restore(empty.snapshot())
    assert empty_restored.snapshot() == empty.snapshot()


def test_restore_refuses_bad_bytes_and_keeps_the_state() -> None:
    machine = _trained()
    data = machine.snapshot()
    target = _machine()
    before = target.snapshot()
    bad = [
        b"",
        b"NOTSHARD" + data[8:],
        data[:8] + (99).to_bytes(4, "big") + data[12:],
        data[:-1],
        data + b"\0",
        data[:20],
    ]
    for blob in bad:
        with pytest.raises(SnapshotFormatError):
            target.restore(blob)
        assert target.snapshot() == before
    with pytest.raises(SnapshotFormatError, match="limits"):
        ShardStateMachine(ShardLimits(models_max=3)).restore(data)
