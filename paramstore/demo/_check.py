"""The demo's verdict: accuracy, lost or doubled updates, and (BSP) a replay of the run.

Why these: accuracy shows the model trained; the store groups' counts of applied pushes
against the workers' acknowledged pushes show that a failover neither dropped an
acknowledged push nor applied a retried one twice; and under BSP the run is replayed in this
process - the same slices, the same float32 sum and mean the store groups compute, the same
server-side optimizer - and the cluster's weights must equal the replay's bit for bit with
up to 2 workers (the sum of two gradients does not depend on their order; with more
workers the order of arrival changes the last bits, and the difference is only reported).

Why not compare with optax directly: over hundreds of Adam steps the last-bit differences
between a mean of slice gradients and a whole-batch gradient grow (Adam divides tiny
gradients by their tiny running magnitude), so the trajectories drift apart by far more
than float32 tolerance without anything being wrong. The tests compare with optax where
that comparison is meaningful; the demo reports optax's accuracy beside the cluster's.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
import optax  # type: ignore[import-untyped]

from paramstore.client import StoreClient
from paramstore.commands._up import LocalCluster
from paramstore.demo._digits import (
    DIGITS_MLP_SIZES,
    accuracy,
    batch_at,
    init_mlp,
    load_digits_dataset,
    loss_and_grad,
    shard_batch,
    train_reference,
)
from paramstore.demo._train import optimizer_of
from proto import store_service_pb2 as store_api
from proto import store_service_pb2_grpc as store_grpc
from workers._pytree import TreeLayout

__all__ = ["CheckResult", "check_run", "optax_optimizer"]

MODEL = "digits-mlp"
_SETTLE_S = 30.0


def _replay_bsp(args: argparse.Namespace, initial: Any, layout: TreeLayout) -> dict[str, Any]:
    """The BSP run recomputed here: each step, every worker's slice gradient, summed in
    float32 in worker order and scaled by float32(1/N) like the store groups do, then the
    same server-side optimizer."""
    dataset = load_digits_dataset(seed=args.seed)
    optimizer = optimizer_of(args.optimizer, args.learning_rate)
    weights = layout.flatten(initial, "params")
    flat = {name: values.reshape(-1).copy() for name, values in weights.items()}
    slots = {name: optimizer.init_slots(values.shape) for name, values in flat.items()}
    scale = np.float32(1.0 / args.workers)
    for step in range(args.steps):
        params = layout.unflatten(flat)
        x, y = batch_at(dataset, args.batch_size, args.seed, step)
        total: dict[str, Any] | None = None
        for index in range(args.workers):
            _, grads = loss_and_grad(params, *shard_batch(x, y, index, args.workers))
            part = layout.flatten(grads, "gradient")
            if total is None:
                total = {name: values.reshape(-1).copy() for name, values in part.items()}
            else:
                for name, values in part.items():
                    np.add(total[name], values.reshape(-1), out=total[name])
        assert total is not None
        for name in layout.names:
            optimizer.apply(flat[name], total[name] * scale, slots[name], step)
    return flat


def optax_optimizer(name: str, learning_rate: float) -> Any:
    """The optax twin of the demo's server-side optimizer (same names, same defaults)."""
    if name == "momentum":
        return optax.sgd(learning_rate, momentum=0.9)
    return getattr(optax, name)(learning_rate)


@dataclass
class CheckResult:
    accuracy: float
    lost: int
    duplicated: int
    weights_match: bool
    max_weight_diff: float | None
    details: list[str] = field(default_factory=list)


async def _applied_pushes(addresses: list[str]) -> int | None:
    """The group's applied-push count of the model at its leader, once the leader applied
    all it committed (None: the group does not hold the model)."""
    deadline = time.monotonic() + _SETTLE_S
    while time.monotonic() < deadline:
        for address in addresses:
            try:
                async with grpc.aio.insecure_channel(address) as channel:
                    status = await store_grpc.StoreStub(channel).Status(
                        store_api.StatusRequest(), timeout=2.0
                    )
            except grpc.aio.AioRpcError:
                continue
            if status.role != "leader" or status.applied_index < status.commit_index:
                continue
            for model in status.models:
                if model.name == MODEL:
                    return int(model.applied_pushes)
            return None
        await asyncio.sleep(0.05)
    raise TimeoutError(f"no settled store leader among {addresses} within {_SETTLE_S:.0f} s")


async def check_run(cluster: LocalCluster, args: argparse.Namespace, acknowledged: int) -> CheckResult:
    dataset = load_digits_dataset(seed=args.seed)
    initial = init_mlp(DIGITS_MLP_SIZES, args.seed)
    layout = TreeLayout.of(initial)
    async with StoreClient(cluster.client_addresses, client_id="demo-check") as client:
        leaves, step = await client.pull_step(MODEL)
    params = layout.unflatten(leaves)
    result = CheckResult(float(accuracy(params, dataset.x_test, dataset.y_test)), 0, 0, True, None)
    for group, members in sorted(cluster.store_addresses.items()):
        applied = await _applied_pushes(list(members.values()))
        if applied is None:
            result.details.append(f"store group {group}: holds no key of the model")
            continue
        result.lost += max(0, acknowledged - applied)
        result.duplicated += max(0, applied - acknowledged)
        result.details.append(
            f"store group {group}: {applied} pushes applied, {acknowledged} acknowledged to the workers"
        )
    if args.sync == "bsp":
        replay = _replay_bsp(args, initial, layout)
        diff = max(float(np.max(np.abs(leaves[name].reshape(-1) - replay[name]))) for name in layout.names)
        result.max_weight_diff = diff
        exact = args.workers <= 2
        result.weights_match = step == args.steps and (diff == 0.0 or not exact)
        result.details.append(
            f"BSP: the model completed {step} steps (expected {args.steps}); weights vs the replay of "
            f"the run: max |diff| {diff:.2e} ({'must be 0' if exact else 'reported only: over 2 workers'})"
        )
        reference, _ = train_reference(
            dataset,
            optimizer=optax_optimizer(args.optimizer, args.learning_rate),
            steps=args.steps,
            batch_size=args.batch_size,
            seed=args.seed,
            params=initial,
        )
        reference_accuracy = float(accuracy(reference, dataset.x_test, dataset.y_test))
        result.details.append(
            f"single-process optax on the same batches reaches accuracy {reference_accuracy:.4f}"
        )
    return result
