"""``python -m consensus.sim``: run many seeded schedules and report violations.

The last line of the output is always the summary
``schedules=N violations=V committed=... elections=... snapshots=... crashes=... reads=...
conf_changes=...``; for every violation the seed, the invariant, the trace tail and the
exact command that replays that one schedule come first.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor

from consensus.sim.faults import FAULT_MIX_NAMES
from consensus.sim.runner import Outcome, ScheduleSpec, run_spec
from consensus.sim.simulation import DEFAULT_STEPS
from consensus.sim.stats import SimStats

_FAILURES_REPORTED_MAX = 5


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m consensus.sim",
        description="Deterministic simulation of a Raft cluster under faults; "
        "invariants are checked after every event.",
    )
    parser.add_argument("--seeds", type=int, default=100, help="number of schedules to run (default 100)")
    parser.add_argument("--start-seed", type=int, default=0, help="first seed (default 0)")
    parser.add_argument("--seed", type=int, default=None, help="run exactly this one seed")
    parser.add_argument(
        "--nodes",
        type=int,
        choices=(1, 3, 5, 7),
        default=None,
        help="voters at the start (default: 3 and 5 alternating by seed)",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=DEFAULT_STEPS,
        help=f"events in the fault phase of each schedule (default {DEFAULT_STEPS})",
    )
    parser.add_argument(
        "--faults",
        choices=FAULT_MIX_NAMES,
        default="all",
        help="fault mix; 'all' draws a different mix per seed (default)",
    )
    parser.add_argument(
        "--membership",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="propose membership changes (add learner, promote, remove)",
    )
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (results do not depend on it)")
    parser.add_argument("--verbose", action="store_true", help="one line per schedule")
    return parser


def _specs(args: argparse.Namespace) -> list[ScheduleSpec]:
    seeds = [args.seed] if args.seed is not None else range(args.start_seed, args.start_seed + args.seeds)
    return [
        ScheduleSpec(
            seed=seed,
            nodes=args.nodes if args.nodes is not None else (3 if seed % 2 == 0 else 5),
            faults=args.faults,
            steps=args.steps,
            membership=args.membership,
        )
        for seed in seeds
    ]


def _outcomes(specs: list[ScheduleSpec], jobs: int) -> Iterator[Outcome]:
    if jobs <= 1 or len(specs) <= 1:
        yield from map(run_spec, specs)
        return
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        yield from pool.map(run_spec, specs, chunksize=8)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.seeds < 1 or args.steps < 0:
        print("--seeds must be >= 1 and --steps >= 0", file=sys.stderr)
        return 2
    specs = _specs(args)
    total = SimStats()
    failures = 0
    for outcome in _outcomes(specs, args.jobs):
        total.add(outcome.stats)
        failure = outcome.failure
        if args.verbose:
            status = f"VIOLATION {failure.invariant}" if failure else "ok"
            print(
                f"seed={outcome.spec.seed} nodes={outcome.spec.nodes} mix={outcome.mix_name} {status} "
                f"{outcome.stats.summary_line(1, int(failure is not None))}",
                flush=True,
            )
        if failure is not None:
            failures += 1
            if failures <= _FAILURES_REPORTED_MAX:
                print(failure.report(), flush=True)
            else:
                print(
                    f"VIOLATION seed={failure.spec.seed} invariant={failure.invariant} "
                    f"reproduce: {failure.spec.command()}",
                    flush=True,
                )
    print(f"faults={args.faults} membership={args.membership} steps={args.steps} {total.detail_line()}")
    print(total.summary_line(len(specs), failures))
    return 1 if failures else 0
