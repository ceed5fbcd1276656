"""``paramstore chaos``: attack a cluster of real processes under load and get a verdict.

It starts a local cluster (3 coordinators, 2 store groups x 3 replicas), or attaches to one
that ``paramstore up --dir DIR`` runs (``--cluster DIR``), runs the workload (pushes whose
gradients reveal which pushes every pull contains, pulls, and key/value reads, writes and
compare-and-sets) while a seeded schedule of nemeses strikes, or the faults of a scripted
timeline (``--timeline FILE.toml``), heals everything, checks the history (exactly-once
pushes, real-time order of pulls, final state, linearizability of the key/value operations,
convergence of the replicas) and writes a report directory (history.jsonl, plots,
report.html, the cluster's logs).

Every option, the timeline and the cluster file are checked before anything starts: a
problem is one line on stderr and exit status 2.

The exit status is 0 only when every checker passes; the last line reads
``operations=N faults=F violations=V result=OK|FAILED report=PATH``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from paramstore.chaos import ScriptedFault

__all__ = ["add_parser", "run"]

# Kept here (the chaos package imports numpy and grpc, which the CLI should not pay for at
# start-up); tests/test_chaos_cli.py checks that it is the package's NEMESES.
_NEMESES = (
    "kill",
    "pause",
    "leader",
    "partition",
    "isolate-leader",
    "links",
    "bridge",
    "majorities-ring",
    "skew",
    "move",
    "power-loss",
    "fsync-fail",
    "membership",
)
_DEFAULT_DURATION_S = 30.0
# Quiet time after a timeline's last fault, so that the run shows the cluster recovering.
_TIMELINE_TAIL_S = 3.0


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "chaos",
        help="inject faults into a cluster under load and check the history",
        description="Start a local cluster (or attach to one `paramstore up` runs), run pushes/pulls "
        "and key/value operations while seeded or scripted faults strike, then check that nothing "
        "was lost, doubled or read stale.",
    )
    parser.add_argument(
        "--duration",
        type=float,
        help=f"seconds of faults and load (default {_DEFAULT_DURATION_S:g}; with --timeline: "
        f"its last fault's end + {_TIMELINE_TAIL_S:g})",
    )
    parser.add_argument("--seed", type=int, default=1, help="the fault schedule's seed (default 1)")
    parser.add_argument(
        "--nemesis",
        "--nemeses",
        dest="nemesis",
        help=f"comma-separated, of {','.join(_NEMESES)} (default: all, power-loss only with "
        "--fsync always; attached: all that kill no process); 'none' for no faults",
    )
    parser.add_argument("--fault-s", type=float, default=3.0, help="how long each fault lasts (default 3)")
    parser.add_argument("--gap-s", type=float, default=2.0, help="quiet time between faults (default 2)")
    parser.add_argument(
        "--timeline",
        type=Path,
        help="a TOML file of [[fault]] tables (at_s, duration_s, nemesis, target, factor) to run "
        "instead of the random schedule",
    )
    parser.add_argument(
        "--cluster",
        type=Path,
        help="attack the running cluster of `paramstore up --dir DIR` (DIR or its cluster.json) "
        "instead of starting one",
    )
    parser.add_argument("--groups", type=int, help="store groups of the local cluster (default 2)")
    parser.add_argument("--push-clients", type=int, default=3)
    parser.add_argument("--pull-clients", type=int, default=1)
    parser.add_argument("--kv-clients", type=int, default=2)
    parser.add_argument(
        "--fsync", choices=("always", "batch", "never"), help="the local cluster's (default batch)"
    )
    parser.add_argument(
        "--dir", type=Path, help="where the cluster and the report go (default: a new temp dir)"
    )


@dataclass(frozen=True)
class _Plan:
    """What the options add up to, once every one of them was checked."""

    duration_s: float
    nemeses: tuple[str, ...]
    timeline: tuple[ScriptedFault, ...] | None
    attach: Path | None
    groups: int
    fsync: str


class _Refused(Exception):
    """An option, the timeline or the cluster file is not usable; the message says why."""


def _plan(args: argparse.Namespace) -> _Plan:
    """Check everything that can be checked before a process starts."""
    if args.duration is not None and not 1 <= args.duration <= 24 * 3600:
        raise _Refused(f"--duration must be 1 to 86400 s, got {args.duration:g}")
    if not 0.5 <= args.fault_s <= 600 or not 0.1 <= args.gap_s <= 600:
        raise _Refused("--fault-s must be 0.5 to 600 and --gap-s 0.1 to 600")
    if args.groups is not None and not 1 <= args.groups <= 8:
        raise _Refused(f"--groups must be 1 to 8, got {args.groups}")
    for name in ("push_clients", "pull_clients", "kv_clients"):
        if not 0 <= getattr(args, name) <= 32:
            raise _Refused(f"--{name.replace('_', '-')} must be 0 to 32")
    if args.timeline is not None and args.nemesis is not None:
        raise _Refused("--timeline replaces the random schedule: give the nemeses in the file, not --nemesis")
    from paramstore.chaos import (
        ClusterFileError,
        ClusterShape,
        TimelineError,
        defaults_for,
        load_cluster_file,
        load_timeline,
        needing_fsync_always,
        timeline_end,
        without_restarts,
    )

    groups = args.groups if args.groups is not None else 2
    if args.cluster is not None:
        if args.groups is not None or args.fsync is not None:
            raise _Refused("--groups and --fsync are the local cluster's: they do not apply with --cluster")
        try:
            shape = load_cluster_file(args.cluster).shape
        except ClusterFileError as exc:
            raise _Refused(f"--cluster: {exc}") from None
        allowed = without_restarts()
    else:
        shape = ClusterShape.local(coordinators=3, groups=groups, replicas=3)
        allowed = _NEMESES
    fsync = args.fsync or "batch"
    nemeses = _nemeses(args.nemesis, allowed, attached=args.cluster is not None)
    if args.nemesis is None and args.cluster is None:
        nemeses = defaults_for(fsync)  # power-loss only where it is a fault
    timeline = None
    if args.timeline is not None:
        try:
            timeline = tuple(load_timeline(args.timeline, shape, allowed))
        except TimelineError as exc:
            raise _Refused(str(exc)) from None
    named = {f.nemesis for f in timeline} if timeline is not None else set(nemeses)
    unsynced = sorted(named & set(needing_fsync_always()))
    if unsynced and fsync != "always":
        policy = "batch (the default)" if args.fsync is None else fsync
        raise _Refused(
            f"{', '.join(unsynced)}: loses what the nodes did not sync, a fault only with --fsync "
            f"always (with --fsync {policy} acknowledged writes may not be synced yet, by design); "
            "add --fsync always"
        )
    duration_s = args.duration
    if timeline is not None:
        end = timeline_end(timeline)
        if duration_s is None:
            duration_s = max(1.0, end + _TIMELINE_TAIL_S)
        elif end > duration_s:
            last = max(timeline, key=lambda f: f.end_s)
            raise _Refused(
                f"timeline {args.timeline}: fault {last.index} ends at {end:g} s, after --duration "
                f"{duration_s:g}; lengthen --duration or leave it out"
            )
    return _Plan(
        duration_s=duration_s if duration_s is not None else _DEFAULT_DURATION_S,
        nemeses=nemeses,
        timeline=timeline,
        attach=args.cluster,
        groups=groups,
        fsync=fsync,
    )


def _nemeses(value: str | None, allowed: tuple[str, ...], *, attached: bool) -> tuple[str, ...]:
    if value is None:
        return allowed
    nemeses = tuple(n.strip() for n in value.split(",") if n.strip() and n.strip() != "none")
    unknown = sorted(set(nemeses) - set(_NEMESES))
    if unknown:
        raise _Refused(
            f"--nemesis: unknown {', '.join(unknown)}; expected some of {', '.join(_NEMESES)} or none"
        )
    refused = [n for n in nemeses if n not in allowed]
    if "power-loss" in refused and attached:
        raise _Refused(
            "--nemesis power-loss: not available with --cluster: it kills nodes and cuts their WAL "
            "files back to what they synced, which needs processes this run started itself, with "
            "a sync journal"
        )
    if refused and attached:
        raise _Refused(
            f"--nemesis {','.join(refused)}: kills processes, which an attached run cannot restart "
            f"with the command lines `paramstore up` used; attached runs allow {', '.join(allowed)}"
        )
    return nemeses


def run(args: argparse.Namespace) -> int:
    try:
        plan = _plan(args)
    except _Refused as exc:
        print(f"paramstore chaos: {exc}", file=sys.stderr)
        return 2
    from paramstore.chaos import ChaosConfig, ClusterFileError, WorkloadConfig, run_chaos

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    directory = args.dir or Path(tempfile.mkdtemp(prefix="paramstore-chaos-"))
    config = ChaosConfig(
        directory=directory,
        duration_s=plan.duration_s,
        seed=args.seed,
        nemeses=plan.nemeses,
        fault_s=args.fault_s,
        gap_s=args.gap_s,
        groups=plan.groups,
        fsync=plan.fsync,
        workload=WorkloadConfig(
            push_clients=args.push_clients, pull_clients=args.pull_clients, kv_clients=args.kv_clients
        ),
        timeline=plan.timeline,
        attach=plan.attach,
    )
    schedule = (
        f"timeline {args.timeline} ({len(plan.timeline)} faults)"
        if plan.timeline is not None
        else f"nemeses {','.join(plan.nemeses) or 'none'}"
    )
    target = f"attached to {plan.attach}" if plan.attach is not None else "local cluster"
    print(
        f"chaos run in {directory}: {target}, seed {args.seed}, {plan.duration_s:g} s, {schedule}",
        file=sys.stderr,
    )
    try:
        outcome = asyncio.run(run_chaos(config))
    except KeyboardInterrupt:
        print("paramstore chaos: interrupted", file=sys.stderr)
        return 130
    except (RuntimeError, TimeoutError, OSError, ClusterFileError) as exc:
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
