"""The store node's parameter service end to end over real gRPC on 127.0.0.1: three store
daemons of one group in one event loop (real transport, real storage, fsync off).

Gradients are one-hot powers of two under SGD with learning rate 1, so the weights after
a set of pushes say exactly which pushes were applied, and how often (a float32 sum of
distinct powers of two is exact).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import grpc
import numpy as np
import pytest

from consensus.storage import FsyncPolicy
from paramstore.commands._up import free_ports
from paramstore.server import ERROR_CODE_METADATA, ReplicaOptions, StoreDaemon
from paramstore.shard import NonFinitePolicy, encode_tensor
from proto import shard_pb2 as shard_pb
from proto import store_service_pb2 as api
from proto import store_service_pb2_grpc as api_grpc
from tests.daemon_group import DaemonGroup

DEADLINE_S = 20.0
ELEMENTS = 24  # one slot per (client, sequence) a test pushes


Group = DaemonGroup[StoreDaemon]


@pytest.fixture
async def group(tmp_path: Path) -> AsyncIterator[Group]:
    ports = free_ports(3)
    peers = {node_id: f"127.0.0.1:{ports[node_id - 1]}" for node_id in (1, 2, 3)}
    daemons = [
        StoreDaemon(
            ReplicaOptions(
                cluster_id="test",
                node_id=node_id,
                listen=peers[node_id],
                peers=peers,
                data_dir=tmp_path / f"s{node_id}",
                fsync=FsyncPolicy.NEVER,
            ),
            group_id=1,
        )
        for node_id in peers
    ]
    try:
        for daemon in daemons:
            await daemon.start()
        yield Group(daemons)
    finally:
        for daemon in daemons:
            await daemon.stop()


def one_hot(slot: int, elements: int = ELEMENTS) -> np.ndarray:
    grads = np.zeros(elements, np.float32)
    grads[slot] = 2.0**slot
    return grads


def push_messages(
    model: str,
    client_id: str,
    sequence: int,
    gradients: dict[str, np.ndarray],
    piece_bytes: int = 32,
) -> list[api.PushRequest]:
    """A push stream: the header, then each key's bytes in small pieces (several messages)."""
    messages = [api.PushRequest(model=model, client_id=client_id, sequence=sequence)]
    for key, grads in gradients.items():
        tensor = encode_tensor(grads)
        for start in range(0, len(tensor.data), piece_bytes):
            piece = api.TensorPiece(
                key=key, dtype=tensor.dtype, data=tensor.data[start : start + piece_bytes]
            )
            messages.append(api.PushRequest(gradients=[piece]))
    return messages


async def push(
    stub: api_grpc.StoreStub, model: str, client_id: str, sequence: int, gradients: dict[str, np.ndarray]
) -> api.PushResponse:
    async def stream() -> AsyncIterator[api.PushRequest]:
        for message in push_messages(model, client_id, sequence, gradients):
            yield message

    response: api.PushResponse = await stub.Push(stream(), timeout=DEADLINE_S)
    return response


async def pull(
    stub: api_grpc.StoreStub, model: str, keys: Sequence[str] = ()
) -> tuple[int, dict[str, np.ndarray]]:
    parts: dict[str, list[bytes]] = {}
    step = -1
    async for message in stub.Pull(
        api.PullRequest(model=model, keys=list(keys), piece_bytes_max=40), timeout=DEADLINE_S
    ):
        if step < 0:
            step = message.step
        for piece in message.weights:
            parts.setdefault(piece.key, []).append(piece.data)
    return step, {key: np.frombuffer(b"".join(p), "<f4") for key, p in parts.items()}


async def install(
    stub: api_grpc.StoreStub,
    model: str = "m",
    keys: Sequence[str] = ("a", "b"),
    policy: NonFinitePolicy = NonFinitePolicy.REJECT,
) -> api.InstallResponse:
    request = api.InstallRequest(
        install=shard_pb.InstallKeys(
            model=model,
            optimizer_json='{"name": "sgd", "learning_rate": 1.0}',
            non_finite_policy=int(policy),  # type: ignore[arg-type]
            num_shards=4,
            keys=[
                shard_pb.KeyTensor(key=key, tensor=encode_tensor(np.zeros(ELEMENTS, np.float32)))
                for key in keys
            ],
        )
    )
    response: api.InstallResponse = await stub.Install(request, timeout=DEADLINE_S)
    return response


def applied_slots(weights: np.ndarray) -> dict[int, float]:
    """slot -> how many times its one-hot gradient was applied (SGD, lr 1: w = -sum)."""
    return {slot: float(-weights[slot] / 2.0**slot) for slot in range(len(weights)) if weights[slot] != 0}


async def test_install_push_pull_round_trip(group: Group) -> None:
    leader = await group.leader()
    async with grpc.aio.insecure_channel(leader.replica.address) as channel:
        stub = api_grpc.StoreStub(channel)
        installed = await install(stub)
        assert installed.result.installed == 2
        again = await install(stub)  # idempotent
        assert again.result.installed == 0
        response = await push(stub, "m", "w1", 1, {"a": one_hot(3), "b": one_hot(5)})
        assert response.result.code == shard_pb.ERROR_CODE_OK and response.result.step == 1
        step, weights = await pull(stub, "m")
    assert step == 1
    assert applied_slots(weights["a"]) == {3: 1.0}
    assert applied_slots(weights["b"]) == {5: 1.0}


async def test_concurrent_pushes_are_merged_and_each_applied_once(group: Group) -> None:
    leader = await group.leader()
    clients = 12
    async with grpc.aio.insecure_channel(leader.replica.address) as channel:
        stub = api_grpc.StoreStub(channel)
        await install(stub)
        responses = await asyncio.gather(
            *(push(stub, "m", f"w{i}", 1, {"a": one_hot(i)}) for i in range(clients))
        )
        assert all(r.result.code == shard_pb.ERROR_CODE_OK for r in responses)
        step, weights = await pull(stub, "m", ["a"])
        status = await stub.Status(api.StatusRequest(), timeout=DEADLINE_S)
    assert applied_slots(weights["a"]) == {i: 1.0 for i in range(clients)}
    # Every push is covered by one entry; some entries covered several pushes.
    assert status.merged_entries >= 1, status
    assert status.push_entries < clients
    assert step == status.push_entries
    assert max(r.merged_pushes for r in responses) > 1
    # The followers apply the same entries: same weights.
    for follower in await group.followers():
        deadline = time.monotonic() + DEADLINE_S
        while follower.machine.step("m") != step:
            assert time.monotonic() < deadline, "follower never caught up"
            await asyncio.sleep(0.01)
        assert np.array_equal(follower.machine.pull("m", ["a"])["a"], weights["a"])


async def test_a_retried_push_is_not_applied_twice(group: Group) -> None:
    leader = await group.leader()
    async with grpc.aio.insecure_channel(leader.replica.address) as channel:
        stub = api_grpc.StoreStub(channel)
        await install(stub)
        first = await push(stub, "m", "w1", 1, {"a": one_hot(1)})
        retry = await push(stub, "m", "w1", 1, {"a": one_hot(1)})
        assert retry.result.duplicate and retry.result.step == first.result.step
        # A retry racing its original and other clients' pushes: merged, then sorted out.
        responses = await asyncio.gather(
            push(stub, "m", "w1", 2, {"a": one_hot(2)}),
            push(stub, "m", "w1", 2, {"a": one_hot(2)}),
            push(stub, "m", "w2", 1, {"a": one_hot(3)}),
            push(stub, "m", "w3", 1, {"a": one_hot(4)}),
            push(stub, "m", "w1", 2, {"a": one_hot(2)}),
        )
        assert all(r.result.code == shard_pb.ERROR_CODE_OK for r in responses)
        _, weights = await pull(stub, "m", ["a"])
    assert applied_slots(weights["a"]) == {1: 1.0, 2: 1.0, 3: 1.0, 4: 1.0}


async def test_a_partial_duplicate_entry_is_proposed_again_without_the_applied_push(group: Group) -> None:
    """The rule of paramstore.shard: the leader answers the applied pushes of a
    PARTIAL_DUPLICATE entry with their stored results and re-proposes the others."""
    from paramstore.server._store_batcher import PendingPush
    from paramstore.shard import ClientSequence

    leader = await group.leader()
    async with grpc.aio.insecure_channel(leader.replica.address) as channel:
        stub = api_grpc.StoreStub(channel)
        await install(stub)
        first = await push(stub, "m", "w1", 1, {"a": one_hot(1)})
    # Queue the retry of (w1, 1) and a new push in one batch, straight into the batcher (an
    # RPC would answer the retry from the dedup table without queueing it).
    loop = asyncio.get_running_loop()
    pushes = [
        PendingPush("m", ClientSequence("w1", 1), 0, {"a": one_hot(1)}, 4 * ELEMENTS, True),
        PendingPush("m", ClientSequence("w2", 1), 0, {"a": one_hot(2)}, 4 * ELEMENTS, True),
    ]
    before = dict(leader.service.batcher.counters)
    waiters = [leader.service.batcher.submit(p) for p in pushes]
    async with asyncio.timeout(DEADLINE_S):
        (retried, _), (new, merged) = await asyncio.gather(*waiters)
    assert loop is asyncio.get_running_loop()
    assert retried.duplicate and retried.step == first.result.step
    assert new.ok and not new.duplicate and merged == 1
    counters = leader.service.batcher.counters
    assert counters["partial_duplicates"] == before["partial_duplicates"] + 1
    assert applied_slots(leader.machine.pull("m", ["a"])["a"]) == {1: 1.0, 2: 1.0}


async def test_a_push_to_a_follower_is_redirected_to_the_leader(group: Group) -> None:
    leader = await group.leader()
    follower = (await group.followers())[0]
    async with grpc.aio.insecure_channel(follower.replica.address) as channel:
        stub = api_grpc.StoreStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await push(stub, "m", "w1", 1, {"a": one_hot(1)})
        with pytest.raises(grpc.aio.AioRpcError) as raised_pull:
            await pull(stub, "m")
    for error in (raised.value, raised_pull.value):
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        metadata = dict(error.trailing_metadata() or ())
        assert metadata["paramstore-leader-address"] == leader.replica.address
        assert metadata["paramstore-leader-id"] == str(leader.options.node_id)


@pytest.mark.parametrize(
    ("model", "gradients", "status", "code"),
    [
        ("nope", {"a": one_hot(1)}, grpc.StatusCode.NOT_FOUND, "ERROR_CODE_UNKNOWN_MODEL"),
        ("m", {"zzz": one_hot(1)}, grpc.StatusCode.NOT_FOUND, "ERROR_CODE_UNKNOWN_KEY"),
        (
            "m",
            {"a": np.ones(ELEMENTS + 1, np.float32)},
            grpc.StatusCode.INVALID_ARGUMENT,
            "ERROR_CODE_SHAPE_MISMATCH",
        ),
        (
            "m",
            {"a": np.full(ELEMENTS, np.nan, np.float32)},
            grpc.StatusCode.INVALID_ARGUMENT,
            "ERROR_CODE_NON_FINITE",
        ),
    ],
)
async def test_bad_pushes_get_a_clear_status_and_change_nothing(
    group: Group, model: str, gradients: dict[str, np.ndarray], status: grpc.StatusCode, code: str
) -> None:
    leader = await group.leader()
    async with grpc.aio.insecure_channel(leader.replica.address) as channel:
        stub = api_grpc.StoreStub(channel)
        await install(stub)
        await push(stub, "m", "w1", 1, {"a": one_hot(1)})
        before = leader.machine.snapshot()
        last_index = leader.replica.node.core.log.last_index
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await push(stub, model, "w1", 2, gradients)
        assert raised.value.code() == status
        assert dict(raised.value.trailing_metadata() or ())[ERROR_CODE_METADATA] == code
        assert leader.machine.snapshot() == before
        assert leader.replica.node.core.log.last_index == last_index  # no log slot taken
        # The refused sequence can be used again once the push is right.
        fixed = await push(stub, "m", "w1", 2, {"a": one_hot(2)})
        assert fixed.result.code == shard_pb.ERROR_CODE_OK


async def test_a_wrong_dtype_and_malformed_streams_are_refused(group: Group) -> None:
    leader = await group.leader()
    async with grpc.aio.insecure_channel(leader.replica.address) as channel:
        stub = api_grpc.StoreStub(channel)
        await install(stub)
        before = leader.machine.snapshot()

        async def send(messages: list[api.PushRequest]) -> grpc.aio.AioRpcError:
            async def stream() -> AsyncIterator[api.PushRequest]:
                for message in messages:
                    yield message

            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await stub.Push(stream(), timeout=DEADLINE_S)
            return raised.value

        bad_dtype = api.TensorPiece(key="a", dtype=shard_pb.D_TYPE_FLOAT32, data=b"\x00" * 7)
        error = await send([api.PushRequest(model="m", client_id="w", sequence=1, gradients=[bad_dtype])])
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        wrong_type = api.TensorPiece(key="a", dtype=99, data=b"\x00" * 4 * ELEMENTS)  # type: ignore[arg-type]
        error = await send([api.PushRequest(model="m", client_id="w", sequence=1, gradients=[wrong_type])])
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "DTYPE" in (error.details() or "")
        error = await send([api.PushRequest(model="m", client_id="w", sequence=0)])
        assert "sequence" in (error.details() or "")
        header_twice = [*push_messages("m", "w", 1, {"a": one_hot(1)}), api.PushRequest(model="m")]
        error = await send(header_twice)
        assert "first message" in (error.details() or "")
        messages = push_messages("m", "w", 1, {"a": one_hot(1), "b": one_hot(2)})
        split = messages[:2] + messages[-1:] + messages[2:-1]  # a piece of "b" amid "a"'s
        error = await send(split)
        assert "one after the other" in (error.details() or "")
        # Bytes that are no PushRequest at all (the store reads the stream as raw bytes).
        raw_push = channel.stream_unary(
            "/paramstore.store.Store/Push", response_deserializer=api.PushResponse.FromString
        )
        header = api.PushRequest(model="m", client_id="w", sequence=1).SerializeToString()
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await raw_push(iter([header, b"\x2a\x05ab"]), timeout=DEADLINE_S)  # a piece cut short
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (raised.value.details() or "").startswith("push message 2: ")
        assert leader.machine.snapshot() == before


async def test_skip_policy_drops_a_non_finite_push_without_dropping_the_others(group: Group) -> None:
    leader = await group.leader()
    async with grpc.aio.insecure_channel(leader.replica.address) as channel:
        stub = api_grpc.StoreStub(channel)
        await install(stub, model="s", policy=NonFinitePolicy.SKIP)
        responses = await asyncio.gather(
            push(stub, "s", "w0", 1, {"a": one_hot(0)}),
            push(stub, "s", "bad", 1, {"a": np.full(ELEMENTS, np.inf, np.float32)}),
            *(push(stub, "s", f"w{i}", 1, {"a": one_hot(i)}) for i in range(1, 6)),
        )
        skipped = [r for r in responses if r.result.skipped]
        assert len(skipped) == 1 and skipped[0].merged_pushes == 1
        _, weights = await pull(stub, "s", ["a"])
    assert applied_slots(weights["a"]) == {i: 1.0 for i in range(6)}


async def test_pull_of_unknown_model_or_key_and_status_of_every_node(group: Group) -> None:
    leader = await group.leader()
    async with grpc.aio.insecure_channel(leader.replica.address) as channel:
        stub = api_grpc.StoreStub(channel)
        await install(stub)
        for model, keys in (("nope", []), ("m", ["zzz"])):
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await pull(stub, model, keys)
            assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    roles = []
    for daemon in group.daemons:
        async with grpc.aio.insecure_channel(daemon.replica.address) as channel:
            status = await api_grpc.StoreStub(channel).Status(api.StatusRequest(), timeout=DEADLINE_S)
        roles.append(status.role)
        assert status.group_id == 1 and status.cluster_id == "test"
    assert sorted(roles) == ["follower", "follower", "leader"]


async def test_a_push_over_the_largest_log_entry_is_refused_and_the_group_keeps_serving(
    tmp_path: Path,
) -> None:
    """An entry no replica could store or send would stop the whole group: it is refused
    at the leader before it reaches the log (here with a 64 KiB entry bound)."""
    ports = free_ports(3)
    peers = {node_id: f"127.0.0.1:{ports[node_id - 1]}" for node_id in (1, 2, 3)}
    daemons = [
        StoreDaemon(
            ReplicaOptions(
                cluster_id="small-entries",
                node_id=node_id,
                listen=peers[node_id],
                peers=peers,
                data_dir=tmp_path / f"s{node_id}",
                fsync=FsyncPolicy.NEVER,
                entry_bytes_max=64 * 1024,
            ),
            group_id=1,
        )
        for node_id in peers
    ]
    elements = 10_000  # 40 KB per key: one key fits an entry, two do not
    try:
        for daemon in daemons:
            await daemon.start()
        leader = await Group(daemons).leader()
        async with grpc.aio.insecure_channel(leader.replica.address) as channel:
            stub = api_grpc.StoreStub(channel)
            for key in ("big-a", "big-b"):
                request = api.InstallRequest(
                    install=shard_pb.InstallKeys(
                        model="m",
                        optimizer_json='{"name": "sgd", "learning_rate": 1.0}',
                        non_finite_policy=int(NonFinitePolicy.REJECT),  # type: ignore[arg-type]
                        num_shards=4,
                        keys=[
                            shard_pb.KeyTensor(key=key, tensor=encode_tensor(np.zeros(elements, np.float32)))
                        ],
                    )
                )
                assert (await stub.Install(request, timeout=DEADLINE_S)).result.installed == 1
            both = {"big-a": np.ones(elements, np.float32), "big-b": np.ones(elements, np.float32)}

            async def stream() -> AsyncIterator[api.PushRequest]:
                for message in push_messages("m", "c", 1, both, piece_bytes=16 * 1024):
                    yield message

            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await stub.Push(stream(), timeout=DEADLINE_S)
            assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "largest log entry of 65536 bytes" in (raised.value.details() or "")

            # Every replica is still up, and a push that fits is applied.
            one = {"big-a": np.ones(elements, np.float32)}

            async def small() -> AsyncIterator[api.PushRequest]:
                for message in push_messages("m", "c", 1, one, piece_bytes=16 * 1024):
                    yield message

            response = await stub.Push(small(), timeout=DEADLINE_S)
            assert response.result.code == shard_pb.ERROR_CODE_OK
            _, weights = await pull(stub, "m", ["big-a"])
            assert np.all(weights["big-a"] == -1.0)
        assert all(d.replica.node.core.applied_index > 0 for d in daemons)
    finally:
        for daemon in daemons:
            await daemon.stop()
