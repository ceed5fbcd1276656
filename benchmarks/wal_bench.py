"""WAL append throughput of a store replica's write pattern, with and without segment recycling.

One ``NodeStorage`` (fsync ``--fsync``, 64 MiB segments) takes one 15 MiB entry at a time,
synced, at the offered rate of a store replica under push (``--interval`` s apart), and every
``--compact-every`` entries saves a (tiny) snapshot and compacts the log, as a store does
every 256 MiB. The figure is MB/s *inside* ``save_ready`` + ``sync`` (the pauses between
entries are not counted): what the WAL costs the node per pushed byte. The pauses matter:
this VM hands memory that has been free for ~3 s back to its host, and writing into such
pages is an order of magnitude slower than writing into pages a file already has.

Each ``--recycled`` value runs one after the other in fresh directories (``--dir``, default
a temporary one), for ``--duration`` s each; the loop is bounded by ``--entries-max``.

    .venv/bin/python benchmarks/wal_bench.py
    .venv/bin/python benchmarks/wal_bench.py --recycled 0,4 --duration 10
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from consensus.messages import ConfState, Entry, EntryKind, HardState, Ready, Snapshot, SnapshotMeta
from consensus.storage import NodeStorage, StorageConfig

_ENTRY_BYTES = 15 * 1024 * 1024  # a full 16 MiB record holds a little less than 16 MiB of entry


def run_once(directory: Path, recycled: int, args: argparse.Namespace, payload: bytes) -> tuple[float, int]:
    """(MB/s inside append + sync, bytes appended) for one pool size."""
    shutil.rmtree(directory, ignore_errors=True)
    config = StorageConfig(fsync=args.fsync, recycled_segments_max=recycled)
    storage = NodeStorage.open(directory, cluster_id="wal-bench", node_id=1, config=config)
    spent = 0.0
    appended = 0
    try:
        end = time.monotonic() + args.duration
        for index in range(1, args.entries_max + 1):
            if time.monotonic() >= end:
                break
            began = time.perf_counter()
            entry = Entry(1, index, EntryKind.NORMAL, payload)
            storage.save_ready(Ready(entries=[entry], hard_state=HardState(1, 1, index)))
            storage.sync()
            spent += time.perf_counter() - began
            appended += len(payload)
            if index % args.compact_every == 0:
                storage.save_snapshot(Snapshot(SnapshotMeta(index, 1, ConfState((1,))), b"state"))
                storage.compact(index)
            time.sleep(args.interval)
    finally:
        storage.close()
        shutil.rmtree(directory, ignore_errors=True)
    return appended / spent / 1e6 if spent else 0.0, appended


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recycled", default="0,2,4", help="pool sizes to compare (default 0,2,4)")
    parser.add_argument("--duration", type=float, default=24.0, help="seconds per pool size (default 24)")
    parser.add_argument("--interval", type=float, default=0.25, help="pause between entries (default 0.25 s)")
    parser.add_argument("--compact-every", type=int, default=16, help="entries per snapshot (default 16)")
    parser.add_argument("--entries-max", type=int, default=10_000, help="entries per pool size at most")
    parser.add_argument("--fsync", choices=("always", "batch", "never"), default="batch")
    parser.add_argument("--dir", type=Path, default=None, help="where the WAL goes (default: a temp dir)")
    args = parser.parse_args()
    try:
        pools = [int(value) for value in args.recycled.split(",") if value.strip()]
    except ValueError:
        parser.error(f"--recycled must be a comma list of integers, got {args.recycled!r}")
    if not pools or min(pools) < 0 or args.duration <= 0 or args.interval < 0 or args.compact_every < 1:
        parser.error("--recycled values >= 0, --duration > 0, --interval >= 0, --compact-every >= 1")
    payload = os.urandom(_ENTRY_BYTES)
    base = args.dir or Path(tempfile.mkdtemp(prefix="wal-bench-"))
    try:
        for recycled in pools:
            rate, appended = run_once(base / f"wal-{recycled}", recycled, args, payload)
            print(
                f"recycled_segments_max={recycled}: {rate:,.0f} MB/s inside append + sync "
                f"({appended >> 20} MiB, fsync {args.fsync})",
                flush=True,
            )
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)
    print(f"Machine: nproc {os.cpu_count()}, {platform.machine()}, Python {platform.python_version()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
