"""Cluster configuration commands: store groups, shard maps, the model registry, worker leases."""

from __future__ import annotations

import dataclasses

import pytest

from paramstore.coordinator import (
    AddGroup,
    AssignShards,
    CommandResult,
    CoordinatorLimits,
    CoordinatorStateMachine,
    ErrorCode,
    GroupMember,
    KeepAlive,
    LeafSpec,
    ModelSpec,
    Operation,
    Put,
    RegisterModel,
    RegisterWorker,
    RemoveGroup,
    SyncMode,
    Tick,
    UnregisterWorker,
    decode_result,
    encode_command,
)

SPEC = ModelSpec.create(
    "mlp",
    [
        LeafSpec("params/dense/kernel", (784, 128), "float32"),
        LeafSpec("params/dense/bias", (128,), "bfloat16"),
    ],
    num_shards=4,
    optimizer={"name": "adam", "learning_rate": 1e-3, "b1": 0.9},
)


class Driver:
    """Applies operations as one client; ``now_ms`` is the leader's clock for the next command."""

    def __init__(self, limits: CoordinatorLimits | None = None) -> None:
        self.machine = CoordinatorStateMachine(limits)
        self.sequence = 0
        self.now_ms = 1_000

    def do(self, op: Operation, now_ms: int | None = None) -> CommandResult:
        if now_ms is not None:
            self.now_ms = now_ms
        self.sequence += 1
        data = encode_command(op, client_id="admin", sequence=self.sequence, now_ms=self.now_ms)
        return decode_result(self.machine.apply_bytes(data))

    def tick(self, now_ms: int) -> None:
        self.now_ms = now_ms
        assert decode_result(self.machine.apply_bytes(encode_command(Tick(), now_ms=now_ms))).ok


def members(*node_ids: int) -> tuple[GroupMember, ...]:
    return tuple(GroupMember(node_id, f"store-{node_id}:7000") for node_id in node_ids)


def with_model_and_groups() -> Driver:
    driver = Driver()
    assert driver.do(RegisterModel(SPEC)).ok
    assert driver.do(AddGroup(1, members(1, 2, 3))).ok
    assert driver.do(AddGroup(2, members(4, 5, 6))).ok
    return driver


# ---- groups -----------------------------------------------------------------------------------


def test_add_group_bumps_the_config_and_repeating_it_is_idempotent() -> None:
    driver = Driver()
    result = driver.do(AddGroup(7, members(3, 1, 2)))
    assert (result.code, result.config_number) == (ErrorCode.OK, 1)
    config = driver.machine.config()
    assert config.number == 1
    assert [m.node_id for m in config.groups[7]] == [1, 2, 3]  # kept sorted by node id
    same = driver.do(AddGroup(7, members(2, 3, 1)))
    assert (same.code, same.config_number) == (ErrorCode.OK, 1)
    other = driver.do(AddGroup(7, members(1, 2)))
    assert other.code == ErrorCode.GROUP_EXISTS
    assert driver.machine.config() is config  # nothing changed, the same object


@pytest.mark.parametrize(
    "op",
    [
        AddGroup(0, members(1)),
        AddGroup(1, ()),
        AddGroup(1, members(*range(1, 11))),
        AddGroup(1, (GroupMember(1, "a:1"), GroupMember(1, "b:1"))),
        AddGroup(1, (GroupMember(0, "a:1"),)),
        AddGroup(1, (GroupMember(1, ""),)),
    ],
)
def test_add_group_refuses_bad_membership(op: AddGroup) -> None:
    driver = Driver()
    result = driver.do(op)
    assert result.code == ErrorCode.INVALID_ARGUMENT, result
    assert driver.machine.config().number == 0


def test_remove_group_needs_a_known_group_that_owns_no_shards() -> None:
    driver = with_model_and_groups()
    assert driver.do(RemoveGroup(9)).code == ErrorCode.UNKNOWN_GROUP
    assert driver.do(AssignShards("mlp", ((0, 1), (3, 1)))).ok
    in_use = driver.do(RemoveGroup(1))
    assert in_use.code == ErrorCode.GROUP_IN_USE
    assert "owns 2 shards" in in_use.message
    assert driver.do(AssignShards("mlp", ((0, 2), (3, 2)))).ok
    removed = driver.do(RemoveGroup(1))
    assert removed.ok
    assert list(driver.machine.config().groups) == [2]


# ---- shard maps -------------------------------------------------------------------------------


def test_assign_shards_records_owners_in_a_new_config_and_old_configs_stay_as_they_were() -> None:
    driver = with_model_and_groups()
    before = driver.machine.config()
    assert before.shard_maps["mlp"] == (0, 0, 0, 0)
    result = driver.do(AssignShards("mlp", ((0, 1), (1, 1), (2, 2), (3, 2))))
    assert (result.code, result.config_number) == (ErrorCode.OK, before.number + 1)
    after = driver.machine.config()
    assert after.shard_maps["mlp"] == (1, 1, 2, 2)
    assert after.group_of("mlp", 2) == 2
    assert before.shard_maps["mlp"] == (0, 0, 0, 0)
    moved = driver.do(AssignShards("mlp", ((1, 2),)))
    assert moved.config_number == after.number + 1
    assert driver.machine.config().shard_maps["mlp"] == (1, 2, 2, 2)
    unchanged = driver.do(AssignShards("mlp", ((1, 2), (0, 1))))
    assert unchanged.config_number == moved.config_number
    with pytest.raises(TypeError):
        after.shard_maps["mlp"] = (0,)  # type: ignore[index]


@pytest.mark.parametrize(
    ("op", "code"),
    [
        (AssignShards("nope", ((0, 1),)), ErrorCode.UNKNOWN_MODEL),
        (AssignShards("mlp", ((4, 1),)), ErrorCode.INVALID_ARGUMENT),
        (AssignShards("mlp", ((0, 1), (0, 2))), ErrorCode.INVALID_ARGUMENT),
        (AssignShards("mlp", ((0, 1), (1, 3))), ErrorCode.UNKNOWN_GROUP),
        (AssignShards("mlp", ((0, 0),)), ErrorCode.UNKNOWN_GROUP),
    ],
)
def test_assign_shards_refuses_bad_assignments_and_changes_nothing(op: AssignShards, code: ErrorCode) -> None:
    driver = with_model_and_groups()
    before = driver.machine.config()
    result = driver.do(op)
    assert result.code == code, result.message
    assert driver.machine.config() is before


# ---- model registry ---------------------------------------------------------------------------


def test_register_model_is_idempotent_for_the_same_spec_in_any_json_spelling() -> None:
    driver = Driver()
    first = driver.do(RegisterModel(SPEC))
    assert (first.code, first.config_number) == (ErrorCode.OK, 1)
    respelled = dataclasses.replace(
        SPEC, optimizer_json='{ "b1": 0.9, "name": "adam", "learning_rate": 0.001 }'
    )
    again = driver.do(RegisterModel(respelled))
    assert (again.code, again.config_number) == (ErrorCode.OK, 1)
    stored = driver.machine.config().models["mlp"]
    assert stored == SPEC
    assert stored.optimizer == {"name": "adam", "learning_rate": 1e-3, "b1": 0.9}
    assert driver.machine.config().shard_maps["mlp"] == (0, 0, 0, 0)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"num_shards": 8}, "num_shards"),
        ({"optimizer_json": '{"name": "sgd"}'}, "optimizer_json"),
        ({"leaves": (LeafSpec("params/dense/kernel", (784, 64), "float32"),)}, "leaves"),
        ({"sync_mode": SyncMode.ASYNC}, "sync_mode"),
    ],
)
def test_a_conflicting_model_spec_is_a_clear_error(change: dict[str, object], field: str) -> None:
    driver = Driver()
    assert driver.do(RegisterModel(SPEC)).ok
    conflict = driver.do(RegisterModel(dataclasses.replace(SPEC, **change)))  # type: ignore[arg-type]
    assert conflict.code == ErrorCode.SPEC_CONFLICT
    assert f"first difference: {field}" in conflict.message
    assert driver.machine.config().models["mlp"] == SPEC


@pytest.mark.parametrize(
    "change",
    [
        {"name": ""},
        {"leaves": ()},
        {"leaves": (LeafSpec("a", (2,), "float32"), LeafSpec("a", (3,), "float32"))},
        {"leaves": (LeafSpec("a", (2,), "float8"),)},
        {"leaves": (LeafSpec("", (2,), "float32"),)},
        {"leaves": (LeafSpec("a", (1,) * 33, "float32"),)},
        {"num_shards": 0},
        {"num_shards": 65_537},
        {"sync_mode": SyncMode.SSP},  # SSP needs a staleness bound
        {"staleness_bound": 3},  # only SSP takes one
        {"optimizer_json": "[1, 2]"},
        {"optimizer_json": '{"lr": NaN}'},
        {"optimizer_json": "{not json"},
        {"optimizer_json": '{"a": ' * 40 + "1" + "}" * 40},
        {"optimizer_json": '{"a": 1' + "0" * 100 + "}"},
    ],
)
def test_register_model_refuses_bad_specs(change: dict[str, object]) -> None:
    driver = Driver()
    result = driver.do(RegisterModel(dataclasses.replace(SPEC, **change)))  # type: ignore[arg-type]
    assert result.code in (ErrorCode.INVALID_ARGUMENT, ErrorCode.TOO_LARGE), result
    assert driver.machine.config().number == 0


def test_ssp_models_carry_their_staleness_bound() -> None:
    driver = Driver()
    spec = dataclasses.replace(SPEC, sync_mode=SyncMode.SSP, staleness_bound=3)
    assert driver.do(RegisterModel(spec)).ok
    assert driver.machine.config().models["mlp"].staleness_bound == 3


# ---- workers and leases -----------------------------------------------------------------------


def test_register_worker_needs_a_model_and_a_sane_ttl() -> None:
    driver = with_model_and_groups()
    assert driver.do(RegisterWorker("w0", "nope", 5_000)).code == ErrorCode.UNKNOWN_MODEL
    assert driver.do(RegisterWorker("w0", "mlp", 99)).code == ErrorCode.INVALID_ARGUMENT
    assert driver.do(RegisterWorker("w0", "mlp", 3_600_001)).code == ErrorCode.INVALID_ARGUMENT
    assert driver.do(RegisterWorker("", "mlp", 5_000)).code == ErrorCode.INVALID_ARGUMENT
    assert driver.machine.config().workers == {}


def test_registration_bumps_the_config_and_re_registration_only_renews() -> None:
    driver = with_model_and_groups()
    number = driver.machine.config_number
    registered = driver.do(RegisterWorker("w0", "mlp", 5_000), now_ms=10_000)
    assert (registered.code, registered.lease_deadline_ms, registered.config_number) == (
        ErrorCode.OK,
        15_000,
        number + 1,
    )
    assert driver.machine.config().workers_of("mlp") == ("w0",)
    again = driver.do(RegisterWorker("w0", "mlp", 8_000), now_ms=12_000)
    assert (again.lease_deadline_ms, again.config_number) == (20_000, number + 1)
    lease = driver.machine.worker("w0")
    assert lease is not None and (lease.ttl_ms, lease.deadline_ms) == (8_000, 20_000)
    assert driver.do(RegisterModel(dataclasses.replace(SPEC, name="other"))).ok
    elsewhere = driver.do(RegisterWorker("w0", "other", 5_000))
    assert elsewhere.code == ErrorCode.WORKER_EXISTS


def test_a_lease_expires_on_the_log_clock_bumping_the_config_and_deleting_its_keys() -> None:
    driver = with_model_and_groups()
    driver.do(RegisterWorker("w0", "mlp", 1_000), now_ms=10_000)
    driver.do(RegisterWorker("w1", "mlp", 1_000), now_ms=10_000)
    driver.do(RegisterWorker("w2", "mlp", 5_000), now_ms=10_000)
    assert driver.do(Put("workers/w0/addr", b"host-0:9000", lease="w0")).ok
    assert driver.do(Put("workers/w1/addr", b"host-1:9000", lease="w1")).ok
    assert driver.do(Put("jobs/step", b"7")).ok
    number = driver.machine.config_number
    assert driver.do(KeepAlive("w1"), now_ms=10_500).lease_deadline_ms == 11_500
    driver.tick(10_999)
    assert driver.machine.config().workers_of("mlp") == ("w0", "w1", "w2")
    driver.tick(11_000)  # w0's deadline
    assert driver.machine.config().workers_of("mlp") == ("w1", "w2")
    assert driver.machine.config_number == number + 1
    assert driver.machine.get("workers/w0/addr") is None
    assert driver.machine.get("workers/w1/addr") is not None
    late = driver.do(KeepAlive("w0"))
    assert late.code == ErrorCode.UNKNOWN_WORKER and "register again" in late.message
    # One command past several deadlines: one new config for the whole batch.
    driver.do(Put("jobs/step", b"8"), now_ms=20_000)
    assert driver.machine.config().workers == {}
    assert driver.machine.config_number == number + 2
    assert driver.machine.prefix("workers/").kvs == ()
    assert driver.machine.get("jobs/step") is not None
    deletes = [c.key for c in driver.machine.changes_since(0, prefix="workers/").changes if not c.value]
    assert deletes == ["workers/w0/addr", "workers/w1/addr"]


def test_unregister_removes_the_worker_and_its_keys() -> None:
    driver = with_model_and_groups()
    driver.do(RegisterWorker("w0", "mlp", 5_000))
    driver.do(Put("workers/w0", b"x", lease="w0"))
    driver.do(Put("workers/w0", b"y", lease="w0"))
    driver.do(Put("free", b"z", lease="w0"))
    driver.do(Put("free", b"z"))  # re-put without a lease: no longer owned
    number = driver.machine.config_number
    assert driver.do(UnregisterWorker("w0")).config_number == number + 1
    assert driver.machine.get("workers/w0") is None
    assert driver.machine.get("free") is not None
    assert driver.do(UnregisterWorker("w0")).code == ErrorCode.UNKNOWN_WORKER


def test_the_worker_table_is_bounded() -> None:
    driver = Driver(CoordinatorLimits(workers_max=2))
    driver.do(RegisterModel(SPEC))
    assert driver.do(RegisterWorker("a", "mlp", 1_000)).ok
    assert driver.do(RegisterWorker("b", "mlp", 1_000)).ok
    assert driver.do(RegisterWorker("c", "mlp", 1_000)).code == ErrorCode.RESOURCE_EXHAUSTED
    assert driver.do(RegisterWorker("a", "mlp", 1_000)).ok  # renewing needs no slot


def test_many_renewals_keep_the_deadline_heap_small() -> None:
    driver = Driver()
    driver.do(RegisterModel(SPEC))
    driver.do(RegisterWorker("w", "mlp", 1_000), now_ms=0)
    for now_ms in range(1, 2_000):
        assert driver.do(KeepAlive("w"), now_ms=now_ms).ok
    assert len(driver.machine._cluster._deadlines) <= 2 + 64
    driver.tick(1_999 + 999)
    assert driver.machine.worker("w") is not None
    driver.tick(1_999 + 1_000)
    assert driver.machine.worker("w") is None
