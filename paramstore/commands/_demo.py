"""``paramstore demo``: the main job. A local cluster trains a real model, with a fault.

It starts a local cluster on 127.0.0.1 (3 coordinators, 2 store groups x 3 replicas by
default), trains an MLP on scikit-learn's bundled digits with N worker processes in JAX
through it (``paramstore.demo._train``), shows a progress bar with loss and throughput,
optionally kills (-9) a store leader or the coordinator leader at a chosen step and restarts
it a little later, then checks the result and stops the cluster it started:

* test accuracy of the final weights (pulled from the store groups);
* lost / duplicate updates: every group's count of applied pushes against the pushes the
  workers had acknowledged (both must agree exactly);
* under BSP, the final weights against single-process optax training on the same batches
  (they must match within float32 tolerance: a lost or doubled gradient would show).

The last line states the result, e.g. ``accuracy=0.981 steps=300 workers=2 sync=bsp
lost_updates=0 duplicate_updates=0 faults=1 ...``; the exit status is 0 only when nothing was
lost or doubled, every worker finished and (BSP) the weights match.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tqdm import tqdm  # type: ignore[import-untyped]

from paramstore.commands._up import LocalCluster

__all__ = ["OPTIMIZERS", "add_parser", "run"]

#: The server-side optimizers the demo offers, by their optax names. (Defined here, not in
#: paramstore.demo, so that the CLI starts without importing jax.)
OPTIMIZERS = ("sgd", "momentum", "adam", "adamw", "adagrad", "rmsprop")

_READY_TIMEOUT_S = 60.0
_WORKER_EXIT_S = 120.0
_FAULTS = ("none", "kill-store-leader", "kill-coordinator-leader")


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "demo",
        help="start a local cluster and train an MLP on the digits dataset through it",
        description="Start a local cluster (3 coordinators, 2 store groups x 3 replicas), train an MLP "
        "on scikit-learn's bundled digits with N JAX worker processes, optionally inject a fault, "
        "check that no update was lost or applied twice, and stop the cluster.",
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--sync", choices=("bsp", "ssp", "async"), default="bsp", help="sync mode")
    parser.add_argument("--staleness", type=int, default=2, help="SSP staleness bound (default 2)")
    parser.add_argument("--steps", type=int, default=300, help="steps per worker (default 300)")
    parser.add_argument("--batch-size", type=int, default=64, help="global batch (default 64)")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="adam", help="default adam")
    parser.add_argument("--learning-rate", type=float, default=1e-2, help="default 0.01")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fault", choices=_FAULTS, default="none", help="what to kill -9 mid-run")
    parser.add_argument("--fault-step", type=int, default=0, help="step to inject it at (default: half way)")
    parser.add_argument("--groups", type=int, default=2, help="store groups (default 2)")
    parser.add_argument("--replicas", type=int, default=3, help="store replicas per group (default 3)")
    parser.add_argument("--fsync", choices=("always", "batch", "never"), default="batch")
    parser.add_argument("--dir", type=Path, help="cluster data directory (default: a fresh temporary one)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


@dataclass
class _Run:
    """What the workers reported, gathered from their JSON lines."""

    workers: int
    steps: dict[int, int] = field(default_factory=dict)
    losses: dict[int, float] = field(default_factory=dict)
    done: dict[int, dict[str, Any]] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)

    @property
    def slowest_step(self) -> int:
        return min((self.steps.get(i, 0) for i in range(self.workers)), default=0)

    @property
    def loss(self) -> float:
        return sum(self.losses.values()) / max(1, len(self.losses))


def _validate(args: argparse.Namespace) -> str | None:
    if not 1 <= args.workers <= 16:
        return f"--workers must be 1 to 16, got {args.workers}"
    if not 1 <= args.steps <= 100_000:
        return f"--steps must be 1 to 100000, got {args.steps}"
    if args.batch_size < args.workers or args.batch_size % args.workers:
        return f"--batch-size must be a multiple of --workers ({args.workers}), got {args.batch_size}"
    if args.batch_size > 1024:
        return f"--batch-size must be at most 1024, got {args.batch_size}"
    if not 0 < args.learning_rate <= 10:
        return f"--learning-rate must be in (0, 10], got {args.learning_rate}"
    if args.staleness < 0:
        return f"--staleness must be >= 0, got {args.staleness}"
    if not 1 <= args.groups <= 8 or args.replicas not in (1, 3, 5):
        return "--groups must be 1 to 8 and --replicas 1, 3 or 5"
    if args.fault_step < 0 or args.fault_step > args.steps:
        return f"--fault-step must be in [0, --steps], got {args.fault_step}"
    return None


def run(args: argparse.Namespace) -> int:
    problem = _validate(args)
    if problem:
        print(f"paramstore demo: {problem}", file=sys.stderr)
        return 2
    directory = args.dir or Path(tempfile.mkdtemp(prefix="paramstore-demo-"))
    cluster = LocalCluster(
        directory, coordinators=3, groups=args.groups, replicas=args.replicas, fsync=args.fsync
    )
    started = time.monotonic()
    procs: list[subprocess.Popen[str]] = []
    try:
        print(
            f"starting a local cluster in {directory}: 3 coordinators, {args.groups} store groups "
            f"x {args.replicas} replicas",
            file=sys.stderr,
        )
        cluster.start()
        asyncio.run(_ready(cluster))
        cluster.write_cluster_file()
        procs = [_start_worker(cluster, args, index) for index in range(args.workers)]
        outcome = _supervise(cluster, args, procs)
        return _report(cluster, args, outcome, time.monotonic() - started)
    except KeyboardInterrupt:
        print("paramstore demo: interrupted", file=sys.stderr)
        return 130
    except (RuntimeError, TimeoutError, OSError) as exc:
        print(f"paramstore demo: {exc}", file=sys.stderr)
        return 1
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        cluster.stop()
        if args.dir is None:
            shutil.rmtree(directory, ignore_errors=True)


async def _ready(cluster: LocalCluster) -> None:
    await cluster.wait_for_leader(_READY_TIMEOUT_S)
    await cluster.register_groups(_READY_TIMEOUT_S)
    await cluster.wait_for_store_leaders(_READY_TIMEOUT_S)


def _start_worker(cluster: LocalCluster, args: argparse.Namespace, index: int) -> subprocess.Popen[str]:
    command = [
        sys.executable,
        "-m",
        "paramstore.demo._train",
        "--coordinators",
        ",".join(cluster.client_addresses),
        "--index",
        str(index),
        "--workers",
        str(args.workers),
        "--sync",
        args.sync,
        "--staleness",
        str(args.staleness),
        "--steps",
        str(args.steps),
        "--batch-size",
        str(args.batch_size),
        "--optimizer",
        args.optimizer,
        "--learning-rate",
        repr(args.learning_rate),
        "--seed",
        str(args.seed),
    ]
    log = (cluster.directory / "logs" / f"worker-{index}.log").open("w")
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, bufsize=1)


def _read_lines(stream: IO[str], lines: queue.Queue[tuple[int, dict[str, Any] | None]], index: int) -> None:
    for line in stream:
        try:
            lines.put((index, json.loads(line)))
        except ValueError:
            continue
    lines.put((index, None))


@dataclass
class _Outcome:
    run: _Run
    faults: list[str]  # what was done, in order (kills and restarts)
    train_s: float

    @property
    def kills(self) -> int:
        return sum(1 for note in self.faults if "kill -9" in note)


def _supervise(
    cluster: LocalCluster, args: argparse.Namespace, procs: list[subprocess.Popen[str]]
) -> _Outcome:
    """Follow the workers' progress; inject the fault; until every worker ended (bounded)."""
    run = _Run(args.workers)
    lines: queue.Queue[tuple[int, dict[str, Any] | None]] = queue.Queue(maxsize=100_000)
    for index, proc in enumerate(procs):
        assert proc.stdout is not None
        threading.Thread(target=_read_lines, args=(proc.stdout, lines, index), daemon=True).start()
    fault_step = args.fault_step or max(1, args.steps // 2)
    fault = _Fault(cluster, args.fault) if args.fault != "none" else None
    faults: list[str] = []
    bar = tqdm(
        total=args.steps,
        desc=f"training ({args.workers} workers, {args.sync})",
        unit="step",
        disable=args.no_progress,
        file=sys.stderr,
        dynamic_ncols=True,
        mininterval=0.5,
    )
    ended = 0
    first_step_at: float | None = None
    deadline = time.monotonic() + _WORKER_EXIT_S + args.steps * 2.0
    while ended < len(procs):
        if time.monotonic() > deadline:
            raise TimeoutError("the workers did not finish in time")
        try:
            index, event = lines.get(timeout=1.0)
        except queue.Empty:
            continue
        if event is None:
            ended += 1
            continue
        kind = event.get("event")
        if kind == "step":
            first_step_at = first_step_at or time.monotonic()
            run.steps[index] = int(event["step"])
            run.losses[index] = float(event["loss"])
            bar.update(run.slowest_step - bar.n)
            bar.set_postfix(loss=f"{run.loss:.4f}")
        elif kind == "done":
            run.done[index] = event
        elif kind == "error":
            run.errors[index] = str(event.get("error"))
        if fault is not None:
            note = fault.advance(run.slowest_step, fault_step)
            if note:
                faults.append(note)
                bar.write(note, file=sys.stderr)
    if fault is not None:
        note = fault.restart()
        if note:
            faults.append(note)
    bar.close()
    for proc in procs:
        proc.wait(timeout=_WORKER_EXIT_S)
    return _Outcome(run, faults, time.monotonic() - (first_step_at or time.monotonic()))


class _Fault:
    """kill -9 one leader at the fault step, restart it 20% of the run later (or at the end)."""

    def __init__(self, cluster: LocalCluster, kind: str) -> None:
        self.cluster = cluster
        self.kind = kind
        self.killed: tuple[str, Any] | None = None
        self.killed_at = 0
        self.restarted = False

    def advance(self, step: int, fault_step: int) -> str | None:
        if self.killed is None and step >= fault_step:
            return self._kill(step)
        if self.killed is not None and not self.restarted and step >= self.killed_at + 20:
            return self.restart()
        return None

    def _kill(self, step: int) -> str:
        self.killed_at = step
        if self.kind == "kill-store-leader":
            group = 1
            leader = asyncio.run(self.cluster.wait_for_store_leaders(10.0))[group]
            process = self.cluster.store_processes[(group, leader)]
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
            self.killed = ("store", (group, leader))
            return f"step {step}: kill -9 store group {group}'s leader (node {leader}, pid {process.pid})"
        leader = asyncio.run(self.cluster.wait_for_leader(10.0))
        pid = self.cluster.processes[leader].pid
        self.cluster.kill(leader)
        self.killed = ("coordinator", leader)
        return f"step {step}: kill -9 the coordinator leader (node {leader}, pid {pid})"

    def restart(self) -> str | None:
        if self.killed is None or self.restarted:
            return None
        self.restarted = True
        role, which = self.killed
        if role == "store":
            group, node = which
            self.cluster.start_store(group, node)
            return f"restarted store {group}-{node} (it catches up from its WAL and the leader)"
        self.cluster.start_node(which)
        return f"restarted coordinator {which}"


def _report(cluster: LocalCluster, args: argparse.Namespace, outcome: _Outcome, elapsed_s: float) -> int:
    from paramstore.demo._check import check_run

    run = outcome.run
    for index, error in sorted(run.errors.items()):
        print(f"worker {index} failed: {error}", file=sys.stderr)
    finished = len(run.done) == args.workers and not run.errors
    if not finished:
        print(
            f"accuracy=nan steps={run.slowest_step} workers={args.workers} sync={args.sync} "
            f"lost_updates=unknown faults={outcome.kills} result=FAILED (a worker did not finish)"
        )
        return 1
    acked = sum(int(done["pushes"]) for done in run.done.values())
    check = asyncio.run(check_run(cluster, args, acked))
    blocked = sum(float(d["blocked_s"]) for d in run.done.values()) / args.workers
    steps_per_s = args.steps / max(outcome.train_s, 1e-9)
    print(
        f"trained {args.steps} steps x {args.workers} workers in {outcome.train_s:.1f} s "
        f"({steps_per_s:.1f} steps/s); a worker was blocked on the parameter server "
        f"{1000 * blocked / args.steps:.1f} ms per step",
        file=sys.stderr,
    )
    for line in check.details:
        print(line, file=sys.stderr)
    ok = check.lost == 0 and check.duplicated == 0 and check.weights_match
    diff = "" if check.max_weight_diff is None else f" max_weight_diff={check.max_weight_diff:.2e}"
    print(
        f"accuracy={check.accuracy:.4f} steps={args.steps} workers={args.workers} sync={args.sync} "
        f"lost_updates={check.lost} duplicate_updates={check.duplicated} faults={outcome.kills}"
        f"{diff} steps_per_s={steps_per_s:.1f} elapsed_s={elapsed_s:.1f} result={'OK' if ok else 'FAILED'}"
    )
    return 0 if ok else 1
