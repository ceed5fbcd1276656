"""The deterministic simulator (``consensus.sim``) as part of the normal test run.

Checked here: a thousand seeded schedules of the real core find no violation *and* really
injected every kind of fault; a seed replays exactly; deliberately broken cores are caught
under the right invariant name, by a seed that reproduces them; two explicit schedules keep
the liveness holes this simulator found in the core closed; and the command line's contract
(summary line, violation report, reproduce command). The hypothesis-generated schedules are
in ``test_sim_properties.py``.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor

import pytest

from consensus.core import RaftCore
from consensus.messages import NO_NODE, HardState, Message, MessageType
from consensus.sim import (
    Action,
    Failure,
    InvariantViolation,
    Outcome,
    ScheduleSpec,
    SimStats,
    Simulation,
    main,
    run_schedule,
    run_spec,
)
from consensus.sim.invariants import (
    COMMITTED_ENTRY_LOST,
    DOUBLE_VOTE,
    DURABLE_BEFORE_SEND,
    LEADER_COMPLETENESS,
    LIVENESS,
    STATE_MACHINE_SAFETY,
)
from consensus.sim.stats import SUMMARY_FIELDS
from consensus.sim.trace import TRACE_LINES_MAX

SEEDS = 1000
CHUNK = 250
WORKERS = min(2, os.cpu_count() or 1)
SUMMARY_LINE = re.compile(
    r"^schedules=(\d+) violations=(\d+) " + " ".join(rf"{name}=(\d+)" for name in SUMMARY_FIELDS) + "$"
)
# Counters every chunk of default schedules must show, or the run proved nothing.
EXERCISED = (
    "committed",
    "elections",
    "snapshots",
    "compactions",
    "crashes",
    "mid_ready_crashes",
    "restarts",
    "partitions",
    "reads",
    "conf_changes",
    "transfers",
    "dropped",
)


def default_spec(seed: int) -> ScheduleSpec:
    """The schedule ``python -m consensus.sim`` runs for ``seed`` with no other options."""
    return ScheduleSpec(seed, nodes=3 if seed % 2 == 0 else 5, faults="all")


def total_stats(outcomes: Sequence[Outcome]) -> SimStats:
    total = SimStats()
    for outcome in outcomes:
        total.add(outcome.stats)
    return total


def reports(outcomes: Sequence[Outcome]) -> str:
    failures = [o.failure for o in outcomes if o.failure is not None]
    return f"{len(failures)} violation(s):\n\n" + "\n\n".join(f.report() for f in failures[:3])


@pytest.fixture(scope="module")
def pool() -> Iterator[ProcessPoolExecutor | None]:
    """Worker processes for the big runs (None on a single core). ``spawn`` so that nothing
    the rest of the suite started in this process (gRPC threads) is forked half-alive."""
    if WORKERS < 2:
        yield None
        return
    with ProcessPoolExecutor(
        max_workers=WORKERS, mp_context=multiprocessing.get_context("spawn")
    ) as executor:
        yield executor


def run_all(pool: ProcessPoolExecutor | None, specs: Sequence[ScheduleSpec]) -> list[Outcome]:
    if pool is None:
        return [run_spec(spec) for spec in specs]
    return list(pool.map(run_spec, specs, chunksize=8))


# ================================================================ many seeds, real core


@pytest.mark.slow
@pytest.mark.parametrize("start", range(0, SEEDS, CHUNK), ids=lambda s: f"seeds{s}-{s + CHUNK - 1}")
def test_a_thousand_default_schedules_find_no_violation_and_inject_every_fault(
    pool: ProcessPoolExecutor | None, start: int
) -> None:
    """The CLI's default schedules (swarm fault mixes, 3 and 5 voters, membership changes):
    no safety property fails and every cluster makes progress once healed. Nonzero counters
    show the faults happened, so the test cannot pass by simulating nothing."""
    outcomes = run_all(pool, [default_spec(seed) for seed in range(start, start + CHUNK)])
    assert all(o.failure is None for o in outcomes), reports(outcomes)
    total = total_stats(outcomes)
    idle = [name for name in EXERCISED if getattr(total, name) == 0]
    assert not idle, f"nothing of {idle} happened in {CHUNK} schedules: {total}"
    # The liveness phase ends with a committed probe and a served read in every schedule.
    assert all(o.stats.committed > 0 and o.stats.reads > 0 and o.stats.elections > 0 for o in outcomes)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("nodes", "faults", "membership", "seeds"),
    [
        (1, "all", True, 30),  # grows to 2 voters and back: the single-voter edge cases
        (7, "heavy", True, 10),
        (5, "light", False, 16),
        (3, "none", True, 10),
    ],
)
def test_other_cluster_sizes_and_fault_mixes_find_no_violation(
    pool: ProcessPoolExecutor | None, nodes: int, faults: str, membership: bool, seeds: int
) -> None:
    """What the defaults never run: one and seven voters, the fixed presets, no membership."""
    specs = [ScheduleSpec(seed, nodes=nodes, faults=faults, membership=membership) for seed in range(seeds)]
    outcomes = run_all(pool, specs)
    assert all(o.failure is None for o in outcomes), reports(outcomes)
    total = total_stats(outcomes)
    assert total.committed > 0 and total.reads > 0 and total.elections >= seeds
    assert (total.conf_changes > 0) == membership
    assert (total.crashes > 0) == (faults != "none")


# ================================================================ determinism


def full_run(spec: ScheduleSpec) -> tuple[list[str], dict[str, int], list[str]]:
    sim = Simulation(
        spec.seed,
        nodes=spec.nodes,
        faults=spec.faults,
        membership=spec.membership,
        steps=spec.steps,
        trace_lines_max=10**7,
    )
    stats = sim.run()
    return sim.trace.tail(), dataclasses.asdict(stats), sim.describe()


@pytest.mark.parametrize("seed", [0, 1, 17])
def test_a_seed_replays_exactly_the_same_trace_and_stats(seed: int) -> None:
    """Everything comes from the seed: two runs agree event by event, which is what makes a
    reported seed worth anything."""
    spec = default_spec(seed)
    first = full_run(spec)
    assert first == full_run(spec)
    trace, stats, _ = first
    assert stats["events"] > 1000
    assert len(trace) > TRACE_LINES_MAX  # the whole trace is compared, not the default tail
    # ...and a different seed is a different schedule (the seed is actually used).
    assert full_run(default_spec(seed + 2))[0] != trace


def test_results_depend_on_neither_the_hash_seed_nor_the_worker_count() -> None:
    """Set iteration order of strings and bytes changes with PYTHONHASHSEED, and ``--jobs``
    moves schedules into other processes; neither may change a single schedule's result."""

    def cli(hash_seed: str, jobs: str) -> str:
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        argv = [sys.executable, "-m", "consensus.sim", "--seeds", "10", "--verbose", "--jobs", jobs]
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    serial = cli("0", "1")
    assert len(serial.splitlines()) == 12  # one line per schedule, the detail and the summary
    assert cli("4242", "2") == serial


def test_the_reproduce_command_runs_exactly_that_schedule(capsys: pytest.CaptureFixture[str]) -> None:
    """``ScheduleSpec.command()`` carries every field: feeding it back to the CLI runs the
    same schedule (same stats) as ``run_spec``."""
    spec = ScheduleSpec(seed=12, nodes=5, faults="heavy", steps=700, membership=False)
    argv = shlex.split(spec.command())
    assert argv[:3] == ["python", "-m", "consensus.sim"]
    assert main([*argv[3:], "--verbose"]) == 0
    lines = capsys.readouterr().out.splitlines()
    expected = run_spec(spec)
    assert lines[0].startswith("seed=12 nodes=5 mix=heavy ok ")
    assert lines[-1] == expected.stats.summary_line(1, 0)


# ================================================================ planted bugs


class DoubleVotingCore(RaftCore):
    """Bug: the vote is not sticky. Asked again in the same term by another candidate, it
    forgets its vote and grants a second one, so two leaders can win one term."""

    def _handle_vote_request(self, msg: Message) -> None:
        if msg.type == MessageType.VOTE and msg.term == self.term and self.vote not in (NO_NODE, msg.sender):
            self.vote = NO_NODE
            self.leader_id = NO_NODE
        super()._handle_vote_request(msg)


class VoteNotPersistedCore(RaftCore):
    """Bug: the vote never reaches the hard state, so it is granted without being durable
    (after a crash the node could vote again in the same term)."""

    def hard_state(self) -> HardState:
        hard = super().hard_state()
        return HardState(hard.term, NO_NODE, hard.commit)


class NoQuorumCommitCore(RaftCore):
    """Bug: the leader commits what it has persisted itself, without waiting for a quorum."""

    def _maybe_commit(self) -> bool:
        last = self.log.stable_index
        if last <= self.log.commit_index or self.log.term_at(last) != self.term:
            return False
        self.log.commit_to(last)
        self._on_commit_advanced()
        return True


class StayDownWhenRemovedCore(RaftCore):
    """The core before its ``_promotable`` fix: a voter whose own removal is in its log but
    not committed never campaigns, and its own vote always counts."""

    def _promotable(self) -> bool:
        return self.node_id in self.conf.voters

    def _own_vote(self) -> dict[int, bool]:
        return {self.node_id: True}


# Losing a committed entry can show up first as any of these, depending on which node
# notices first; each is the right diagnosis.
COMMITTED_LOST = (STATE_MACHINE_SAFETY, LEADER_COMPLETENESS, COMMITTED_ENTRY_LOST)

# (broken core, acceptable names, seeds to search, voters (None: the CLI default), failures wanted)
PLANTED = [
    pytest.param(DoubleVotingCore, (DOUBLE_VOTE,), 40, None, 3, id="double-vote"),
    pytest.param(VoteNotPersistedCore, (DURABLE_BEFORE_SEND,), 40, None, 3, id="vote-not-persisted"),
    pytest.param(NoQuorumCommitCore, COMMITTED_LOST, 40, None, 3, id="commit-without-quorum"),
    # Needs a 2-voter configuration, which schedules starting from one voter pass through.
    pytest.param(StayDownWhenRemovedCore, (LIVENESS,), 150, 1, 2, id="removed-voter-stays-down"),
]


def planted_failures(core: type[RaftCore], seeds: int, nodes: int | None, wanted: int) -> list[Failure]:
    """The first ``wanted`` failures of ``core`` among the first ``seeds`` schedules."""
    found: list[Failure] = []
    for seed in range(seeds):
        spec = default_spec(seed)
        if nodes is not None:
            spec = dataclasses.replace(spec, nodes=nodes)
        failure = run_spec(spec, core_factory=core).failure
        if failure is not None:
            found.append(failure)
            if len(found) == wanted:
                break
    return found


@pytest.mark.parametrize(("core", "names", "seeds", "nodes", "wanted"), PLANTED)
def test_a_planted_bug_is_reported_by_name_and_its_seed_reproduces_it(
    core: type[RaftCore], names: tuple[str, ...], seeds: int, nodes: int | None, wanted: int
) -> None:
    """The checkers are not vacuous: each broken core fails within a few dozen seeds, under
    the invariant its bug breaks; the reported spec replays the identical failure, and the
    same seed with the real core is clean (so the planted bug, not the world, is to blame)."""
    failures = planted_failures(core, seeds, nodes, wanted)
    assert failures, f"{core.__name__} survived {seeds} schedules"
    for failure in failures:
        assert failure.invariant in names, failure.report()
        assert run_spec(failure.spec, core_factory=core).failure == failure
        assert run_spec(failure.spec).failure is None


# ================================================================ explicit schedules


class UnseenLeaderRefusedCore(RaftCore):
    """The core before its ``_may_be_unseen_leader`` fix: it refuses every message from a node that no
    configuration it holds names, even from the leader of its own cluster."""

    def _may_be_unseen_leader(self, msg: Message) -> bool:
        return False


# Node 1 is down while a learner 4 joins, is promoted and takes over the lead: when node 1
# comes back, its (empty) log names only 1, 2 and 3, and only node 4 can bring it up to date.
LEADER_IT_NEVER_SAW = [
    Action("crash", node=0),
    Action("tick", count=30),
    Action("add_learner"),
    Action("tick", count=20),
    Action("promote"),
    Action("tick", count=20),
    Action("transfer", node=2),  # the voters other than the leader, sorted: 4 is last
    Action("tick", count=20),
]

# One voter grows to two (1, 2); with 2 down, leader 1 appends its own removal, then crashes
# and restarts: 1 holds the longer log with the uncommitted removal, 2 the older config
# (1, 2), whose quorum needs 1's vote.
LEADER_REMOVES_ITSELF_FROM_TWO = [
    Action("tick", count=30),
    Action("add_learner"),
    Action("tick", count=20),
    Action("promote"),
    Action("tick", count=20),
    Action("crash", node=1),
    Action("remove", node=0),
    Action("crash", node=0),
    Action("restart", node=0),
]


@pytest.mark.parametrize(
    ("actions", "nodes", "old_core"),
    [
        pytest.param(LEADER_IT_NEVER_SAW, 3, UnseenLeaderRefusedCore, id="follows-a-leader-it-never-saw"),
        pytest.param(
            LEADER_REMOVES_ITSELF_FROM_TWO, 1, StayDownWhenRemovedCore, id="removed-leader-still-campaigns"
        ),
    ],
)
def test_the_liveness_holes_fixed_in_the_core_stay_fixed(
    actions: list[Action], nodes: int, old_core: type[RaftCore]
) -> None:
    """Regression for the two core fixes found by this simulator: the real core recovers
    from these schedules on every seed tried, while the core before the fix gets stuck (so
    the schedule still reaches the situation it is about)."""
    stuck = []
    for seed in range(6):
        stats = run_schedule(seed, actions, nodes=nodes)
        assert stats.conf_changes >= 2, stats
        try:
            run_schedule(seed, actions, nodes=nodes, core_factory=old_core)
        except InvariantViolation as violation:
            assert violation.name == LIVENESS, violation
            stuck.append(seed)
    assert len(stuck) >= 3, f"the old core got stuck only for seeds {stuck}"


# ================================================================ command line


def test_cli_ends_with_the_summary_line_of_the_schedules_it_ran(capsys: pytest.CaptureFixture[str]) -> None:
    """The last line is the machine-readable summary, and it adds up what the documented
    default schedules (``default_spec``) give one by one."""
    assert main(["--seeds", "4", "--start-seed", "6"]) == 0
    lines = capsys.readouterr().out.splitlines()
    match = SUMMARY_LINE.match(lines[-1])
    assert match, lines[-1]
    assert match.group(1, 2) == ("4", "0")
    expected = total_stats([run_spec(default_spec(seed)) for seed in range(6, 10)])
    assert lines[-1] == expected.summary_line(4, 0)
    assert lines[-2].startswith("faults=all membership=True steps=2000 events=")


def test_cli_reports_a_violation_with_seed_invariant_trace_and_a_command_that_replays_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A violation exits non-zero and prints everything needed to debug it; the printed
    command, run again, prints the same report."""
    failure = planted_failures(DoubleVotingCore, 40, None, wanted=1)[0]
    monkeypatch.setattr("consensus.sim.simulation.RaftCore", DoubleVotingCore)
    argv = shlex.split(failure.spec.command())[3:]
    assert main(argv) == 1
    out = capsys.readouterr().out
    lines = out.splitlines()
    seed = failure.spec.seed
    assert lines[0] == f"VIOLATION seed={seed} invariant={DOUBLE_VOTE}"
    assert lines[1].startswith("  detail: node ")
    assert re.fullmatch(r"  trace tail \(last \d+ events\):", lines[2])
    assert len(failure.trace_tail) > 10
    assert f"  reproduce: {failure.spec.command()}" in lines
    assert failure.report() in out
    assert re.match(r"schedules=1 violations=1 committed=\d+ ", lines[-1])
    assert main(argv) == 1
    assert capsys.readouterr().out == out


def test_cli_shortens_violations_after_the_fifth_to_one_line_each(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many failures stay readable: five full reports, then a line with seed, invariant and
    reproduce command per further failure, and every one counted in the summary."""
    monkeypatch.setattr("consensus.sim.simulation.RaftCore", VoteNotPersistedCore)
    assert main(["--seeds", "7"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("  reproduce: ") for line in lines) == 5
    short = [line for line in lines if " reproduce: python -m consensus.sim" in line and line[0] == "V"]
    assert short == [
        f"VIOLATION seed={seed} invariant={DURABLE_BEFORE_SEND} reproduce: {default_spec(seed).command()}"
        for seed in (5, 6)
    ]
    assert lines[-1].startswith("schedules=7 violations=7 ")


def test_cli_refuses_nonsense_counts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seeds", "0"]) == 2
    assert "--seeds must be >= 1" in capsys.readouterr().err
