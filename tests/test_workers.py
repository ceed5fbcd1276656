"""The worker client against a real local cluster (3 coordinators, 2 store groups x 3).

Fidelity: BSP with one worker, and with two workers each computing the gradient of half of
every batch, gives the weights of single-process optax training on the whole batch. Async
and SSP reach the digits quality target. A dead worker does not hang a BSP barrier. Bad
input gets typed errors. The main job itself (``paramstore demo`` with a store leader killed
mid-run) is in test_demo.py.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax
import pytest

import workers
from paramstore.commands._up import LocalCluster
from paramstore.demo import (
    DIGITS_MLP_SIZES,
    accuracy,
    batch_at,
    init_mlp,
    load_digits_dataset,
    loss_and_grad,
    shard_batch,
    train_reference,
)
from tests.test_store_client import start_cluster

BATCH = 64
#: The digits quality target: test accuracy after at most 300 steps of batch 64 (optax alone
#: reaches 0.98 with adam(1e-2); stale gradients cost a little).
ACCURACY_TARGET = 0.93


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = start_cluster(tmp_path_factory.mktemp("workers"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def dataset() -> Any:
    return load_digits_dataset()


def _max_diff(a: Any, b: Any) -> float:
    diffs = jax.tree_util.tree_map(lambda x, y: float(np.max(np.abs(np.asarray(x) - np.asarray(y)))), a, b)
    return max(jax.tree_util.tree_leaves(diffs))


def _run_in_threads(count: int, body: Any) -> list[Any]:
    """``body(i)`` in ``count`` threads; their results, re-raising the first failure."""
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            results[index] = body(index)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(t.is_alive() for t in threads), "a worker thread did not finish in 120 s"
    if errors:
        raise errors[0]
    return results


def _train_bsp(
    cluster: LocalCluster, name: str, dataset: Any, count: int, steps: int, optimizer: Any
) -> list[Any]:
    params = init_mlp(DIGITS_MLP_SIZES, 0)

    def body(index: int) -> Any:
        with workers.Worker(
            cluster.client_addresses,
            name,
            params,
            optimizer=optimizer,
            sync="bsp",
            num_shards=8,
            worker_id=f"{name}-{index}",
            wait_for_workers=count,
        ) as worker:
            for _ in range(steps):
                weights = worker.pull()
                x, y = shard_batch(*batch_at(dataset, BATCH, 0, worker.step), index, count)
                _, grads = loss_and_grad(weights, x, y)
                ack = worker.push(grads)
                assert ack.applied and not ack.duplicate
            final = worker.pull()
            assert worker.step == steps
            return final

    return _run_in_threads(count, body)


@pytest.mark.parametrize(
    ("optimizer", "reference"),
    [
        (workers.adam(1e-2), optax.adam(1e-2)),
        (workers.momentum(0.1, 0.9), optax.sgd(0.1, momentum=0.9)),
    ],
    ids=["adam", "momentum"],
)
def test_bsp_one_worker_matches_single_process_optax(cluster, dataset, optimizer, reference) -> None:
    steps = 25
    name = f"bsp1-{optimizer.name}"
    (final,) = _train_bsp(cluster, name, dataset, 1, steps, optimizer)
    expected, _ = train_reference(
        dataset,
        optimizer=reference,
        steps=steps,
        batch_size=BATCH,
        seed=0,
        params=init_mlp(DIGITS_MLP_SIZES, 0),
    )
    assert _max_diff(final, expected) < 1e-5


def test_bsp_two_workers_on_half_batches_match_whole_batch_training(cluster, dataset) -> None:
    steps = 25
    finals = _train_bsp(cluster, "bsp2", dataset, 2, steps, workers.adam(1e-2))
    assert _max_diff(finals[0], finals[1]) == 0.0  # both pulled the same weights
    expected, _ = train_reference(
        dataset,
        optimizer=optax.adam(1e-2),
        steps=steps,
        batch_size=BATCH,
        seed=0,
        params=init_mlp(DIGITS_MLP_SIZES, 0),
    )
    assert _max_diff(finals[0], expected) < 1e-4


@pytest.mark.parametrize(("sync", "staleness"), [("async", 0), ("ssp", 2)])
def test_async_and_ssp_reach_the_quality_target(cluster, dataset, sync: str, staleness: int) -> None:
    steps, count = 300, 2
    params = init_mlp(DIGITS_MLP_SIZES, 1)
    name = f"quality-{sync}"

    def body(index: int) -> Any:
        with workers.Worker(
            cluster.client_addresses,
            name,
            params,
            optimizer=workers.adam(1e-2),
            sync=sync,
            staleness=staleness,
            num_shards=8,
            worker_id=f"{name}-{index}",
            wait_for_workers=count,
        ) as worker:
            pending = worker.pull_async()
            for step in range(steps):
                weights = pending.result()
                _, grads = loss_and_grad(weights, *batch_at(dataset, BATCH // count, 1 + index, step))
                worker.push_async(grads)
                pending = worker.pull_async()  # prefetch while the next gradient is computed
            worker.wait_pushes()
            pending.result()
            assert worker.stats.pushes == steps
            return worker.pull()

    finals = _run_in_threads(count, body)
    assert accuracy(finals[-1], dataset.x_test, dataset.y_test) >= ACCURACY_TARGET


def test_a_dead_worker_does_not_hang_the_barrier(cluster, dataset) -> None:
    params = init_mlp(DIGITS_MLP_SIZES, 0)
    common: dict[str, Any] = {"optimizer": workers.sgd(0.1), "sync": "bsp", "num_shards": 8}
    alive = workers.Worker(cluster.client_addresses, "dead", params, worker_id="dead-alive", **common)
    doomed = workers.Worker(
        cluster.client_addresses, "dead", params, worker_id="dead-doomed", lease_ttl_s=1.0, **common
    )
    try:
        weights = alive.pull()
        doomed.pull()
        # The doomed worker's process "dies": no push, no goodbye; its lease runs out.
        doomed.close(leave=False, wait_pushes=False)
        _, grads = loss_and_grad(weights, *batch_at(dataset, BATCH, 0, 0))
        assert alive.push(grads).applied
        alive.pull()  # waits for step 1: completes once the coordinator expires the lease
        assert alive.step == 1
    finally:
        alive.close()


def test_bad_input_gets_typed_errors(cluster, tmp_path: Path) -> None:
    params = {"w": np.zeros((3, 2), np.float32), "b": np.zeros(2, np.float32)}
    with pytest.raises(ValueError, match="sync must be one of"):
        workers.Worker(cluster.client_addresses, "bad", params, optimizer=workers.sgd(0.1), sync="lockstep")
    with workers.Worker(
        cluster.client_addresses, "bad", params, optimizer=workers.sgd(0.1), sync="async", num_shards=2
    ) as worker:
        with pytest.raises(workers.ShapeMismatchError, match="leaf 'w' has shape"):
            worker.push({"w": np.zeros((2, 3), np.float32), "b": np.zeros(2, np.float32)})
        with pytest.raises(workers.ShapeMismatchError, match="structure"):
            worker.push({"w": np.zeros((3, 2), np.float32)})
        with pytest.raises(workers.ModelSpecConflictError, match="another definition"):
            workers.Worker(
                cluster.client_addresses,
                "bad",
                params,
                optimizer=workers.adam(0.1),
                sync="async",
                num_shards=2,
            )
        pulled = worker.pull()
        assert set(pulled) == {"w", "b"} and pulled["w"].shape == (3, 2)
        assert isinstance(pulled["w"], jax.Array)
    with pytest.raises(workers.WorkerClosedError):
        worker.pull()
    with pytest.raises(workers.ClusterUnreachableError):
        workers.Worker("127.0.0.1:1", "nowhere", params, optimizer=workers.sgd(0.1), deadline_s=1.0)
    with pytest.raises(ValueError, match=r"cluster\.json"):
        workers.Worker(tmp_path / "missing.json", "m", params, optimizer=workers.sgd(0.1))


def test_a_restarted_worker_with_the_same_name_joins_again(cluster, dataset) -> None:
    """A new incarnation starts its sequence numbers over, so it gets an id of its own."""
    params = init_mlp(DIGITS_MLP_SIZES, 0)
    ids = []
    for _ in range(2):
        with workers.Worker(
            cluster.client_addresses,
            "restarted",
            params,
            optimizer=workers.sgd(0.1),
            sync="bsp",
            worker_id="w0",
        ) as worker:
            ids.append(worker.worker_id)
            weights = worker.pull()
            _, grads = loss_and_grad(weights, *batch_at(dataset, BATCH, 0, worker.step))
            assert worker.push(grads).applied
            worker.pull()
    assert ids[0] != ids[1] and all(i.startswith("w0-") for i in ids)
