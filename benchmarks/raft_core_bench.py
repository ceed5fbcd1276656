"""Throughput of the pure Raft core: 3 nodes in one process, no faults, no I/O.

What it measures: committed entries per second (an entry counts once it is applied on all
three nodes) when a client proposes in batches of B entries of S bytes, and the cost per
entry in microseconds of CPU (all three nodes together). Messages are handed from one
core to another in memory, exactly as the driver would after persisting, so this is the
ceiling the algorithm itself puts on a Raft group before disks and networks.

Every figure is the median [min-max] of ``--reps`` repetitions; each repetition is
bounded by ``--entries`` and by ``--seconds``.

    python benchmarks/raft_core_bench.py            # default grid
    python benchmarks/raft_core_bench.py --batch 1000 --size 16 --reps 5
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import time

from consensus.config import RaftConfig
from consensus.core import RaftCore
from consensus.messages import ConfState, RestoredState, Role

TARGET_ENTRIES_PER_SECOND = 100_000


class InProcessGroup:
    """Three cores wired together; ``pump`` runs Ready/advance until nothing is left to do."""

    def __init__(self, entries_per_append_max: int) -> None:
        conf = ConfState((1, 2, 3))
        self.cores = {
            i: RaftCore(
                RaftConfig(i, conf, entries_per_append_max=entries_per_append_max),
                RestoredState(),
                random.Random(i),
            )
            for i in (1, 2, 3)
        }
        self.applied = dict.fromkeys(self.cores, 0)

    def pump(self, rounds_max: int = 10_000) -> None:
        for _ in range(rounds_max):
            moved = False
            for node_id, core in self.cores.items():
                if not core.has_ready():
                    continue
                rd = core.ready()
                messages = rd.messages
                if rd.committed_entries:
                    self.applied[node_id] = rd.committed_entries[-1].index
                core.advance(rd)
                for msg in messages:
                    self.cores[msg.recipient].step(msg)
                moved = True
            if not moved:
                return
        raise RuntimeError(f"group did not go quiet within {rounds_max} rounds")

    def elect(self, ticks_max: int = 1000) -> RaftCore:
        for _ in range(ticks_max):
            for core in self.cores.values():
                core.tick()
            self.pump()
            leaders = [c for c in self.cores.values() if c.role == Role.LEADER]
            if leaders:
                return leaders[0]
        raise RuntimeError("no leader elected")


def run_once(batch: int, size: int, entries: int, seconds: float) -> tuple[float, float]:
    """Returns (committed entries per second, CPU microseconds per entry)."""
    group = InProcessGroup(entries_per_append_max=max(batch, 64))
    leader = group.elect()
    payload = [bytes(size)] * batch
    start_index = leader.log.last_index
    wall_start = time.perf_counter()
    cpu_start = time.process_time()
    proposed = 0
    while proposed < entries and time.perf_counter() - wall_start < seconds:
        leader.propose_batch(payload)
        proposed += batch
        group.pump()
    wall = time.perf_counter() - wall_start
    cpu = time.process_time() - cpu_start
    committed = min(group.applied.values()) - start_index
    if committed != proposed:
        raise RuntimeError(f"only {committed} of {proposed} entries were applied on every node")
    return committed / wall, cpu / committed * 1e6


def machine_description() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} cpu {model}, python {platform.python_version()}"


def describe(values: list[float], fmt: str) -> str:
    return f"{statistics.median(values):{fmt}} [{min(values):{fmt}}-{max(values):{fmt}}]"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--batch", type=int, nargs="*", default=[1, 10, 100, 1000], help="entries per proposal"
    )
    parser.add_argument("--size", type=int, nargs="*", default=[16, 256], help="bytes per entry")
    parser.add_argument("--entries", type=int, default=200_000, help="entries per repetition (upper bound)")
    parser.add_argument("--seconds", type=float, default=5.0, help="time per repetition (upper bound)")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    for name in ("entries", "reps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    if any(b < 1 for b in args.batch) or any(s < 0 for s in args.size):
        parser.error("--batch values must be >= 1 and --size values >= 0")

    print(f"machine: {machine_description()}")
    print("Raft core, 3 nodes in one process, no faults; median [min-max] of", args.reps, "reps")
    print(f"{'batch':>6} {'bytes':>6} {'committed entries/s':>30} {'CPU us/entry':>24}")
    best = 0.0
    for size in args.size:
        for batch in args.batch:
            entries = min(args.entries, max(batch * 50, 2000)) if batch < 10 else args.entries
            rates, costs = [], []
            for _ in range(args.reps):
                rate, cost = run_once(batch, size, entries, args.seconds)
                rates.append(rate)
                costs.append(cost)
            best = max(best, statistics.median(rates))
            print(f"{batch:>6} {size:>6} {describe(rates, ',.0f'):>30} {describe(costs, '.2f'):>24}")
    verdict = "meets" if best >= TARGET_ENTRIES_PER_SECOND else "misses"
    print(
        f"best median {best:,.0f} entries/s {verdict} the target of {TARGET_ENTRIES_PER_SECOND:,} entries/s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
