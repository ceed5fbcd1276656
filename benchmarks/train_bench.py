"""Training throughput through paramstore against the same model trained in one process.

What it measures, side by side in one run:

* **single process, optax**: the demo's MLP on digits (9,610 parameters) and the large MLP
  (``LARGE_MLP_SIZES``, 10,483,210 parameters), batch 64, one jitted step (gradient + optax
  update) per iteration: steps/s after a warm-up;
* **paramstore**: the same models trained by ``--workers`` worker processes
  (``paramstore.demo._train``) through a ``LocalCluster`` of 3 coordinators and 2 store groups
  x 3 replicas (``--fsync batch``) on 127.0.0.1. BSP: the batch of 64 is split over the
  workers and each step is one model update, so steps/s is model updates/s. Async: each
  worker pushes its own gradient of a batch of 64/N, so model updates/s = N x a worker's
  steps/s. The large model runs async only: its gradient per store group (~21 MB) is over
  the 16 MiB a BSP push may carry to one group per step (async pushes are split).
* **blocked**: the time a worker spends waiting on the parameter server per step (pull and
  push waits; computation not counted), the mean over the workers.

Steps/s of a run: steps / the slowest worker's training time (from its first pull to its
last acknowledgement; process start-up, jit and joining are excluded).

    .venv/bin/python benchmarks/train_bench.py
    .venv/bin/python benchmarks/train_bench.py --small-steps 100 --large-steps 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import jax
import optax

from paramstore.commands._up import LocalCluster
from paramstore.demo import (
    DIGITS_MLP_SIZES,
    batch_at,
    init_large_mlp,
    init_mlp,
    load_digits_dataset,
    loss,
    param_count,
)

_READY_S = 60.0
_RUN_TIMEOUT_S = 900.0


def single_process(model_size: str, steps: int) -> float:
    """Steps/s of one jitted optax adam step (gradient + update) per iteration."""
    dataset = load_digits_dataset()
    params = init_mlp(DIGITS_MLP_SIZES, 0) if model_size == "small" else init_large_mlp(0)
    optimizer = optax.adam(1e-2)
    state = optimizer.init(params)

    @jax.jit
    def step(params: Any, state: Any, x: Any, y: Any) -> tuple[Any, Any]:
        grads = jax.grad(loss)(params, x, y)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    batches = [batch_at(dataset, 64, 0, i) for i in range(steps + 1)]
    params, state = step(params, state, *batches[0])  # compile
    jax.block_until_ready(params)
    started = time.perf_counter()
    for x, y in batches[1:]:
        params, state = step(params, state, x, y)
    jax.block_until_ready(params)
    return steps / (time.perf_counter() - started)


def through_paramstore(
    cluster: LocalCluster, name: str, model_size: str, sync: str, workers: int, steps: int
) -> dict[str, float]:
    command = [
        sys.executable,
        "-m",
        "paramstore.demo._train",
        "--coordinators",
        ",".join(cluster.client_addresses),
        "--model",
        name,
        "--model-size",
        model_size,
        "--workers",
        str(workers),
        "--sync",
        sync,
        "--steps",
        str(steps),
        "--batch-size",
        "64",
        "--num-shards",
        "64",
    ]
    procs = [
        subprocess.Popen(
            [*command, "--index", str(index)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        for index in range(workers)
    ]
    done: list[dict[str, Any]] = []
    try:
        for proc in procs:
            out, _ = proc.communicate(timeout=_RUN_TIMEOUT_S)
            events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
            errors = [e for e in events if e["event"] == "error"]
            if errors or proc.returncode != 0:
                raise RuntimeError(f"{name}: worker failed: {errors or proc.returncode}")
            done.extend(e for e in events if e["event"] == "done")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    slowest = max(float(d["train_s"]) for d in done)
    worker_steps_per_s = steps / slowest
    updates_per_s = worker_steps_per_s if sync == "bsp" else worker_steps_per_s * workers
    blocked_ms = 1000 * sum(float(d["blocked_s"]) for d in done) / len(done) / steps
    return {
        "updates_per_s": updates_per_s,
        "worker_steps_per_s": worker_steps_per_s,
        "blocked_ms": blocked_ms,
    }


async def _ready(cluster: LocalCluster) -> None:
    await cluster.wait_for_leader(_READY_S)
    await cluster.register_groups(_READY_S)
    await cluster.wait_for_store_leaders(_READY_S)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small-steps", type=int, default=200)
    parser.add_argument("--large-steps", type=int, default=10)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--sizes", nargs="+", choices=["small", "large"], default=["small", "large"])
    parser.add_argument("--syncs", nargs="+", choices=["bsp", "async"], default=["bsp", "async"])
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}, "
        f"jax {jax.__version__}"
    )
    small = param_count(init_mlp(DIGITS_MLP_SIZES, 0))
    large = param_count(init_large_mlp(0))
    rows: list[tuple[str, str, float, str, str]] = []
    steps_of = {"small": args.small_steps, "large": args.large_steps}
    single = {size: single_process(size, max(steps_of[size], 5)) for size in args.sizes}
    for size in args.sizes:
        label = f"{size} MLP ({small if size == 'small' else large:,} params)"
        rows.append((label, "single process, optax", single[size], "-", "-"))
    with tempfile.TemporaryDirectory(prefix="train-bench-") as directory:
        cluster = LocalCluster(Path(directory), coordinators=3, groups=2, replicas=3, fsync="batch")
        cluster.start()
        try:
            asyncio.run(_ready(cluster))
            # (BSP pushes of the large model are split by shard: 21 MB per group and step.)
            runs = [
                (size, sync, n, steps_of[size])
                for size in args.sizes
                for sync in args.syncs
                for n in args.workers
            ]
            for index, (size, sync, workers, steps) in enumerate(runs):
                figures = through_paramstore(
                    cluster, f"bench-{index}-{size}-{sync}", size, sync, workers, steps
                )
                label = f"{size} MLP ({small if size == 'small' else large:,} params)"
                rows.append(
                    (
                        label,
                        f"paramstore {sync}, {workers} worker{'s' if workers > 1 else ''}",
                        figures["updates_per_s"],
                        f"{figures['updates_per_s'] / single[size]:.3g}x",
                        f"{figures['blocked_ms']:.1f}",
                    )
                )
                print(f"  done: {rows[-1]}", flush=True)
        finally:
            cluster.stop()
    print()
    print(f"{'model':<28} {'how':<30} {'updates/s':>10} {'vs single':>10} {'blocked ms/step':>16}")
    for model, how, rate, ratio, blocked in rows:
        print(f"{model:<28} {how:<30} {rate:>10.1f} {ratio:>10} {blocked:>16}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
