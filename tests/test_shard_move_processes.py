"""Resharding end to end, real processes: a third store group is added while clients push,
the shards it gets move with a store leader and the coordinator leader killed mid-move, and
then the group is removed again (its shards move back), still under pushes. Afterwards every
acknowledged push is in the weights exactly once, every failed one at most once.

Push ``p`` of client ``c`` is one-hot at element ``c * PUSHES_MAX + p`` of every leaf (SGD,
learning rate 1), so ``-weights`` counts how many times each push was applied to each key,
whichever group held the key when the push arrived.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from paramstore.client import CoordinatorClient, PushFailedError, StoreClient, pending_moves
from paramstore.commands._up import LocalCluster
from paramstore.coordinator import LeafSpec, ModelSpec, SyncMode
from tests.cluster_util import run_cli, wait_for
from tests.test_store_client import start_cluster
from tests.test_store_failover import leader_of

CLIENTS = 3
PUSHES_MAX = 400
ELEMENTS = CLIENTS * PUSHES_MAX
LEAVES = tuple(f"layer{i}/w" for i in range(32))
NUM_SHARDS = 32
PUSHES_BETWEEN_PHASES = 5  # per client, after each phase's moves are done
WAIT_S = 60.0


def _spec() -> ModelSpec:
    return ModelSpec.create(
        "moving",
        [LeafSpec(path, (ELEMENTS,), "float32") for path in LEAVES],
        num_shards=NUM_SHARDS,
        optimizer={"name": "sgd", "learning_rate": 1.0},
        sync_mode=SyncMode.ASYNC,
    )


def _one_hot(slot: int) -> dict[str, np.ndarray]:
    grads = np.zeros(ELEMENTS, np.float32)
    grads[slot] = 1.0
    return {path: grads for path in LEAVES}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    cluster = start_cluster(tmp_path / "cluster")
    try:
        yield cluster
    finally:
        cluster.stop()


async def _owners(coordinator: CoordinatorClient) -> list[int]:
    config = await coordinator.config()
    model = next(m for m in config.models if m.spec.name == "moving")
    return list(model.shard_groups)


@pytest.mark.slow
async def test_shards_move_out_and_back_under_pushes_and_crashes_exactly_once(cluster: LocalCluster) -> None:
    addresses = ",".join(cluster.client_addresses)
    clients = [
        StoreClient(cluster.client_addresses, client_id=f"w{c}", deadline_s=30.0, attempt_timeout_s=2.0)
        for c in range(CLIENTS)
    ]
    coordinator = CoordinatorClient(cluster.client_addresses, deadline_s=10.0)
    outcome: dict[tuple[int, int], bool] = {}  # (client, push) -> acknowledged by every group
    done = [0] * CLIENTS
    stop = asyncio.Event()
    try:
        await clients[0].register_model(_spec(), {p: np.zeros(ELEMENTS, np.float32) for p in LEAVES})

        async def work(c: int) -> None:
            for p in range(PUSHES_MAX):
                if stop.is_set():
                    return
                try:
                    await clients[c].push("moving", _one_hot(c * PUSHES_MAX + p))
                    outcome[(c, p)] = True
                except PushFailedError:
                    outcome[(c, p)] = False
                done[c] += 1
            raise AssertionError(f"client {c} ran out of pushes: raise PUSHES_MAX")

        async def pushes_go_on() -> None:
            start = list(done)

            async def enough() -> bool:
                return all(d - s >= PUSHES_BETWEEN_PHASES for d, s in zip(done, start, strict=True))

            await wait_for(enough, f"{PUSHES_BETWEEN_PHASES} more pushes per client", WAIT_S)

        workers = [asyncio.create_task(work(c)) for c in range(CLIENTS)]
        await pushes_go_on()

        # ---- phase 1: a new group; its shards move while a store leader and the coordinator
        # leader are killed.
        group = cluster.add_store_group()
        await cluster.wait_for_store_leaders(WAIT_S)
        members = ",".join(f"{i}={a}" for i, a in cluster.store_addresses[group].items())
        add = asyncio.create_task(
            asyncio.to_thread(
                run_cli,
                *("cluster", "add-group", "--group", str(group), "--members", members),
                *("--coordinators", addresses, "--wait-timeout", str(WAIT_S)),
                timeout_s=WAIT_S * 2,
            )
        )
        await wait_for(lambda: _moved_some(coordinator, group), "a first shard on the new group", WAIT_S)
        pending_at_crash = len(await pending_moves(coordinator))
        store_leader, _ = await leader_of(cluster, 1)
        coordinator_leader = await cluster.wait_for_leader(WAIT_S)
        cluster.store_processes[(1, store_leader)].send_signal(signal.SIGKILL)
        cluster.kill(coordinator_leader)
        cluster.store_processes[(1, store_leader)].wait(timeout=WAIT_S)
        cluster.start_store(1, store_leader)
        cluster.start_node(coordinator_leader)
        added = await add
        assert added.returncode == 0, added.stdout + added.stderr
        owners = await _owners(coordinator)
        assert owners.count(group) == NUM_SHARDS // 3, owners
        assert not await pending_moves(coordinator)
        await pushes_go_on()

        # ---- phase 2: the group is removed; its shards move back.
        removed = await asyncio.to_thread(
            run_cli,
            *("cluster", "remove-group", "--group", str(group)),
            *("--coordinators", addresses, "--wait-timeout", str(WAIT_S)),
            timeout_s=WAIT_S * 2,
        )
        assert removed.returncode == 0, removed.stdout + removed.stderr
        assert group not in await _owners(coordinator)
        assert group not in {g.group_id for g in (await coordinator.config()).groups}
        await pushes_go_on()
        stop.set()
        await asyncio.gather(*workers)
        rerouted = sum(client.reroutes for client in clients)
        weights = await clients[0].pull("moving")
    finally:
        stop.set()
        for client in clients:
            await client.close()
        await coordinator.close()

    assert pending_at_crash > 0, "the crash came after the last move: nothing was tested mid-move"
    assert rerouted > 0, "no push was refused as moved and sent again"
    acknowledged = sum(outcome.values())
    assert acknowledged >= CLIENTS * 3 * PUSHES_BETWEEN_PHASES
    for path, values in weights.items():
        counts = -values
        for c in range(CLIENTS):
            for p in range(PUSHES_MAX):
                count = float(counts[c * PUSHES_MAX + p])
                if outcome.get((c, p)) is True:
                    assert count == 1.0, (path, c, p, count)
                elif (c, p) in outcome:
                    assert count in (0.0, 1.0), (path, c, p, count)
                else:
                    assert count == 0.0, (path, c, p, count)


async def _moved_some(coordinator: CoordinatorClient, group: int) -> bool:
    return group in await _owners(coordinator)


def test_bad_group_flags_are_refused_before_anything_is_sent() -> None:
    for args, expected in (
        (("add-group", "--group", "0", "--members", "1=127.0.0.1:1"), "--group must be a positive"),
        (("add-group", "--group", "3", "--members", "one=127.0.0.1:1"), "expected ID=HOST:PORT"),
        (("remove-group", "--group", "2", "--wait-timeout", "0"), "--wait-timeout must be > 0"),
    ):
        result = run_cli("cluster", *args, "--coordinators", "127.0.0.1:1")
        assert result.returncode == 2, result
        assert expected in result.stderr, result.stderr


@pytest.mark.slow
def test_bsp_training_goes_on_while_its_shards_move(cluster: LocalCluster) -> None:
    """Two BSP workers push a gradient of ones to every leaf each step while a third group is
    added and shards move mid-step (barriers and all). Every leaf must then hold exactly the
    weights of ``steps`` momentum updates with a gradient of one: a shard that lost, doubled
    or skipped a step (even a zero-gradient one) would differ."""
    import threading

    import workers
    from paramstore import optim

    params = {f"leaf{i}": np.zeros(16, np.float32) for i in range(16)}
    optimizer = workers.momentum(0.1, 0.9)
    moved = threading.Event()
    extra_steps = 10
    steps_max = 2000

    def train(index: int) -> tuple[int, dict[str, np.ndarray]]:
        with workers.Worker(
            cluster.client_addresses,
            "bsp-moving",
            params,
            optimizer=optimizer,
            sync="bsp",
            num_shards=16,
            worker_id=f"mover-{index}",
            wait_for_workers=2,
        ) as worker:
            after_move = 0
            for _ in range(steps_max):
                worker.pull()
                worker.push({name: np.ones(16, np.float32) for name in params})
                after_move += int(moved.is_set())
                if after_move >= extra_steps:
                    break
            final = {name: np.asarray(value) for name, value in worker.pull().items()}
            return worker.step, final

    results: list[tuple[int, dict[str, np.ndarray]]] = []
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            results.append(train(index))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    try:
        group = cluster.add_store_group()
        asyncio.run(cluster.wait_for_store_leaders(WAIT_S))
        members = ",".join(f"{i}={a}" for i, a in cluster.store_addresses[group].items())
        added = run_cli(
            *("cluster", "add-group", "--group", str(group), "--members", members),
            *("--coordinators", ",".join(cluster.client_addresses), "--wait-timeout", str(WAIT_S)),
            timeout_s=WAIT_S * 2,
        )
        assert added.returncode == 0, added.stdout + added.stderr
        assert "moves: 0/" in added.stdout and "shard move(s) recorded" in added.stdout, added.stdout
    finally:
        moved.set()
        for thread in threads:
            thread.join(WAIT_S * 2)
    assert not errors, errors
    assert len(results) == 2 and min(steps for steps, _ in results) > extra_steps

    async def final_state() -> tuple[dict[str, np.ndarray], int]:
        async with StoreClient(cluster.client_addresses, client_id="bsp-check") as client:
            return await client.pull_step("bsp-moving")

    # The workers may stop a step apart (the one left alone does its last step by itself).
    weights_now, steps = asyncio.run(final_state())
    assert steps == max(steps for steps, _ in results)
    reference = optim.optimizer_from_spec(dict(optimizer.spec()))
    expected = np.zeros(16, np.float32)
    slots = reference.init_slots(expected.shape)
    for step in range(steps):
        reference.apply(expected, np.ones(16, np.float32), slots, step)
    for name in params:
        np.testing.assert_array_equal(weights_now[name], expected, err_msg=name)
