"""``StoreClient`` against a real local cluster (3 coordinators, 2 store groups of 3, fsync
off): register a model across both groups, push from several clients at once, pull.

Gradients are one-hot under SGD with learning rate 1: push ``p`` of client ``c`` adds -1
at element ``c * PUSHES + p`` of every leaf, so ``-weights`` counts, per element and per
store group, how many times that push was applied.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from paramstore.client import (
    CommandRejectedError,
    ModelNotRoutedError,
    PushFailedError,
    StoreClient,
    StoreRefusedError,
)
from paramstore.commands._up import LocalCluster
from paramstore.coordinator import LeafSpec, ModelSpec, RegisterWorker, SyncMode
from paramstore.shard import ErrorCode
from proto import store_service_pb2 as api
from proto import store_service_pb2_grpc as api_grpc

DEADLINE_S = 60.0
CLIENTS = 4
PUSHES = 6
ELEMENTS = CLIENTS * PUSHES
# Eight leaves on eight shards: round-robin over two groups puts keys on both (checked).
LEAVES = tuple(f"layer{i}/w" for i in range(8))


def model_spec(name: str, elements: int = ELEMENTS, learning_rate: float = 1.0) -> ModelSpec:
    return ModelSpec.create(
        name,
        [LeafSpec(path, (elements,), "float32") for path in LEAVES],
        num_shards=8,
        optimizer={"name": "sgd", "learning_rate": learning_rate},
        sync_mode=SyncMode.ASYNC,
    )


def zeros(elements: int = ELEMENTS) -> dict[str, np.ndarray]:
    return {path: np.zeros(elements, np.float32) for path in LEAVES}


def one_hot(slot: int, elements: int = ELEMENTS) -> dict[str, np.ndarray]:
    grads = np.zeros(elements, np.float32)
    grads[slot] = 1.0
    return {path: grads for path in LEAVES}


def start_cluster(directory: Path) -> LocalCluster:
    cluster = LocalCluster(directory, coordinators=3, groups=2, replicas=3, fsync="never")
    cluster.start()

    async def ready() -> None:
        await cluster.wait_for_leader(DEADLINE_S)
        await cluster.register_groups(DEADLINE_S)
        await cluster.wait_for_store_leaders(DEADLINE_S)

    try:
        asyncio.run(ready())
    except BaseException:
        cluster.stop()
        raise
    return cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = start_cluster(tmp_path_factory.mktemp("store-client"))
    try:
        yield cluster
    finally:
        cluster.stop()


async def test_register_push_from_several_clients_and_pull(cluster: LocalCluster) -> None:
    spec = model_spec("m")
    clients = [StoreClient(cluster.client_addresses, client_id=f"w{c}") for c in range(CLIENTS)]
    try:
        registered = await clients[0].register_model(spec, zeros())
        assert registered.name == "m"
        # Again, from another client: nothing changes.
        assert await clients[1].register_model(spec, zeros()) == registered

        async def work(c: int) -> list[set[int]]:
            acked = []
            for p in range(PUSHES):
                results = await clients[c].push("m", one_hot(c * PUSHES + p))
                assert all(r.result.ok and not r.result.duplicate for r in results.values())
                assert [r.sequence for r in results.values()] == [p + 1] * len(results)
                acked.append(set(results))
            return acked

        acked = await asyncio.gather(*(work(c) for c in range(CLIENTS)))
        assert all(groups == {1, 2} for per_client in acked for groups in per_client)
        weights = await clients[2].pull("m")
    finally:
        for client in clients:
            await client.close()
    assert sorted(weights) == sorted(LEAVES)
    for values in weights.values():
        assert values.dtype == np.float32 and values.shape == (ELEMENTS,)
        assert (-values).tolist() == [1.0] * ELEMENTS


async def test_racing_registrations_agree_and_keys_land_on_both_groups(cluster: LocalCluster) -> None:
    spec = model_spec("race")
    clients = [StoreClient(cluster.client_addresses) for _ in range(3)]
    try:
        specs = await asyncio.gather(*(client.register_model(spec, zeros()) for client in clients))
        assert specs[0] == specs[1] == specs[2]
        routes = [await client._route("race") for client in clients]
        assert routes[0].keys_by_group == routes[1].keys_by_group == routes[2].keys_by_group
        assert sorted(routes[0].keys_by_group) == [1, 2]
        weights = await clients[0].pull("race")
        assert all(not values.any() for values in weights.values()) and sorted(weights) == sorted(LEAVES)
    finally:
        for client in clients:
            await client.close()


async def test_refusals_are_typed_and_change_nothing(cluster: LocalCluster) -> None:
    async with StoreClient(cluster.client_addresses, client_id="bad") as client:
        with pytest.raises(ModelNotRoutedError):
            await client.pull("never-registered")
        await client.register_model(model_spec("r"), zeros())
        with pytest.raises(CommandRejectedError) as conflict:
            await client.register_model(model_spec("r", learning_rate=0.5), zeros())
        assert conflict.value.code.name == "SPEC_CONFLICT"
        with pytest.raises(ValueError, match="initial values"):
            await client.register_model(model_spec("r"), {"layer0/w": np.zeros(ELEMENTS, np.float32)})
        with pytest.raises(ValueError, match="no leaf"):
            await client.push("r", {"nope": np.zeros(ELEMENTS, np.float32)})
        with pytest.raises(ValueError, match="elements"):
            await client.push("r", {LEAVES[0]: np.zeros(ELEMENTS + 1, np.float32)})
        bad = one_hot(0)
        bad[LEAVES[0]] = np.full(ELEMENTS, np.nan, np.float32)
        with pytest.raises(PushFailedError) as failed:
            await client.push("r", bad)
        errors = failed.value.errors
        assert errors and not failed.value.unknown_groups
        assert all(
            isinstance(e, StoreRefusedError) and e.code == ErrorCode.NON_FINITE for e in errors.values()
        )
        # The other group took its (finite) part; the refused group's weights did not move.
        results = await client.push("r", one_hot(1))
        assert all(r.result.ok for r in results.values())
        weights = await client.pull("r")
        route = await client._route("r")
    assert list(errors) == [_group_of(route, LEAVES[0])]
    refused_leaves = set(route.keys_by_group[next(iter(errors))])
    for path, values in weights.items():
        expected = np.zeros(ELEMENTS, np.float32)
        expected[1] = -1.0
        if path not in refused_leaves:
            expected[0] = -1.0
        assert values.tolist() == expected.tolist(), path


async def test_a_push_over_the_per_group_bound_is_split_or_refused_for_bsp(cluster: LocalCluster) -> None:
    leaf_bytes = 4 * ELEMENTS
    # Each part carries at most two leaves: every group's share is sent as several pushes.
    async with StoreClient(
        cluster.client_addresses, client_id="split", push_bytes_max=2 * leaf_bytes
    ) as client:
        await client.register_model(model_spec("split"), zeros())
        for slot in range(3):
            results = await client.push("split", one_hot(slot))
            assert all(r.result.ok and not r.result.duplicate for r in results.values())
        weights = await client.pull("split")
        assert all(values.tolist()[:4] == [-1.0, -1.0, -1.0, 0.0] for values in weights.values())
        states = {group: client._group(group) for group in results}
        sequences = {
            g: s.sequence + sum(lane.sequence for lane in s.lanes.values()) for g, s in states.items()
        }
        assert all(seq > 3 for seq in sequences.values()), sequences  # more than one push per call
        # An async push's parts went two at a time, the second lane under its own client id.
        assert all(state.lanes[1].sequence >= 3 for state in states.values()), states
        # BSP: a part holds whole shards (a worker pushes once per step and shard).
        one_shard = ModelSpec.create(
            "split-bsp1",
            [LeafSpec(path, (ELEMENTS,), "float32") for path in LEAVES],
            num_shards=1,
            optimizer={"name": "sgd", "learning_rate": 1.0},
            sync_mode=SyncMode.BSP,
        )
        await client.register_model(one_shard, zeros())
        before = {group: state.sequence for group, state in client._groups.items()}
        with pytest.raises(ValueError, match="shard 0 of model 'split-bsp1' carries"):
            await client.push("split-bsp1", one_hot(0), step=0)
        assert {group: state.sequence for group, state in client._groups.items()} == before  # nothing sent
        assert (await client.pull("split-bsp1"))[LEAVES[0]].tolist() == [0.0] * ELEMENTS
        many_shards = dataclasses.replace(one_shard, name="split-bsp8", num_shards=8)
        await client.register_model(many_shards, zeros())
        joined = await client.coordinator.execute(RegisterWorker(client.client_id, "split-bsp8", 30_000))
        assert joined.ok, joined
        await client.wait_for_worker("split-bsp8", client.client_id)
        results = await client.push("split-bsp8", one_hot(0), step=0)
        assert all(r.result.ok for r in results.values())
        weights, step = await client.pull_step("split-bsp8", min_step=1)
        assert step == 1 and all(values.tolist()[:2] == [-1.0, 0.0] for values in weights.values())


def test_client_options_are_checked() -> None:
    with pytest.raises(ValueError, match="push_lanes must be between 1 and 8"):
        StoreClient(["127.0.0.1:1"], push_lanes=0)
    with pytest.raises(ValueError, match="client_id is 300 bytes; at most 250"):
        StoreClient(["127.0.0.1:1"], client_id="c" * 300)


def _group_of(route: object, key: str) -> int:
    keys_by_group: dict[int, tuple[str, ...]] = route.keys_by_group  # type: ignore[attr-defined]
    return next(group for group, keys in keys_by_group.items() if key in keys)


async def test_follower_reads_spread_pulls_over_the_replicas(cluster: LocalCluster) -> None:
    async def served() -> dict[str, tuple[int, int]]:
        """Per store node: (linearizable, serializable) pulls it served."""
        counts = {}
        for members in cluster.store_addresses.values():
            for address in members.values():
                async with grpc.aio.insecure_channel(address) as channel:
                    answer = await api_grpc.StoreStub(channel).Status(api.StatusRequest(), timeout=5.0)
                counts[address] = (int(answer.linearizable_pulls), int(answer.serializable_pulls))
        return counts

    writer = StoreClient(cluster.client_addresses, client_id="follower-writer")
    reader = StoreClient(cluster.client_addresses, client_id="follower-reader", follower_reads=True)
    try:
        await writer.register_model(model_spec("followed"), zeros())
        await writer.push("followed", one_hot(0))
        before = await served()
        deadline = asyncio.get_running_loop().time() + DEADLINE_S
        rounds = 0
        while True:  # a follower may lag behind the acknowledged push for a moment
            rounds += 1
            weights = await reader.pull("followed")
            if all(values[0] == -1.0 for values in weights.values()):
                break
            assert asyncio.get_running_loop().time() < deadline, weights
        for _ in range(2 * 3):  # two rounds over every member of both groups
            await reader.pull("followed")
        after = await served()
    finally:
        await writer.close()
        await reader.close()
    serializable = {a: after[a][1] - before[a][1] for a in after}
    linearizable = {a: after[a][0] - before[a][0] for a in after}
    assert sum(linearizable.values()) == 0, linearizable  # the reader never went through ReadIndex
    assert sum(1 for count in serializable.values() if count > 0) == len(serializable), serializable
    assert rounds >= 1


@pytest.mark.parametrize("wire", ["bfloat16", "float16"])
async def test_gradients_travel_in_half_precision_when_asked(cluster: LocalCluster, wire: str) -> None:
    import ml_dtypes

    name = f"half-{wire}"
    client = StoreClient(cluster.client_addresses, client_id=f"half-{wire}", gradient_dtype=wire)
    try:
        await client.register_model(model_spec(name), zeros())
        grads = np.full(ELEMENTS, 1.0 + 1.0 / 3.0, np.float32)  # not exact in either half type
        await client.push(name, {path: grads for path in LEAVES})
        weights = await client.pull(name)
    finally:
        await client.close()
    rounded = grads.astype(ml_dtypes.bfloat16 if wire == "bfloat16" else np.float16).astype(np.float32)
    assert not np.array_equal(rounded, grads)
    for values in weights.values():
        np.testing.assert_array_equal(values, -rounded)  # SGD, learning rate 1
    with pytest.raises(ValueError, match="gradient_dtype must be one of"):
        StoreClient(cluster.client_addresses, gradient_dtype="int8")


def test_status_with_stores_shows_groups_members_and_shards(cluster: LocalCluster) -> None:
    import json

    from tests.cluster_util import run_cli

    coordinators = ",".join(cluster.client_addresses)
    result = run_cli("status", "--stores", "--json", "--coordinators", coordinators)
    assert result.returncode == 0, result.stderr
    view = json.loads(result.stdout)["stores"]
    assert [g["group"] for g in view["groups"]] == [1, 2]
    for group in view["groups"]:
        roles = sorted(member["role"] for member in group["members"])
        assert roles == ["follower", "follower", "leader"], group
    assert view["pending_moves"] == []
    text = run_cli("status", "--stores", "--coordinators", coordinators)
    assert text.returncode == 0 and "shards owned:" in text.stdout and "pending shard moves: 0" in text.stdout
