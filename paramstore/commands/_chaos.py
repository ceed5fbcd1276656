"""``paramstore chaos``: attack a local cluster of real processes and get a verdict.

It starts a local cluster (3 coordinators, 2 store groups x 3 replicas), runs the workload
(pushes whose gradients reveal which pushes every pull contains, pulls, and key/value reads,
writes and compare-and-sets) while a seeded schedule of nemeses strikes, heals everything,
checks the history (exactly-once pushes, real-time order of pulls, final state,
linearizability of the key/value operations, convergence of the replicas) and writes a
report directory (history.jsonl, plots, report.html, the cluster's logs).

The exit status is 0 only when every checker passes; the last line reads
``operations=N faults=F violations=V result=OK|FAILED report=PATH``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "run"]

# Kept here (the chaos package imports matplotlib, which the CLI should not pay for).
_NEMESES = ("kill", "pause", "leader", "partition", "isolate-leader", "links")


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "chaos",
        help="inject faults into a local cluster under load and check the history",
        description="Start a local cluster, run pushes/pulls and key/value operations while seeded "
        "faults strike, then check that nothing was lost, doubled or read stale.",
    )
    parser.add_argument(
        "--duration", type=float, default=30.0, help="seconds of faults and load (default 30)"
    )
    parser.add_argument("--seed", type=int, default=1, help="the fault schedule's seed (default 1)")
    parser.add_argument(
        "--nemesis",
        default=",".join(_NEMESES),
        help=f"comma-separated, of {','.join(_NEMESES)} (default: all); 'none' for no faults",
    )
    parser.add_argument("--fault-s", type=float, default=3.0, help="how long each fault lasts (default 3)")
    parser.add_argument("--gap-s", type=float, default=2.0, help="quiet time between faults (default 2)")
    parser.add_argument("--groups", type=int, default=2, help="store groups (default 2)")
    parser.add_argument("--push-clients", type=int, default=3)
    parser.add_argument("--pull-clients", type=int, default=1)
    parser.add_argument("--kv-clients", type=int, default=2)
    parser.add_argument("--fsync", choices=("always", "batch", "never"), default="batch")
    parser.add_argument(
        "--dir", type=Path, help="where the cluster and the report go (default: a new temp dir)"
    )


def _validate(args: argparse.Namespace) -> tuple[str, ...] | str:
    if not 1 <= args.duration <= 24 * 3600:
        return f"--duration must be 1 to 86400 s, got {args.duration}"
    if not 0.5 <= args.fault_s <= 600 or not 0.1 <= args.gap_s <= 600:
        return "--fault-s must be 0.5 to 600 and --gap-s 0.1 to 600"
    if not 1 <= args.groups <= 8:
        return f"--groups must be 1 to 8, got {args.groups}"
    for name in ("push_clients", "pull_clients", "kv_clients"):
        if not 0 <= getattr(args, name) <= 32:
            return f"--{name.replace('_', '-')} must be 0 to 32"
    nemeses = tuple(n.strip() for n in args.nemesis.split(",") if n.strip() and n.strip() != "none")
    unknown = sorted(set(nemeses) - set(_NEMESES))
    if unknown:
        return f"--nemesis: unknown {', '.join(unknown)}; expected some of {', '.join(_NEMESES)} or none"
    return nemeses


def run(args: argparse.Namespace) -> int:
    nemeses = _validate(args)
    if isinstance(nemeses, str):
        print(f"paramstore chaos: {nemeses}", file=sys.stderr)
        return 2
    from paramstore.chaos import ChaosConfig, WorkloadConfig, run_chaos

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    directory = args.dir or Path(tempfile.mkdtemp(prefix="paramstore-chaos-"))
    config = ChaosConfig(
        directory=directory,
        duration_s=args.duration,
        seed=args.seed,
        nemeses=nemeses,
        fault_s=args.fault_s,
        gap_s=args.gap_s,
        groups=args.groups,
        fsync=args.fsync,
        workload=WorkloadConfig(
            push_clients=args.push_clients, pull_clients=args.pull_clients, kv_clients=args.kv_clients
        ),
    )
    print(
        f"chaos run in {directory}: seed {args.seed}, {args.duration:g} s, "
        f"nemeses {','.join(nemeses) or 'none'}",
        file=sys.stderr,
    )
    try:
        outcome = asyncio.run(run_chaos(config))
    except KeyboardInterrupt:
        print("paramstore chaos: interrupted", file=sys.stderr)
        return 130
    except (RuntimeError, TimeoutError, OSError) as exc:
        print(f"paramstore chaos: {exc}", file=sys.stderr)
        return 1
    for verdict in outcome.verdicts:
        state = {True: "PASS", False: "FAIL", None: "UNKNOWN"}[verdict.ok]
        print(f"{state:8} {verdict.name}: {verdict.summary}", file=sys.stderr)
        for violation in verdict.violations[:5]:
            print(
                f"         - {violation.description} (ops {list(violation.op_indexes)[:6]})", file=sys.stderr
            )
    print(
        f"operations={outcome.operations} faults={outcome.faults} violations={outcome.violations} "
        f"result={'OK' if outcome.ok else 'FAILED'} report={outcome.report}"
    )
    return 0 if outcome.ok else 1
