"""Running whole schedules by seed, and saying how to reproduce one that failed."""

from __future__ import annotations

from dataclasses import dataclass

from consensus.sim.invariants import InvariantViolation
from consensus.sim.simulation import DEFAULT_STEPS, CoreFactory, Simulation
from consensus.sim.stats import SimStats

TRACE_TAIL_LINES = 60


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """Everything that determines a schedule: re-running it gives the same events."""

    seed: int
    nodes: int = 3
    faults: str = "light"
    steps: int = DEFAULT_STEPS
    membership: bool = True

    def command(self) -> str:
        """The one-seed command line that replays exactly this schedule."""
        membership = "--membership" if self.membership else "--no-membership"
        return (
            f"python -m consensus.sim --seed {self.seed} --nodes {self.nodes} --faults {self.faults} "
            f"--steps {self.steps} {membership}"
        )


@dataclass(frozen=True, slots=True)
class Failure:
    spec: ScheduleSpec
    invariant: str
    detail: str
    trace_tail: tuple[str, ...]
    cluster: tuple[str, ...]

    def report(self) -> str:
        lines = [
            f"VIOLATION seed={self.spec.seed} invariant={self.invariant}",
            f"  detail: {self.detail}",
            f"  trace tail (last {len(self.trace_tail)} events):",
            *(f"    {line}" for line in self.trace_tail),
            "  cluster at the violation:",
            *(f"    {line}" for line in self.cluster),
            f"  reproduce: {self.spec.command()}",
        ]
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class Outcome:
    spec: ScheduleSpec
    stats: SimStats
    failure: Failure | None
    mix_name: str


def run_spec(spec: ScheduleSpec, core_factory: CoreFactory | None = None) -> Outcome:
    """Run one schedule to the end (or its first violation)."""
    sim = Simulation(
        spec.seed,
        nodes=spec.nodes,
        faults=spec.faults,
        membership=spec.membership,
        steps=spec.steps,
        core_factory=core_factory,
    )
    failure = None
    try:
        sim.run()
    except InvariantViolation as violation:
        failure = Failure(
            spec,
            violation.name,
            violation.detail,
            tuple(sim.trace.tail(TRACE_TAIL_LINES)),
            tuple(sim.describe()),
        )
    return Outcome(spec, sim.collect_stats(), failure, sim.mix.name)
