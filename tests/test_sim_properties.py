"""Hypothesis-generated fault schedules against the simulator.

Hypothesis writes explicit schedules (``consensus.sim.schedule.Action`` lists: crashes,
crashes in the middle of a Ready, restarts, partitions, message loss, proposals, reads,
transfers, compactions, membership changes) and ``run_schedule`` plays them, checking every
safety property after every event and liveness once everything is healed. A failure shrinks
to a short list of actions a person can read. The runs are derandomized and use no example
database, so CI sees the same examples every time.
"""

from __future__ import annotations

import dataclasses
import random

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from consensus.config import RaftConfig
from consensus.core import RaftCore
from consensus.messages import NO_NODE, HardState, RestoredState
from consensus.sim import ACTION_KINDS, Action, InvariantViolation, SimStats, run_schedule
from consensus.sim.faults import PARTITION_KINDS
from consensus.sim.invariants import DOUBLE_VOTE
from consensus.sim.simulation import TICK_MS

ACTIONS = st.builds(
    Action,
    kind=st.sampled_from(ACTION_KINDS),
    node=st.integers(0, 8),
    count=st.integers(0, 60),
    partition=st.sampled_from(PARTITION_KINDS),
)
# Bursts of actions, flattened: lists of lists average about five times longer than one flat
# list, and shrinking can still empty them completely.
SCHEDULES = st.lists(st.lists(ACTIONS, max_size=8), max_size=8).map(
    lambda bursts: [action for burst in bursts for action in burst]
)
SEEDS = st.integers(0, 2**32 - 1)
VOTERS = st.sampled_from((1, 3, 5))
# Simulated time after each action: short, one election timeout, or two.
SETTLE_MS = st.sampled_from((TICK_MS, 10 * TICK_MS, 20 * TICK_MS))

# ``explain`` is left out: it re-runs the failing example under a tracer, which for a
# simulation costs minutes and adds nothing to the shrunk schedule.
SIM_SETTINGS = settings(
    deadline=None,
    derandomize=True,
    database=None,
    report_multiple_bugs=False,
    phases=(Phase.explicit, Phase.generate, Phase.shrink),
    suppress_health_check=(HealthCheck.too_slow, HealthCheck.data_too_large),
)


@pytest.mark.slow
def test_generated_fault_schedules_never_break_safety_and_the_cluster_recovers() -> None:
    """The property: whatever the schedule, no invariant fails and, once healed, the cluster
    elects a leader, commits and serves a read. The stats summed over all examples prove
    that the generated schedules really crashed, partitioned, reconfigured and snapshotted."""
    total = SimStats()

    @settings(SIM_SETTINGS, max_examples=200)
    @given(seed=SEEDS, nodes=VOTERS, settle_ms=SETTLE_MS, actions=SCHEDULES)
    def schedule_is_safe_and_live(seed: int, nodes: int, settle_ms: int, actions: list[Action]) -> None:
        stats = run_schedule(seed, actions, nodes=nodes, settle_ms=settle_ms)
        assert stats.elections >= 1 and stats.committed >= 1 and stats.reads >= 1
        total.add(stats)

    schedule_is_safe_and_live()
    exercised = (
        "crashes",
        "mid_ready_crashes",
        "restarts",
        "partitions",
        "dropped",
        "elections",
        "transfers",
        "compactions",
        "snapshots",
        "conf_changes",
        "committed",
        "reads",
    )
    idle = [name for name in exercised if getattr(total, name) == 0]
    assert not idle, f"the generated schedules never did {idle}: {total}"


class ForgetsVoteOnRestartCore(RaftCore):
    """Bug: persists its vote but ignores it when restarting, so a node that crashes during
    an election can vote a second time in the same term. Only a crash shows it."""

    def __init__(self, config: RaftConfig, restored: RestoredState, rng: random.Random) -> None:
        hard = restored.hard_state
        forgetful = dataclasses.replace(restored, hard_state=HardState(hard.term, NO_NODE, hard.commit))
        super().__init__(config, forgetful, rng)


def test_hypothesis_finds_a_crash_only_bug_and_shrinks_it_to_a_replayable_schedule() -> None:
    """The generated schedules can find a bug that needs a fault, and shrinking turns it
    into a handful of actions that, replayed, fail the same way."""
    tried: list[tuple[int, int, list[Action]]] = []

    @settings(SIM_SETTINGS, max_examples=300)
    @given(seed=SEEDS, nodes=VOTERS, actions=SCHEDULES)
    def forgetful_core_is_safe(seed: int, nodes: int, actions: list[Action]) -> None:
        tried.append((seed, nodes, actions))
        run_schedule(seed, actions, nodes=nodes, core_factory=ForgetsVoteOnRestartCore)

    with pytest.raises(InvariantViolation) as found:
        forgetful_core_is_safe()
    assert found.value.name == DOUBLE_VOTE, found.value
    # Hypothesis runs the shrunk example last, to raise its error.
    seed, nodes, actions = tried[-1]
    assert len(actions) <= 10 and any(a.kind in ("crash", "crash_mid_ready") for a in actions), actions
    with pytest.raises(InvariantViolation) as replayed:
        run_schedule(seed, actions, nodes=nodes, core_factory=ForgetsVoteOnRestartCore)
    assert (replayed.value.name, replayed.value.detail) == (found.value.name, found.value.detail)
    run_schedule(seed, actions, nodes=nodes)  # the real core survives the same schedule


def test_an_unknown_action_is_refused_at_construction() -> None:
    """A misspelt kind fails loudly instead of being silently skipped by ``apply_action``."""
    with pytest.raises(ValueError, match="unknown action"):
        Action("explode")
