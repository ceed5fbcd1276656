"""Push / pull throughput and the update loop of paramstore, side by side with the peers.

What it measures, on a ``LocalCluster`` of 3 coordinators and 1 store group of 3 replicas
(``--fsync batch``), all on 127.0.0.1:

* push MB/s of a ``--model-mb`` MiB float32 model (4 leaves, 16 shards) with 1 and 4 clients:
  each client pushes the full gradient (one ``StoreClient.push``) again and again;
* pull MB/s of the same model with 1 and 4 clients (``StoreClient.pull`` of every leaf);
* the update loop of a 16 MiB model with 2 workers: one update = push a full gradient + pull
  the full weights; updates/s summed over the workers.

Every client is its own process (this script with ``--worker``), so that clients do not share
a GIL; the workers start together at a wall-clock instant the parent gives them. A rep ends
after ``--duration`` seconds or ``--iterations`` operations per client, whichever comes
first; figures are the median [min-max] of ``--reps`` reps, after one unreported warm-up op
per client. MB = 10^6 B of float32 payload (pushes and pulls count the model once per op;
the update loop counts push + pull, as the Ray peer does). Gradient arrays are allocated
once per worker and reused.

The cluster runs twice: "default", with nothing set in the environment (what a user gets:
the store daemons raise glibc's mmap and trim thresholds themselves, see
``paramstore/_malloc_tuning.py``, and each client worker makes the one opt-in call a user
makes, ``keep_freed_buffers_for_reuse()``; coordinators keep glibc's defaults), and "tuned", with
``MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=4294967296`` in the environment
of every paramstore process (coordinators, stores and client workers).

Peers (``/work/shared/peers``, run as subprocesses with the peer venv, one after the other,
short options, their output parsed): grpc_bench.py (raw grpcio ceiling), grpc_ps_ceiling.py
(grpcio parameter-server analogue), redis_bench.py (SET / GET / SET + WAIT 16 MiB) and
ray_ps.py (Ray's parameter-server pattern). ``--skip-peers`` skips them and the ratios use
the figures of ``/work/shared/peers/RESULTS.md`` instead (marked as such).
``benchmarks/replication_ceiling.py`` runs in every case: raw grpcio pushing the same
payload through a leader to two followers with no Raft and no disk, the ceiling of any
grpcio design that replicates 3 ways on these cores; push is also reported against it.

    .venv/bin/python benchmarks/store_bench.py
    .venv/bin/python benchmarks/store_bench.py --reps 3 --duration 3 --skip-peers
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from paramstore.client import StoreClient, keep_freed_buffers_for_reuse
from paramstore.commands._up import LocalCluster
from paramstore.coordinator import LeafSpec, ModelSpec, SyncMode

PEERS_DIR = Path(os.environ.get("PEERS_DIR", "/work/shared/peers"))
PEERS_PYTHON = Path(os.environ.get("PEERS_VENV", str(Path.home() / "peers-venv"))) / "bin" / "python"
MALLOC_TUNED = {"MALLOC_MMAP_THRESHOLD_": "1073741824", "MALLOC_TRIM_THRESHOLD_": "4294967296"}
LEAF_BYTES = 1 << 20  # 1 MiB leaves, so that a gradient can be pushed in pieces (see below)
NUM_SHARDS = 16
# One log entry holds at most ~16 MiB (RuntimeConfig.entry_bytes_max), and the leader's
# batcher merges concurrent pushes (one per client) into entries of at most 16 MiB. The
# full gradient goes as one StoreClient.push call whose parts are at most
# MERGED_PUSH_BUDGET // clients bytes, so that one part of every client fits one entry.
MERGED_PUSH_BUDGET = 12 << 20
PUSH_PIECE_MAX = 8 << 20
LOOP_MODEL_MB = 16
READY_TIMEOUT_S = 60.0
WORKER_SETUP_S = 4.0  # from spawning workers to their common start instant
PEER_TIMEOUT_S = 120.0

# Figures of /work/shared/peers/RESULTS.md (2026-11-22), used with --skip-peers.
# Measured in every run (it needs no peer venv): benchmarks/replication_ceiling.py.
REPLICATED_CEILING = "grpc 3-replica push ceiling"
RECORDED_PEERS: dict[str, float] = {
    "grpc stream aio": 2096.3,
    "grpc stream sync": 1810.4,
    "grpc unary 1 MiB sync": 1100.7,
    "grpc unary 1 MiB aio": 399.0,
    "grpc ps updates/s": 28.9,
    "redis SET 16 MiB": 364.5,
    "redis GET 16 MiB": 1064.7,
    "redis SET 16 MiB + WAIT": 396.1,
    "ray async updates/s": 45.9,
    "ray sync updates/s": 62.9,
}


# ---- the worker: one client process --------------------------------------------------------------


def model_spec(name: str, model_mb: int) -> ModelSpec:
    elements = LEAF_BYTES // 4
    return ModelSpec.create(
        name,
        [LeafSpec(f"layer{i}/w", (elements,), "float32") for i in range(model_mb * (1 << 20) // LEAF_BYTES)],
        num_shards=NUM_SHARDS,
        optimizer={"name": "sgd", "learning_rate": 0.01},
        sync_mode=SyncMode.ASYNC,  # the Ray peer's async pattern
    )


async def worker_main(args: argparse.Namespace) -> dict[str, Any]:
    # What a worker is told to do (README, ``workers``): opt in to reusing freed big buffers.
    # Where the environment already sets the thresholds ("tuned") this leaves them as they are.
    keep_freed_buffers_for_reuse()
    spec = model_spec(args.model, args.model_mb)
    grads = {leaf.path: np.full(leaf.shape, 1e-4, np.float32) for leaf in spec.leaves}
    payload = sum(g.nbytes for g in grads.values())

    async def push_all() -> None:
        # One call: the client sends it as parts of at most --push-piece-bytes, over its
        # push lanes (two at a time).
        await client.push(args.model, grads)

    async with StoreClient(
        args.coordinators.split(","),
        client_id=args.client_id,
        gradient_dtype=args.gradient_dtype,
        push_bytes_max=args.push_piece_bytes,
    ) as client:

        async def op() -> int:
            if args.op == "push":
                await push_all()
                return payload
            if args.op == "pull":
                weights = await client.pull(args.model)
                return sum(w.nbytes for w in weights.values())
            await push_all()
            weights = await client.pull(args.model)
            return payload + sum(w.nbytes for w in weights.values())

        await op()  # warm-up: routes, channels, first buffers
        delay = args.start_at - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        start = time.time()
        end_by = start + args.duration
        ops = 0
        nbytes = 0
        while ops < args.iterations and time.time() < end_by:
            nbytes += await op()
            ops += 1
        end = time.time()
    return {"ops": ops, "bytes": nbytes, "start": start, "end": end}


# ---- the parent: cluster, cases, peers, table ----------------------------------------------------


@dataclass
class Figure:
    """median [min-max] of the reps, with a unit."""

    values: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def show(self, digits: int = 0) -> str:
        if not self.values:
            return "n/a"
        return f"{self.median:.{digits}f} [{min(self.values):.{digits}f}-{max(self.values):.{digits}f}]"


class BenchCluster(LocalCluster):
    """LocalCluster whose stores get extra flags (``--snapshot-entries``); nothing else changes."""

    def __init__(self, directory: Path, store_args: Sequence[str], **kwargs: Any) -> None:
        super().__init__(directory, **kwargs)
        self.store_extra_args = list(store_args)

    def store_command(self, group: int, node_id: int) -> list[str]:
        return [*super().store_command(group, node_id), *self.store_extra_args]


def start_cluster(directory: Path, env: dict[str, str], store_args: list[str]) -> BenchCluster:
    cluster = BenchCluster(
        directory, store_args, coordinators=3, groups=1, replicas=3, fsync="batch", extra_env=env
    )
    cluster.start()

    async def ready() -> None:
        await cluster.wait_for_leader(READY_TIMEOUT_S)
        await cluster.register_groups(READY_TIMEOUT_S)
        await cluster.wait_for_store_leaders(READY_TIMEOUT_S)

    try:
        asyncio.run(ready())
    except BaseException:
        cluster.stop()
        raise
    return cluster


async def register(cluster: LocalCluster, name: str, model_mb: int) -> None:
    spec = model_spec(name, model_mb)
    values = {leaf.path: np.zeros(leaf.shape, np.float32) for leaf in spec.leaves}
    async with StoreClient(cluster.client_addresses, deadline_s=120.0, attempt_timeout_s=60.0) as client:
        await client.register_model(spec, values)


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_workers(
    cluster: LocalCluster,
    *,
    op: str,
    model: str,
    model_mb: int,
    clients: int,
    duration: float,
    iterations: int,
    env: dict[str, str],
    tag: str,
    gradient_dtype: str = "float32",
) -> dict[str, float]:
    """One rep: ``clients`` worker processes run ``op`` together; aggregate figures."""
    start_at = time.time() + WORKER_SETUP_S
    workers: list[subprocess.Popen[str]] = []
    try:
        for index in range(clients):
            command = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--worker",
                "--op",
                op,
                "--model",
                model,
                "--model-mb",
                str(model_mb),
                "--coordinators",
                ",".join(cluster.client_addresses),
                "--client-id",
                f"bench-{tag}-{op}-{index}-{uuid.uuid4().hex[:8]}",
                "--start-at",
                str(start_at),
                "--duration",
                str(duration),
                "--iterations",
                str(iterations),
                "--push-piece-bytes",
                str(min(PUSH_PIECE_MAX, MERGED_PUSH_BUDGET // clients)),
                "--gradient-dtype",
                gradient_dtype,
            ]
            workers.append(
                subprocess.Popen(
                    command,
                    stdout=subprocess.PIPE,
                    text=True,
                    env={**os.environ, **env},
                )
            )
        results = []
        limit = WORKER_SETUP_S + duration + 120.0
        for worker in workers:
            out, _ = worker.communicate(timeout=limit)
            if worker.returncode != 0:
                raise RuntimeError(f"worker exited with {worker.returncode}")
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    elapsed = max(r["end"] for r in results) - min(r["start"] for r in results)
    ops = sum(r["ops"] for r in results)
    return {"MB/s": sum(r["bytes"] for r in results) / elapsed / 1e6, "ops/s": ops / elapsed, "ops": ops}


@dataclass
class Case:
    label: str
    op: str
    model: str
    model_mb: int
    clients: int
    # The push's element type on the wire (MB/s still counts the float32 parameters moved).
    gradient_dtype: str = "float32"


def measure_paramstore(args: argparse.Namespace, tuned: bool) -> dict[str, Any]:
    env = dict(MALLOC_TUNED) if tuned else {}
    tag = "tuned" if tuned else "default"
    directory = Path(tempfile.mkdtemp(prefix=f"store-bench-{tag}-", dir=args.tmp_dir))
    store_args = ["--snapshot-entries", str(args.snapshot_entries)] if args.snapshot_entries else []
    out: dict[str, Any] = {}
    cluster: BenchCluster | None = None
    try:
        cluster = start_cluster(directory, env, store_args)
        asyncio.run(register(cluster, "big", args.model_mb))
        asyncio.run(register(cluster, "loop", LOOP_MODEL_MB))
        mb = args.model_mb
        cases = [
            Case(f"push {mb} MiB, 1 client", "push", "big", mb, 1),
            Case(f"push {mb} MiB, 4 clients", "push", "big", mb, 4),
            Case(f"push {mb} MiB, 1 client, bfloat16", "push", "big", mb, 1, "bfloat16"),
            Case(f"pull {mb} MiB, 1 client", "pull", "big", mb, 1),
            Case(f"pull {mb} MiB, 4 clients", "pull", "big", mb, 4),
            Case(f"update loop {LOOP_MODEL_MB} MiB, 2 workers", "update", "loop", LOOP_MODEL_MB, 2),
        ]
        for case in cases:
            mbs: list[float] = []
            rates: list[float] = []
            for _ in range(args.reps):
                result = run_workers(
                    cluster,
                    op=case.op,
                    model=case.model,
                    model_mb=case.model_mb,
                    clients=case.clients,
                    duration=args.duration,
                    iterations=args.iterations,
                    env=env,
                    tag=tag,
                    gradient_dtype=case.gradient_dtype,
                )
                mbs.append(result["MB/s"])
                rates.append(result["ops/s"])
            rss = max(rss_mib(p.pid) for p in cluster.store_processes.values())
            out[case.label] = {"MB/s": Figure(mbs), "ops/s": Figure(rates), "store_rss_mib": rss}
            print(
                f"  [{tag}] {case.label:<34} MB/s {Figure(mbs).show():<22} ops/s {Figure(rates).show(1):<20}"
                f" store RSS max {rss:.0f} MiB",
                flush=True,
            )
    finally:
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)
    return out


# ---- peers ---------------------------------------------------------------------------------------

_MEDIAN = r"([\d.]+) \[([\d.]+)-([\d.]+)\]"


def run_peer(script: str, options: Sequence[str]) -> str:
    """Run one peer script in its own process group; its stdout (killed at the bound)."""
    command = [str(PEERS_PYTHON), str(PEERS_DIR / script), *options]
    print(f"  peer: {' '.join(command)}", flush=True)
    process = subprocess.Popen(
        command,
        cwd=PEERS_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = process.communicate(timeout=PEER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGTERM)
        out, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return out


def parse_peers(args: argparse.Namespace) -> tuple[dict[str, Figure], list[str]]:
    figures: dict[str, Figure] = {}
    raw: list[str] = []

    def grab(key: str, pattern: str, text: str) -> None:
        match = re.search(pattern + r".*?" + _MEDIAN, text, re.M)
        if match:
            figures[key] = Figure([float(match.group(i)) for i in (1, 2, 3)])  # median, min, max

    reps = str(args.reps)
    out = run_peer("grpc_bench.py", ["--mode", "both", "--reps", reps, "--duration", str(args.peer_duration)])
    raw.append(out)
    for mode in ("sync", "aio"):
        lines = [line for line in out.splitlines() if line.startswith(f"[{mode}]")]
        text = "\n".join(lines)
        grab(f"grpc stream {mode}", r"client-stream 1 MiB chunks.*?MB/s\s+", text)
        grab(f"grpc unary 1 MiB {mode}", r"unary raw 1 MiB\s+c=1.*?MB/s\s+", text)
    out = run_peer("grpc_ps_ceiling.py", ["--reps", reps, "--duration", "2", "--workers", "2"])
    raw.append(out)
    grab("grpc ps updates/s", r"updates/s\s+", out)
    out = run_peer("redis_bench.py", ["--reps", reps, "--duration", str(args.peer_duration)])
    raw.append(out)
    grab("redis SET 16 MiB", r"\[nopersist\] SET 16 MiB.*?MB/s\s+", out)
    grab("redis GET 16 MiB", r"\[nopersist\] GET 16 MiB\s+ops/s.*?MB/s\s+", out)
    grab("redis SET 16 MiB + WAIT", r"\[replica\] SET 16 MiB \+ WAIT.*?MB/s\s+", out)
    out = run_peer("ray_ps.py", ["--reps", reps, "--duration", "2"])
    raw.append(out)
    grab("ray async updates/s", r"^async.*?updates/s\s+", out)
    grab("ray sync updates/s", r"sync  \(driver.*?updates/s\s+", out)
    return figures, raw


def replication_ceiling(args: argparse.Namespace) -> Figure | None:
    """benchmarks/replication_ceiling.py (raw grpcio through 3 replicas, no Raft, no disk),
    with the same push size: what any grpcio design that replicates 3 ways could reach here."""
    command = [
        sys.executable,
        str(Path(__file__).resolve().parent / "replication_ceiling.py"),
        "--reps",
        str(args.reps),
        "--duration",
        str(args.duration),
        "--push-mb",
        str(args.model_mb),
    ]
    print(f"  ceiling: {' '.join(command)}", flush=True)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=PEER_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return None
    match = re.search(r"\): ([\d,.]+) \[([\d,.]+)-([\d,.]+)\] MB/s", done.stdout)
    if match is None:
        print(f"  ceiling: no figure (exit {done.returncode}): {done.stdout[-300:]}", file=sys.stderr)
        return None
    return Figure([float(match.group(i).replace(",", "")) for i in (1, 2, 3)])


# ---- report --------------------------------------------------------------------------------------


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import grpc

    return (
        f"nproc {os.cpu_count()}, {model}, Python {platform.python_version()}, grpcio {grpc.__version__}, "
        f"numpy {np.__version__}, {platform.platform()}"
    )


def report(
    args: argparse.Namespace, ps: dict[str, dict[str, Any]], peers: dict[str, Figure], live: bool
) -> None:
    source = "measured in this run" if live else "RESULTS.md, not measured in this run"

    def peer(key: str) -> float | None:
        if key in peers:
            return peers[key].median
        return None if live else RECORDED_PEERS.get(key)

    ceiling_candidates = [v for v in (peer("grpc stream aio"), peer("grpc stream sync")) if v]
    ceiling = max(ceiling_candidates) if ceiling_candidates else None
    mb = args.model_mb
    print()
    print(f"machine: {machine()}")
    print(
        f"paramstore: 3 coordinators + 1 store group x 3 replicas, fsync=batch, {args.reps} reps x "
        f"{args.duration:g} s (or {args.iterations} ops per client); MB = 1e6 B; median [min-max]"
    )
    print(f"peers: {source}")
    print()
    print("| peer | figure |")
    print("|---|---|")
    for key in RECORDED_PEERS:
        shown = (
            peers[key].show(1)
            if key in peers
            else (f"{RECORDED_PEERS[key]} (RESULTS.md)" if not live else "n/a")
        )
        unit = "" if "updates/s" in key else " MB/s"
        print(f"| {key} | {shown}{unit} |")
    print()
    print("| case | default malloc | malloc tuned | tuned / raw-gRPC stream ceiling | tuned vs peer |")
    print("|---|---|---|---|---|")

    def ratio(value: float, other: float | None) -> str:
        return f"{value / other:.2f}x" if other else "n/a"

    def row(label: str, unit: str, versus: str, other: float | None, ceiling_ratio: bool = True) -> None:
        cells = []
        for tag in ("default", "tuned"):
            figure = ps.get(tag, {}).get(label, {}).get(unit)
            cells.append(f"{figure.show(0 if unit == 'MB/s' else 1)} {unit}" if figure else "n/a")
        best = ps.get("tuned", {}).get(label, {}).get(unit) or ps.get("default", {}).get(label, {}).get(unit)
        value = best.median if best else 0.0
        to_ceiling = ratio(value, ceiling) if (ceiling_ratio and best) else "-"
        print(f"| {label} | {cells[0]} | {cells[1]} | {to_ceiling} | {versus}: {ratio(value, other)} |")

    row(f"push {mb} MiB, 1 client", "MB/s", "Redis SET+WAIT 16 MiB", peer("redis SET 16 MiB + WAIT"))
    row(f"push {mb} MiB, 4 clients", "MB/s", "Redis SET+WAIT 16 MiB", peer("redis SET 16 MiB + WAIT"))
    row(
        f"push {mb} MiB, 1 client, bfloat16", "MB/s", "Redis SET+WAIT 16 MiB", peer("redis SET 16 MiB + WAIT")
    )
    row(f"pull {mb} MiB, 1 client", "MB/s", "Redis GET 16 MiB", peer("redis GET 16 MiB"))
    row(f"pull {mb} MiB, 4 clients", "MB/s", "Redis GET 16 MiB", peer("redis GET 16 MiB"))
    loop = f"update loop {LOOP_MODEL_MB} MiB, 2 workers"
    row(loop, "ops/s", "Ray async", peer("ray async updates/s"), ceiling_ratio=False)
    row(loop, "ops/s", "Ray sync", peer("ray sync updates/s"), ceiling_ratio=False)
    row(loop, "ops/s", "grpcio PS analogue (unreplicated)", peer("grpc ps updates/s"), ceiling_ratio=False)

    def best_of(label: str, unit: str) -> float:
        figures = [ps[t][label][unit].median for t in ("default", "tuned") if t in ps and label in ps[t]]
        return max(figures) if figures else 0.0

    replicated = peers.get(REPLICATED_CEILING)
    if replicated is not None:
        print(f"| {REPLICATED_CEILING} (benchmarks/replication_ceiling.py) | {replicated.show(0)} MB/s |")
        for label in (f"push {mb} MiB, 1 client", f"push {mb} MiB, 4 clients"):
            figure = ps.get("tuned", {}).get(label, {}).get("MB/s") or ps.get("default", {}).get(
                label, {}
            ).get("MB/s")
            if figure is not None:
                print(f"{label} / 3-replica ceiling: {figure.median / replicated.median:.2f}x")
    print()
    print(f"raw-gRPC streaming ceiling used: {ceiling:.0f} MB/s" if ceiling else "no raw-gRPC ceiling")
    pull = max(best_of(f"pull {mb} MiB, 1 client", "MB/s"), best_of(f"pull {mb} MiB, 4 clients", "MB/s"))
    push = max(best_of(f"push {mb} MiB, 1 client", "MB/s"), best_of(f"push {mb} MiB, 4 clients", "MB/s"))
    updates = best_of(loop, "ops/s")
    wait = peer("redis SET 16 MiB + WAIT")
    ray = peer("ray async updates/s")
    grpc_ps = peer("grpc ps updates/s")
    checks = [
        ("pull >= 50% of the raw streaming ceiling", pull, 0.5 * ceiling if ceiling else None),
        ("replicated push >= 25% of the ceiling", push, 0.25 * ceiling if ceiling else None),
        ("replicated push ahead of Redis SET + WAIT", push, wait),
        ("16 MiB / 2-worker loop >= 0.5x Ray async", updates, 0.5 * ray if ray else None),
    ]
    print("targets (best of default / tuned):")
    for text, value, bound in checks:
        verdict = "n/a" if bound is None else ("MET" if value >= bound else "NOT MET")
        shown_bound = f"{bound:.1f}" if bound is not None else "n/a"
        print(f"  {text:<45} {value:8.1f} vs {shown_bound:>8}  {verdict}")
    if grpc_ps:
        print(
            f"  (grpcio PS analogue, unreplicated: {grpc_ps:.1f} updates/s;"
            f" paramstore / it = {updates / grpc_ps:.2f}x)"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per rep (default 3)")
    parser.add_argument("--iterations", type=int, default=1000, help="ops per client per rep at most")
    parser.add_argument("--model-mb", type=int, default=64, help="model size in MiB (default 64)")
    parser.add_argument("--skip-peers", action="store_true", help="use RESULTS.md figures for the peers")
    parser.add_argument("--peer-duration", type=float, default=0.6, help="seconds per peer rep (default 0.6)")
    parser.add_argument("--malloc", choices=["both", "default", "tuned"], default="both")
    parser.add_argument(
        "--snapshot-entries",
        type=int,
        default=0,
        help="pass --snapshot-entries N to the stores (default: theirs)",
    )
    parser.add_argument("--tmp-dir", default=None, help="where the cluster's data dirs go (default: $TMPDIR)")
    # worker mode (internal)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--op", choices=["push", "pull", "update"], help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--coordinators", help=argparse.SUPPRESS)
    parser.add_argument("--client-id", help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--push-piece-bytes", type=int, default=PUSH_PIECE_MAX, help=argparse.SUPPRESS)
    parser.add_argument("--gradient-dtype", default="float32", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(asyncio.run(worker_main(args))), flush=True)
        return 0
    if args.reps < 1 or args.duration <= 0 or args.iterations < 1 or args.model_mb < 1:
        parser.error("--reps, --duration, --iterations and --model-mb must be positive")
    print(
        f"store_bench: model {args.model_mb} MiB, reps {args.reps}, {args.duration:g} s per rep", flush=True
    )
    ps: dict[str, dict[str, Any]] = {}
    for tag in ("default", "tuned"):
        if args.malloc in ("both", tag):
            ps[tag] = measure_paramstore(args, tuned=tag == "tuned")
    peers: dict[str, Figure] = {}
    if not args.skip_peers:
        if not PEERS_PYTHON.exists():
            print(f"no peer venv at {PEERS_PYTHON}: run bash {PEERS_DIR / 'setup.sh'}", file=sys.stderr)
        else:
            peers, _ = parse_peers(args)
    ceiling = replication_ceiling(args)
    if ceiling is not None:
        peers[REPLICATED_CEILING] = ceiling
    report(args, ps, peers, live=not args.skip_peers)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
