"""Snapshots of the coordinator state machine: byte-identical round trips, identical behaviour
afterwards, deterministic replicas, and refusal of bytes that are not a consistent state."""

from __future__ import annotations

import random
import struct

import pytest

from paramstore.coordinator import (
    SNAPSHOT_FORMAT_VERSION,
    AddGroup,
    AssignShards,
    CompareAndSet,
    CoordinatorLimits,
    CoordinatorStateMachine,
    Delete,
    DeletePrefix,
    ErrorCode,
    GroupMember,
    KeepAlive,
    LeafSpec,
    ModelSpec,
    Operation,
    Put,
    RegisterModel,
    RegisterWorker,
    SnapshotFormatError,
    SyncMode,
    Tick,
    UnregisterWorker,
    decode_result,
    encode_command,
)

LIMITS = CoordinatorLimits(
    session_ttl_ms=5_000,
    sessions_max=6,
    key_bytes_max=32,
    value_bytes_max=64,
    history_changes_max=40,
    history_bytes_max=1_000,
)
SPEC = ModelSpec.create(
    "lm",
    [LeafSpec("embed", (1000, 64), "float32"), LeafSpec("head", (64, 1000), "float32")],
    num_shards=8,
    optimizer={"name": "sgd", "learning_rate": 0.1},
    sync_mode=SyncMode.SSP,
    staleness_bound=2,
)


def random_workload(seed: int, count: int) -> list[bytes]:
    """Encoded commands touching every part of the state: keys with and without leases, CAS,
    deletes, groups, shard moves, workers coming and going, sessions expiring, retries.

    Clients behave as real ones do: a client told SESSION_EXPIRED carries on under a new id
    (so the workload is made against a scratch replica, to see the answers)."""
    rng = random.Random(seed)
    scratch = CoordinatorStateMachine(LIMITS)
    commands: list[bytes] = []
    client_ids = [f"client-{k}" for k in range(10)]
    sequences: dict[str, int] = {}
    now_ms = 0

    def send(op: Operation, slot: int, retry: bool = False) -> None:
        client = client_ids[slot]
        if not (retry and client in sequences):
            sequences[client] = sequences.get(client, 0) + 1
        command = encode_command(op, client_id=client, sequence=sequences[client], now_ms=now_ms)
        commands.append(command)
        if decode_result(scratch.apply_bytes(command)).code == ErrorCode.SESSION_EXPIRED:
            client_ids[slot] = f"{client}+"

    send(RegisterModel(SPEC), 0)
    send(AddGroup(1, (GroupMember(1, "a:1"),)), 0)
    send(AddGroup(2, (GroupMember(2, "b:1"),)), 0)
    for _ in range(count):
        now_ms += rng.choice([0, 5, 20, 300])
        worker = f"w{rng.randrange(4)}"
        key = f"k/{rng.randrange(12)}"
        choices: list[Operation] = [
            Put(key, rng.randbytes(rng.randrange(8)), lease=rng.choice(["", worker])),
            Put(key, b"v"),
            Delete(key),
            CompareAndSet(key, b"c", expected_version=rng.randrange(1, 30)),
            CompareAndSet(key, b"a", expect_absent=True),
            DeletePrefix("k/1"),
            RegisterWorker(worker, "lm", rng.choice([1_000, 3_000])),
            KeepAlive(worker),
            KeepAlive(worker),
            UnregisterWorker(worker),
            AssignShards("lm", ((rng.randrange(8), rng.choice([1, 2])),)),
        ]
        op = rng.choice(choices)
        send(op, rng.randrange(len(client_ids)), retry=rng.random() < 0.1)
        if rng.random() < 0.05:
            commands.append(encode_command(Tick(), now_ms=now_ms))
            scratch.apply_bytes(commands[-1])
    return commands


def run(commands: list[bytes], machine: CoordinatorStateMachine | None = None) -> list[bytes]:
    machine = machine if machine is not None else CoordinatorStateMachine(LIMITS)
    return [machine.apply_bytes(command) for command in commands]


def test_the_workload_reaches_every_part_of_the_state() -> None:
    machine = CoordinatorStateMachine(LIMITS)
    seen: set[str] = set()
    codes: set[ErrorCode] = set()
    for command in random_workload(1, 400):
        codes.add(decode_result(machine.apply_bytes(command)).code)
        stats = machine.stats()
        seen.update(name for name in ("keys", "sessions", "workers", "compacted_revision") if stats[name])
        if any(kv.lease for kv in machine.range("", None).kvs):
            seen.add("leased keys")
    assert seen == {"keys", "sessions", "workers", "compacted_revision", "leased keys"}
    assert {ErrorCode.SESSION_EXPIRED, ErrorCode.CAS_MISMATCH, ErrorCode.UNKNOWN_WORKER} <= codes
    assert machine.config_number > 10


def test_two_replicas_fed_the_same_commands_hold_identical_snapshots() -> None:
    commands = random_workload(2, 500)
    first, second = CoordinatorStateMachine(LIMITS), CoordinatorStateMachine(LIMITS)
    assert run(commands, first) == run(commands, second)
    assert first.snapshot() == second.snapshot()


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_restore_gives_byte_identical_snapshots_and_identical_behaviour_afterwards(seed: int) -> None:
    commands = random_workload(seed, 600)
    original = CoordinatorStateMachine(LIMITS)
    run(commands[:300], original)
    image = original.snapshot()
    restored = CoordinatorStateMachine(LIMITS)
    restored.restore(image)
    assert restored.snapshot() == image
    assert restored.config() == original.config()
    assert restored.range("", None).kvs == original.range("", None).kvs
    assert run(commands[300:], restored) == run(commands[300:], original)
    assert restored.snapshot() == original.snapshot()


def test_restore_replaces_everything_that_was_there() -> None:
    source = CoordinatorStateMachine(LIMITS)
    run(random_workload(6, 100), source)
    target = CoordinatorStateMachine(LIMITS)
    run(random_workload(7, 200), target)
    target.restore(source.snapshot())
    assert target.snapshot() == source.snapshot()
    empty = CoordinatorStateMachine(LIMITS)
    target.restore(empty.snapshot())
    assert target.snapshot() == empty.snapshot() and target.revision == 0


def corrupt_cases(image: bytes) -> list[bytes]:
    header = struct.calcsize(">8sI")
    return [
        b"",
        image[:5],
        b"NOTMAGIC" + image[8:],
        image[:8] + struct.pack(">I", SNAPSHOT_FORMAT_VERSION + 1) + image[header:],
        image[:header] + b"\xff\xff\xff\xff",
        image[: len(image) // 2],
    ]


def test_bytes_that_are_not_a_consistent_state_are_refused_and_change_nothing() -> None:
    machine = CoordinatorStateMachine(LIMITS)
    run(random_workload(8, 300), machine)
    image = machine.snapshot()
    for case in corrupt_cases(image):
        with pytest.raises(SnapshotFormatError):
            machine.restore(case)
        assert machine.snapshot() == image


def test_a_snapshot_taken_under_other_limits_is_refused() -> None:
    machine = CoordinatorStateMachine(LIMITS)
    run(random_workload(9, 50), machine)
    other = CoordinatorStateMachine(CoordinatorLimits())
    with pytest.raises(SnapshotFormatError, match="other limits"):
        other.restore(machine.snapshot())


def test_limits_are_checked_when_made() -> None:
    with pytest.raises(ValueError, match="session_ttl_ms"):
        CoordinatorLimits(session_ttl_ms=0)
    with pytest.raises(ValueError, match="history_bytes_max"):
        CoordinatorLimits(history_bytes_max=100)
    assert CoordinatorLimits.from_json(LIMITS.to_json()) == LIMITS
