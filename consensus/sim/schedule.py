"""Explicit fault schedules: a list of actions applied to a quiet simulation.

This is the entry point for property-based tests: hypothesis generates lists of
``Action`` values, ``run_schedule`` plays them and then checks liveness, and a failure
shrinks to a short list of steps a person can read. Node choices are indices taken modulo
the current candidates, so every list of actions is valid whatever shrinking removes.
"""

from __future__ import annotations

from dataclasses import dataclass

from consensus.messages import ConfChange, ConfChangeType
from consensus.sim.simulation import TICK_MS, CoreFactory, Simulation
from consensus.sim.stats import SimStats

ACTION_KINDS = (
    "tick",
    "crash",
    "crash_mid_ready",
    "restart",
    "partition",
    "heal",
    "loss",
    "propose",
    "read",
    "transfer",
    "compact",
    "add_learner",
    "promote",
    "remove",
)


@dataclass(frozen=True, slots=True)
class Action:
    """One step of a schedule.

    ``node`` picks among the relevant nodes (index modulo their number); ``count`` is the
    number of ticks (``tick``), the batch size (``propose``) or the loss in percent
    (``loss``); ``partition`` is the partition kind.
    """

    kind: str
    node: int = 0
    count: int = 1
    partition: str = "symmetric"

    def __post_init__(self) -> None:
        if self.kind not in ACTION_KINDS:
            raise ValueError(f"unknown action {self.kind!r}; known: {ACTION_KINDS}")


def _pick(candidates: list[int], index: int) -> int | None:
    return sorted(candidates)[index % len(candidates)] if candidates else None


def apply_action(sim: Simulation, action: Action) -> None:
    """Apply one action to ``sim`` (refusals by the core are normal and only counted)."""
    kind = action.kind
    if kind == "tick":
        sim.run_for(max(1, action.count) * TICK_MS)
    elif kind in ("crash", "crash_mid_ready"):
        victim = _pick(sim.live_ids(), action.node)
        if victim is not None:
            sim.crash(victim, mid_ready=kind == "crash_mid_ready")
    elif kind == "restart":
        down = [n for n in sim.member_ids() if not sim.nodes[n].up]
        target = _pick(down, action.node)
        if target is not None:
            sim.restart(target)
    elif kind == "partition":
        members = sorted(sim.member_ids())
        if len(members) >= 2:
            shift = action.node % len(members)
            sim.partition(action.partition, members[shift:] + members[:shift])
    elif kind == "heal":
        sim.heal()
        sim.network.drop_probability = 0.0
    elif kind == "loss":
        sim.network.drop_probability = min(max(action.count, 0), 90) / 100
    elif kind == "propose":
        sim.propose(action.node % sim.history.clients, count=max(1, min(action.count, 8)))
    elif kind == "read":
        sim.read(action.node % sim.history.clients)
    elif kind == "transfer":
        leader = sim.leader()
        core = sim.nodes[leader].core if leader is not None else None
        if core is not None:
            sim.transfer(_pick([v for v in core.conf.voters if v != leader], action.node))
    elif kind == "compact":
        target = _pick(sim.live_ids(), action.node)
        if target is not None:
            sim.compact(target)
    else:
        _membership_action(sim, action)


def _membership_action(sim: Simulation, action: Action) -> None:
    leader = sim.leader()
    core = sim.nodes[leader].core if leader is not None else None
    if core is None:
        return
    if action.kind == "add_learner":
        sim.add_learner()
    elif action.kind == "promote":
        learner = _pick(list(core.conf.learners), action.node)
        if learner is not None:
            sim.conf_change(ConfChange(ConfChangeType.PROMOTE_LEARNER, learner))
    elif action.kind == "remove":
        member = _pick(list(core.conf.members), action.node)
        if member is not None and len(core.conf.voters) > 1:
            sim.conf_change(ConfChange(ConfChangeType.REMOVE_NODE, member))


def run_schedule(
    seed: int,
    actions: list[Action],
    *,
    nodes: int = 3,
    settle_ms: int = TICK_MS,
    core_factory: CoreFactory | None = None,
) -> SimStats:
    """Play ``actions`` (with ``settle_ms`` of simulated time after each), then heal and check
    liveness. Raises ``InvariantViolation`` on the first property that fails."""
    sim = Simulation(seed, nodes=nodes, faults="none", background=False, core_factory=core_factory)
    for action in actions:
        sim.trace.add(sim.now_ms, "action", action)
        apply_action(sim, action)
        sim.run_for(settle_ms)
    sim.check_liveness()
    return sim.collect_stats()
