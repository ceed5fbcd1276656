"""One demo worker process: trains the digits MLP through the parameter server.

Run by ``paramstore demo`` as ``python -m paramstore.demo._train --coordinators ... --index I
--workers N ...``. It prints one JSON object per line on stdout (``{"event": "step", ...}``
after each step, ``{"event": "done", ...}`` at the end, ``{"event": "error", ...}`` on a
failure), which the demo turns into its progress bar and its final check.

What each worker trains on:

* BSP: step t's global batch is the same for every worker (``batch_at(seed, t)``) and worker
  i takes the i-th of N equal slices. The store groups average the N gradients, which is
  the gradient of the whole batch, so the run must match single-process training exactly.
* SSP and async: worker i draws its own batches (seed + i) of ``batch_size / N``; pushes are
  applied as they come and the next weights are prefetched while the gradient is computed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import workers
from paramstore.commands._demo import OPTIMIZERS
from paramstore.demo._digits import (
    DIGITS_MLP_SIZES,
    batch_at,
    init_large_mlp,
    init_mlp,
    load_digits_dataset,
    loss_and_grad,
    shard_batch,
)

__all__ = ["OPTIMIZERS", "main", "optimizer_of"]


def optimizer_of(name: str, learning_rate: float) -> workers.Optimizer:
    """The server-side optimizer of a demo run, by its optax name."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")
    factory: Any = getattr(workers, name)
    optimizer: workers.Optimizer = factory(learning_rate)
    return optimizer


def _emit(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m paramstore.demo._train")
    parser.add_argument("--coordinators", required=True)
    parser.add_argument("--model", default="digits-mlp")
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--sync", choices=("bsp", "ssp", "async"), default="bsp")
    parser.add_argument("--staleness", type=int, default=0)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="adam")
    parser.add_argument("--learning-rate", type=float, default=1e-2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-shards", type=int, default=16)
    parser.add_argument("--lease-ttl-s", type=float, default=3.0)
    parser.add_argument(
        "--model-size", choices=("small", "large"), default="small", help="large: the >= 10M-parameter MLP"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _train(args)
    except Exception as exc:  # reported to the demo, which prints it and fails the run
        _emit(event="error", index=args.index, error=f"{type(exc).__name__}: {exc}")
        return 1


def _train(args: argparse.Namespace) -> int:
    workers.keep_freed_buffers_for_reuse()  # this process only trains: pulls reuse their buffers
    dataset = load_digits_dataset(seed=args.seed)
    params = (
        init_mlp(DIGITS_MLP_SIZES, args.seed) if args.model_size == "small" else init_large_mlp(args.seed)
    )
    bsp = args.sync == "bsp"
    started = time.monotonic()
    with workers.Worker(
        args.coordinators,
        args.model,
        params,
        optimizer=optimizer_of(args.optimizer, args.learning_rate),
        sync=args.sync,
        staleness=args.staleness if args.sync == "ssp" else 0,
        num_shards=args.num_shards,
        worker_id=f"demo-worker-{args.index}",
        lease_ttl_s=args.lease_ttl_s,
        wait_for_workers=args.workers,
    ) as worker:
        joined = time.monotonic()
        weights = worker.pull_async()
        for local_step in range(args.steps):
            current = weights.result()
            if bsp:
                x, y = batch_at(dataset, args.batch_size, args.seed, worker.step)
                x, y = shard_batch(x, y, args.index, args.workers)
            else:
                x, y = batch_at(dataset, args.batch_size // args.workers, args.seed + args.index, local_step)
            loss, grads = loss_and_grad(current, x, y)
            worker.push_async(grads)
            weights = worker.pull_async()  # BSP: waits for the step; else prefetches meanwhile
            _emit(event="step", index=args.index, step=local_step + 1, loss=float(loss), t=time.monotonic())
        worker.wait_pushes()
        weights.result()
        stats = worker.stats
        _emit(
            event="done",
            index=args.index,
            pushes=stats.pushes,
            dropped_pushes=stats.dropped_pushes,
            blocked_s=stats.blocked_s,
            pull_wait_s=stats.pull_wait_s,
            push_wait_s=stats.push_wait_s,
            train_s=time.monotonic() - joined,
            join_s=joined - started,
            lease_rejoins=stats.lease_rejoins,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
