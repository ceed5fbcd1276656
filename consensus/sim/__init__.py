"""Deterministic simulation of Raft clusters (the "VOPR" idea): real ``RaftCore`` objects
driven over a seeded, faulty network in simulated time, with every safety property checked
after every event and liveness checked once the faults stop.

Public surface:
  * ``Simulation``: one schedule, random (``run``) or driven step by step by a test;
  * ``run_schedule`` / ``Action``: explicit fault schedules (for hypothesis);
  * ``ScheduleSpec`` / ``run_spec``: run by seed, with the command that reproduces it;
  * ``FaultMix``: how hostile the world is; ``InvariantViolation``: what a failure raises;
  * ``main``: the ``python -m consensus.sim`` command line.
"""

from consensus.sim.cli import main
from consensus.sim.faults import FAULT_MIX_NAMES, FaultMix
from consensus.sim.invariants import InvariantViolation
from consensus.sim.runner import Failure, Outcome, ScheduleSpec, run_spec
from consensus.sim.schedule import ACTION_KINDS, Action, apply_action, run_schedule
from consensus.sim.simulation import Simulation
from consensus.sim.stats import SimStats

__all__ = [
    "ACTION_KINDS",
    "FAULT_MIX_NAMES",
    "Action",
    "Failure",
    "FaultMix",
    "InvariantViolation",
    "Outcome",
    "ScheduleSpec",
    "SimStats",
    "Simulation",
    "apply_action",
    "main",
    "run_schedule",
    "run_spec",
]
