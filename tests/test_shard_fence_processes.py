"""A model registered in the coordinator, and not yet installed on any store group, when a
group is added and its shards move: real processes (3 coordinators, 2 store groups x 3, a
third group added with ``paramstore cluster add-group``).

The giving groups hold nothing of the model when the shard mover releases its shards, so
each release leaves a fence. A client that still has the shard map from before the move
and installs a moved shard's key on its old group is refused (WRONG_GROUP), where before it
would have been served there, by a group the coordinator no longer routes to. A fresh
registration then installs every key where the map says, and pushes land once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from paramstore.client import CoordinatorClient, StoreClient, StoreRefusedError
from paramstore.commands._up import LocalCluster
from paramstore.coordinator import AssignShards, LeafSpec, ModelSpec, RegisterModel, SyncMode
from paramstore.shard import ErrorCode, ModelLayout
from proto import shard_pb2 as shard_pb
from proto import store_service_pb2 as api
from tests.cluster_util import run_cli
from tests.test_store_client import start_cluster

NUM_SHARDS = 12
LEAVES = tuple(f"leaf{i}" for i in range(24))
ELEMENTS = 8
WAIT_S = 60.0


def _spec() -> ModelSpec:
    return ModelSpec.create(
        "late",
        [LeafSpec(path, (ELEMENTS,), "float32") for path in LEAVES],
        num_shards=NUM_SHARDS,
        optimizer={"name": "sgd", "learning_rate": 1.0},
        sync_mode=SyncMode.ASYNC,
    )


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    cluster = start_cluster(tmp_path / "cluster")
    try:
        yield cluster
    finally:
        cluster.stop()


async def _shard_groups(coordinator: CoordinatorClient) -> list[int]:
    config = await coordinator.config()
    model = next(m for m in config.models if m.spec.name == "late")
    return [int(g) for g in model.shard_groups]


def _install_request(spec: ModelSpec, key: str) -> api.InstallRequest:
    return api.InstallRequest(
        install=shard_pb.InstallKeys(
            model=spec.name,
            optimizer_json=spec.optimizer_json,
            non_finite_policy=shard_pb.NON_FINITE_POLICY_REJECT,
            num_shards=spec.num_shards,
            keys=[
                shard_pb.KeyTensor(
                    key=key,
                    tensor=shard_pb.Tensor(
                        dtype=shard_pb.D_TYPE_FLOAT32, data=np.zeros(ELEMENTS, np.float32).tobytes()
                    ),
                )
            ],
            sync_mode=shard_pb.SYNC_MODE_ASYNC,
        )
    )


@pytest.mark.slow
def test_a_shard_moved_before_its_model_was_installed_is_not_served_by_its_old_group(
    cluster: LocalCluster,
) -> None:
    spec = _spec()
    layout = ModelLayout.from_spec(spec)

    async def scenario() -> None:
        coordinator = CoordinatorClient(cluster.client_addresses, deadline_s=10.0)
        stale = StoreClient(cluster.client_addresses, client_id="stale-installer", deadline_s=20.0)
        fresh = StoreClient(cluster.client_addresses, client_id="fresh-worker", deadline_s=30.0)
        try:
            # A registration that stopped after the coordinator steps (as StoreClient.register_model
            # takes them), before installing anything on the groups.
            assert (await coordinator.execute(RegisterModel(spec))).ok
            groups = (await coordinator.config()).groups
            ids = sorted(g.group_id for g in groups)
            assignments = tuple((s, ids[s % len(ids)]) for s in range(NUM_SHARDS))
            assert (await coordinator.execute(AssignShards(spec.name, assignments))).ok
            before = await _shard_groups(coordinator)
            old_members = {g.group_id: [m.address for m in g.members] for g in groups}

            group = cluster.add_store_group()
            await cluster.wait_for_store_leaders(WAIT_S)
            members = ",".join(f"{i}={a}" for i, a in cluster.store_addresses[group].items())
            added = await asyncio.to_thread(
                run_cli,
                *("cluster", "add-group", "--group", str(group), "--members", members),
                *("--coordinators", ",".join(cluster.client_addresses), "--wait-timeout", str(WAIT_S)),
                timeout_s=WAIT_S * 2,
            )
            assert added.returncode == 0, added.stdout + added.stderr
            after = await _shard_groups(coordinator)
            moved = [s for s in range(NUM_SHARDS) if after[s] == group]
            assert moved and all(before[s] != group for s in moved), (before, after)

            # The stale client installs a moved shard's key where the old map put it.
            placement = next(p for p in layout.keys if p.shard in moved)
            old_group = before[placement.shard]
            request = _install_request(spec, placement.key)
            with pytest.raises(StoreRefusedError) as refused:
                await stale.call_group(
                    old_group, old_members[old_group], lambda stub, t: stub.Install(request, timeout=t)
                )
            assert refused.value.code == ErrorCode.WRONG_GROUP, refused.value

            # A registration from now on installs every key where the map says; pushes apply once.
            initial = {path: np.zeros(ELEMENTS, np.float32) for path in LEAVES}
            await fresh.register_model(spec, initial)
            await fresh.push("late", {path: np.ones(ELEMENTS, np.float32) for path in LEAVES})
            weights = await fresh.pull("late")
            for path in LEAVES:
                np.testing.assert_array_equal(weights[path], -np.ones(ELEMENTS, np.float32), err_msg=path)
        finally:
            await fresh.close()
            await stale.close()
            await coordinator.close()

    asyncio.run(scenario())
