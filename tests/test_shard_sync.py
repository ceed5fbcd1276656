"""Sync modes in the shard state machine: BSP barriers, SSP clocks, worker membership.

A plain-Python reference of the BSP rules (gather, average when every worker pushed, a
leaver is not waited for, a joiner starts at the current step) is run against the machine
by hypothesis over random pushes, membership changes and snapshot restores.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paramstore.coordinator import SyncMode
from paramstore.shard import (
    ErrorCode,
    NonFinitePolicy,
    ShardResult,
    ShardStateMachine,
    decode_result,
    encode_install,
    encode_push,
    encode_set_workers,
)

SGD = {"name": "sgd", "learning_rate": 1.0}
KEYS = ("a", "b")


def _machine(mode: SyncMode, staleness: int = 0, policy: NonFinitePolicy = NonFinitePolicy.REJECT):
    machine = ShardStateMachine()
    initial = {key: np.zeros(4, np.float32) for key in KEYS}
    result = _apply(
        machine,
        encode_install(
            "m",
            SGD,
            initial,
            num_shards=1,  # one shard: one BSP barrier for both keys (see the multi-shard tests)
            non_finite_policy=policy,
            sync_mode=mode,
            staleness_bound=staleness,
        ),
    )
    assert result.ok, result.message
    return machine


def _apply(machine: ShardStateMachine, data: bytes) -> ShardResult:
    return decode_result(machine.apply_bytes(data))


def _push(machine, client: str, seq: int, value: float, step: int = 0, keys=KEYS) -> ShardResult:
    grads = {key: np.full(4, value, np.float32) for key in keys}
    return _apply(machine, encode_push("m", [(client, seq)], grads, step=step))


def _weights(machine) -> dict[str, float]:
    return {key: float(values[0]) for key, values in machine.pull("m", KEYS).items()}


# ---- BSP ----------------------------------------------------------------------------------------


def test_bsp_applies_the_mean_once_every_worker_pushed() -> None:
    machine = _machine(SyncMode.BSP)
    assert _apply(machine, encode_set_workers("m", 1, ["w1", "w2"])).ok
    first = _push(machine, "w1", 1, 2.0)
    assert first.ok and first.step == 0
    assert _weights(machine) == {"a": 0.0, "b": 0.0}
    assert not machine.pull_ready("m", 1, "")
    second = _push(machine, "w2", 1, 4.0)
    assert second.ok and second.step == 1
    assert _weights(machine) == {"a": -3.0, "b": -3.0}  # sgd lr 1 on the mean (2 + 4) / 2
    assert machine.pull_ready("m", 1, "")
    assert machine.key_step("m", "a") == 1


def test_bsp_refuses_wrong_steps_and_non_workers_and_acks_retries() -> None:
    machine = _machine(SyncMode.BSP)
    _apply(machine, encode_set_workers("m", 1, ["w1", "w2"]))
    before = machine.snapshot()
    outsider = _push(machine, "x", 1, 1.0)
    assert outsider.code == ErrorCode.NOT_A_WORKER and "not a worker" in outsider.message
    ahead = _push(machine, "w1", 1, 1.0, step=1)
    assert ahead.code == ErrorCode.WRONG_STEP and "gathering step 0" in ahead.message
    assert machine.snapshot() == before
    assert _push(machine, "w1", 1, 1.0).ok
    retry = _push(machine, "w1", 1, 1.0)
    assert retry.ok and retry.duplicate
    again = _push(machine, "w1", 2, 1.0)
    assert again.code == ErrorCode.WRONG_STEP and "already pushed" in again.message
    assert machine.sync_state("m").barriers[0].gathered_pushes == 1


def test_bsp_merged_entry_counts_every_covered_push() -> None:
    machine = _machine(SyncMode.BSP)
    _apply(machine, encode_set_workers("m", 1, ["w1", "w2", "w3"]))
    grads = {key: np.full(4, 6.0, np.float32) for key in KEYS}  # w1 + w2 summed by the leader
    assert _apply(machine, encode_push("m", [("w1", 1), ("w2", 1)], grads)).ok
    assert _push(machine, "w3", 1, 3.0).step == 1
    assert _weights(machine)["a"] == pytest.approx(-3.0)  # (6 + 3) / 3


def test_a_leaving_worker_is_not_waited_for_and_a_joiner_starts_at_the_step() -> None:
    machine = _machine(SyncMode.BSP)
    _apply(machine, encode_set_workers("m", 1, ["w1", "w2"]))
    _push(machine, "w1", 1, 2.0)
    result = _apply(machine, encode_set_workers("m", 2, ["w1"]))  # w2's lease expired
    assert result.ok and result.step == 1
    assert _weights(machine)["a"] == -2.0
    _apply(machine, encode_set_workers("m", 3, ["w1", "w3"]))
    assert sorted(machine.sync_state("m").clocks) == ["w1", "w3"]
    assert machine.sync_state("m").barriers[0].pushed == set()  # w3 is waited for from step 1
    assert _push(machine, "w3", 1, 1.0, step=1).ok
    assert _push(machine, "w1", 2, 3.0, step=1).step == 2
    assert _weights(machine)["a"] == -4.0


def test_an_older_membership_is_ignored() -> None:
    machine = _machine(SyncMode.BSP)
    _apply(machine, encode_set_workers("m", 5, ["w1"]))
    stale = _apply(machine, encode_set_workers("m", 4, ["w1", "w2"]))
    assert stale.ok and "ignored" in stale.message
    assert sorted(machine.sync_state("m").clocks) == ["w1"]


def test_set_workers_validates_and_changes_nothing_on_bad_input() -> None:
    machine = _machine(SyncMode.BSP)
    before = machine.snapshot()
    assert _apply(machine, encode_set_workers("nope", 1, ["w"])).code == ErrorCode.UNKNOWN_MODEL
    from proto import shard_pb2 as pb

    unsorted = pb.ShardCommand(set_workers=pb.SetWorkers(model="m", config_number=1, workers=["b", "a"]))
    assert _apply(machine, unsorted.SerializeToString()).code == ErrorCode.INVALID_ARGUMENT
    empty = pb.ShardCommand(set_workers=pb.SetWorkers(model="m", config_number=1, workers=[""]))
    assert _apply(machine, empty.SerializeToString()).code == ErrorCode.INVALID_ARGUMENT
    assert machine.snapshot() == before


def test_bsp_skipped_push_counts_as_pushed_but_not_in_the_mean() -> None:
    machine = _machine(SyncMode.BSP, policy=NonFinitePolicy.SKIP)
    _apply(machine, encode_set_workers("m", 1, ["w1", "w2"]))
    assert _push(machine, "w1", 1, float("nan")).skipped
    assert _push(machine, "w2", 1, 4.0).step == 1
    assert _weights(machine)["a"] == -4.0


def test_bsp_key_nobody_pushed_gets_a_zero_gradient() -> None:
    machine = _machine(SyncMode.BSP)
    _apply(machine, encode_set_workers("m", 1, ["w1"]))
    assert _push(machine, "w1", 1, 1.0, keys=("a",)).step == 1
    assert _weights(machine) == {"a": -1.0, "b": 0.0}
    assert machine.key_step("m", "b") == 1  # the optimizer's count moves as in optax


def test_install_conflicts_on_another_sync_mode() -> None:
    machine = _machine(SyncMode.BSP)
    again = _apply(
        machine, encode_install("m", SGD, {}, num_shards=4, sync_mode=SyncMode.SSP, staleness_bound=1)
    )
    assert again.code == ErrorCode.SPEC_CONFLICT and "sync mode" in again.message
    bad = _apply(ShardStateMachine(), encode_install("n", SGD, {}, num_shards=4, staleness_bound=3))
    assert bad.code == ErrorCode.INVALID_ARGUMENT and "SSP" in bad.message


# ---- SSP and async --------------------------------------------------------------------------------


def test_ssp_applies_at_once_and_bounds_how_far_a_worker_runs_ahead() -> None:
    machine = _machine(SyncMode.SSP, staleness=1)
    _apply(machine, encode_set_workers("m", 1, ["fast", "slow"]))
    assert _push(machine, "fast", 1, 1.0).step == 1
    assert _weights(machine)["a"] == -1.0
    assert machine.pull_ready("m", 0, "fast")  # 1 ahead: within the bound
    _push(machine, "fast", 2, 1.0)
    assert not machine.pull_ready("m", 0, "fast")  # 2 ahead
    assert machine.pull_ready("m", 0, "slow")
    _push(machine, "slow", 1, 1.0)
    assert machine.pull_ready("m", 0, "fast")
    _apply(machine, encode_set_workers("m", 2, ["fast", "new", "slow"]))
    assert machine.sync_state("m").clocks["new"] == 1  # the slowest clock
    assert _push(machine, "x", 1, 1.0).code == ErrorCode.NOT_A_WORKER


def test_async_needs_no_workers_and_never_waits() -> None:
    machine = _machine(SyncMode.ASYNC)
    assert _push(machine, "anyone", 1, 1.0).step == 1
    assert machine.pull_ready("m", 100, "anyone")


# ---- snapshots and the reference model -----------------------------------------------------------


def test_snapshot_mid_step_restores_the_gathered_gradients() -> None:
    machine = _machine(SyncMode.BSP)
    _apply(machine, encode_set_workers("m", 1, ["w1", "w2"]))
    _push(machine, "w1", 1, 2.0, keys=("a",))
    twin = ShardStateMachine()
    twin.restore(machine.snapshot())
    assert twin.snapshot() == machine.snapshot()
    for each in (machine, twin):
        assert _push(each, "w2", 1, 4.0).step == 1
    assert _weights(twin) == _weights(machine) == {"a": -3.0, "b": -2.0}


_ops = st.lists(
    st.one_of(
        st.tuples(st.just("push"), st.sampled_from(["w1", "w2", "w3"]), st.integers(-3, 3)),
        st.tuples(st.just("workers"), st.sets(st.sampled_from(["w1", "w2", "w3"])), st.just(0)),
        st.tuples(st.just("restore"), st.just(""), st.just(0)),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(_ops)
def test_bsp_matches_a_plain_reference(ops) -> None:
    machine = _machine(SyncMode.BSP)
    weights, step, config = 0.0, 0, 0
    clocks: dict[str, int] = {}
    gathered: list[float] = []
    sequences = {"w1": 0, "w2": 0, "w3": 0}
    applied = 0

    def complete() -> None:
        nonlocal weights, step, gathered
        if gathered:
            weights -= float(np.float32(sum(gathered)) * np.float32(1.0 / len(gathered)))
        step += 1
        gathered = []

    for kind, who, value in ops:
        if kind == "push":
            sequences[who] += 1
            result = _push(machine, who, sequences[who], float(value), step=step, keys=("a",))
            if who not in clocks:
                assert result.code == ErrorCode.NOT_A_WORKER
                sequences[who] -= 1
            elif clocks[who] > step:
                assert result.code == ErrorCode.WRONG_STEP
                sequences[who] -= 1
            else:
                assert result.ok
                applied += 1
                clocks[who] += 1
                gathered.append(float(value))
                if all(c > step for c in clocks.values()):
                    complete()
        elif kind == "workers":
            config += 1
            assert _apply(machine, encode_set_workers("m", config, sorted(who))).ok
            clocks = {w: clocks.get(w, step) for w in sorted(who)}
            if (clocks and all(c > step for c in clocks.values())) or (not clocks and gathered):
                complete()
        else:
            twin = ShardStateMachine()
            twin.restore(machine.snapshot())
            machine = twin
        assert machine.step("m") == step
        assert machine.applied_pushes("m") == applied
        assert sorted(machine.sync_state("m").clocks) == sorted(clocks)
        assert machine.pull("m", ["a"])["a"][0] == pytest.approx(weights, abs=1e-5)
