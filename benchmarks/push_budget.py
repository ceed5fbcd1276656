"""The CPU a 3-replica push needs at the least, per MB, and the throughput that leaves on this machine.

``replication_ceiling.py`` measures raw grpcio moving a push over three hops and nothing
else. A store group must also, on each of its three replicas, write the gradient to its
WAL (checksum, ``O_DIRECT`` write, fsync batch) and apply it to the weights, and now and
then snapshot the weights. This script measures each of those parts with paramstore's own
code, one at a time in one process (``time.process_time``: user + system CPU of the
process), and adds them up:

* **forwarding**: the 3-hop grpcio chain of ``replication_ceiling.py``, the CPU of all
  four processes (client, leader, two followers) from ``/proc`` over the timed window;
* **WAL append**: ``NodeStorage`` with the store's settings (``fsync batch``, direct
  writes, 16 MiB records) taking ``--entry-mb`` MiB entries, ``--ready-mb`` MiB per ready,
  one sync per ready, as a replica under push does;
* **SGD apply**: ``paramstore.optim.sgd`` on float32 weights of ``--model-mb`` MiB;
  with ``--wire bfloat16`` the gradients are bfloat16 (half the bytes forwarded and
  logged, upcast to float32 in the apply), all figures still per MB of float32 weights;
* **snapshot**: ``NodeStorage.save_snapshot`` of a ``--model-mb`` MiB state, amortized
  over the 256 MiB of log a store writes between two snapshots (its serialization, a copy
  of the weights, is left out: this is a floor).

Parsing, copies between them and asyncio are left out as well, so the sum is a floor of
paramstore's design in Python on grpcio, not of paramstore as it is. On a machine whose
cores all push, the floor gives the most MB/s it could reach: cores x 1,000 / (ms per MB).
Every part is bounded by ``--total-mb`` MiB (or ``--reps`` reps of the forwarding chain).

    .venv/bin/python benchmarks/push_budget.py
    .venv/bin/python benchmarks/push_budget.py --model-mb 16 --reps 1
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import ml_dtypes
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import replication_ceiling

from consensus.messages import ConfState, Entry, EntryKind, HardState, Ready, Snapshot, SnapshotMeta
from consensus.storage import FsyncPolicy, NodeStorage, StorageConfig
from paramstore.optim import sgd
from paramstore.server import ReplicaOptions

_MIB = 1 << 20
_MB = 1e6
_REPLICAS = 3
# A store replica snapshots its state machine after this much log (and compacts below it).
_SNAPSHOT_EVERY = {f.name: f.default for f in dataclasses.fields(ReplicaOptions)}["snapshot_every_bytes"]
assert isinstance(_SNAPSHOT_EVERY, int)
_LOG_BYTES_PER_SNAPSHOT = _SNAPSHOT_EVERY


def _cpu_ms_per_mb(cpu_s: float, nbytes: int) -> float:
    return cpu_s * 1000.0 / (nbytes / _MB)


def wal_append_ms_per_mb(directory: Path, entry_mb: int, ready_mb: int, total_mb: int) -> float:
    """CPU of one replica's WAL per MB of entries, as a store writes it."""
    config = StorageConfig(fsync=FsyncPolicy.BATCH, direct_writes=True)
    storage = NodeStorage.open(directory, cluster_id="push-budget", node_id=1, config=config)
    payload = os.urandom(entry_mb * _MIB)
    per_ready = max(1, ready_mb // entry_mb)
    index = 0
    written = 0
    cpu = 0.0
    try:
        while written < total_mb * _MIB:
            entries = []
            for _ in range(per_ready):
                index += 1
                entries.append(Entry(1, index, EntryKind.NORMAL, payload))
            began = time.process_time()
            storage.save_ready(Ready(entries=entries, hard_state=HardState(1, 1, index)))
            storage.sync()
            cpu += time.process_time() - began
            written += per_ready * len(payload)
            if written % _LOG_BYTES_PER_SNAPSHOT < per_ready * len(payload):
                # Compact where a store would (segments are recycled, not grown); not timed.
                storage.save_snapshot(Snapshot(SnapshotMeta(index, 1, ConfState((1,))), b"state"))
                storage.compact(index)
    finally:
        storage.close()
    return _cpu_ms_per_mb(cpu, written)


def snapshot_ms_per_mb_of_log(directory: Path, model_mb: int, snapshots: int) -> float:
    """CPU of writing a ``model_mb`` state snapshot, per MB of log between two snapshots."""
    config = StorageConfig(fsync=FsyncPolicy.BATCH, direct_writes=True)
    storage = NodeStorage.open(directory, cluster_id="push-budget", node_id=1, config=config)
    state = os.urandom(model_mb * _MIB)
    cpu = 0.0
    try:
        for index in range(1, snapshots + 1):
            # A snapshot covers persisted entries only: one tiny entry first, not timed.
            storage.save_ready(
                Ready(entries=[Entry(1, index, EntryKind.NORMAL, b"x")], hard_state=HardState(1, 1, index))
            )
            storage.sync()
            began = time.process_time()
            storage.save_snapshot(Snapshot(SnapshotMeta(index, 1, ConfState((1,))), state))
            cpu += time.process_time() - began
    finally:
        storage.close()
    return _cpu_ms_per_mb(cpu / snapshots, _LOG_BYTES_PER_SNAPSHOT)


def sgd_ms_per_mb(model_mb: int, total_mb: int, wire: str) -> float:
    """CPU of applying gradients (``wire`` dtype) with paramstore's SGD, per MB of float32 weights."""
    optimizer = sgd(0.01)
    weights = np.zeros(model_mb * _MIB // 4, np.float32)
    grads = np.full(weights.shape, 1e-4, ml_dtypes.bfloat16 if wire == "bfloat16" else np.float32)
    optimizer.apply(weights, grads, {}, 0)  # scratch buffers allocated, pages faulted in
    steps = max(1, total_mb // model_mb)
    began = time.process_time()
    for step in range(steps):
        optimizer.apply(weights, grads, {}, step)
    return _cpu_ms_per_mb(time.process_time() - began, steps * weights.nbytes)


def forwarding_ms_per_mb(model_mb: int, reps: int, duration_s: float) -> tuple[float, float]:
    """(MB/s, CPU ms per MB over all four processes) of the raw 3-hop grpcio chain."""
    args = argparse.Namespace(acks=2, clients=1, push_mb=model_mb, duration=duration_s, pushes_max=1000)
    env = dict(os.environ)
    env.update(replication_ceiling.MALLOC_TUNED)
    runs = [replication_ceiling.measure_rep(args, env) for _ in range(reps)]
    return statistics.median(r.mb_per_s for r in runs), statistics.median(r.cpu_ms_per_mb for r in runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-mb", type=int, default=64, help="MiB of float32 weights (default 64)")
    parser.add_argument("--entry-mb", type=int, default=1, help="MiB per log entry (default 1)")
    parser.add_argument("--ready-mb", type=int, default=16, help="MiB of entries per sync (default 16)")
    parser.add_argument("--total-mb", type=int, default=1024, help="MiB per measured part (default 1024)")
    parser.add_argument("--reps", type=int, default=3, help="reps of the forwarding chain (default 3)")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per forwarding rep (default 3)")
    parser.add_argument(
        "--target",
        type=float,
        default=465.0,
        help="MB/s to compare with: 0.25x the host's raw grpcio stream ceiling (default 465, of 1,862)",
    )
    parser.add_argument(
        "--wire",
        choices=("float32", "bfloat16"),
        default="float32",
        help="dtype of the gradients on the wire and in the log (default float32)",
    )
    parser.add_argument("--dir", type=Path, default=None, help="where WAL and snapshots go (default: temp)")
    args = parser.parse_args()
    if min(args.model_mb, args.entry_mb, args.ready_mb, args.total_mb, args.reps) < 1 or args.duration <= 0:
        parser.error("--model-mb, --entry-mb, --ready-mb, --total-mb and --reps >= 1; --duration > 0")
    # Bytes moved and logged per MB of float32 parameters pushed.
    wire_share = 0.5 if args.wire == "bfloat16" else 1.0
    if args.wire == "bfloat16" and args.model_mb % 2:
        parser.error("--wire bfloat16 needs an even --model-mb")
    base = args.dir or Path(tempfile.mkdtemp(prefix="push-budget-"))
    try:
        wal = wal_append_ms_per_mb(base / "wal", args.entry_mb, args.ready_mb, args.total_mb)
        snapshot = snapshot_ms_per_mb_of_log(base / "snap", args.model_mb, snapshots=4)
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)
    wal *= wire_share
    apply = sgd_ms_per_mb(args.model_mb, args.total_mb, args.wire)
    chain_rate, chain = forwarding_ms_per_mb(int(args.model_mb * wire_share), args.reps, args.duration)
    chain *= wire_share
    chain_rate /= wire_share
    cores = os.cpu_count() or 1
    parts = [
        ("forwarding: client -> leader -> 2 followers (raw grpcio, 4 processes)", 1, chain),
        ("WAL append (crc32c, O_DIRECT, fsync batch)", _REPLICAS, wal),
        (f"SGD apply ({args.wire} gradients, float32 weights)", _REPLICAS, apply),
        (f"snapshot of {args.model_mb} MiB per 256 MiB of log", _REPLICAS, snapshot),
    ]
    total = sum(times * ms for _, times, ms in parts)
    print(
        f"CPU per MB of float32 parameters, 3-replica push of a {args.model_mb} MiB model, "
        f"{args.wire} on the wire ({args.entry_mb} MiB entries):"
    )
    for name, times, ms in parts:
        print(f"  {name:<72} {times} x {ms:6.3f} ms = {times * ms:6.3f} ms")
    print(f"  {'floor':<72}         {total:6.3f} ms per MB")
    floor_rate = cores * 1000.0 / total
    print(
        f"most MB/s that floor leaves on {cores} cores: {floor_rate:,.0f} MB/s "
        f"({floor_rate / args.target:.2f}x the {args.target:,.0f} MB/s compared with); "
        f"the forwarding chain alone measured {chain_rate:,.0f} MB/s"
    )
    print(
        f"Machine: nproc {cores}, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}, numpy {np.__version__}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
