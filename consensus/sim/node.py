"""One simulated machine: a Raft core, its disk, its state machine and its clock.

The core object lives only while the machine is up; a crash throws it away together with
everything not on the disk, and a restart builds a new one from the disk. The other fields
are what the *checker* remembers about the machine across those lives.
"""

from __future__ import annotations

from consensus.config import RaftConfig
from consensus.core import RaftCore
from consensus.messages import ReadState
from consensus.sim.clients import PendingRead
from consensus.sim.disk import SimDisk
from consensus.sim.state_machine import RegisterStateMachine


class SimNode:
    __slots__ = (
        "config",
        "core",
        "crash_next_ready",
        "disk",
        "incarnation",
        "led_term",
        "machine",
        "max_proposed_at_ms",
        "max_sent_term",
        "node_id",
        "pending_serves",
        "recorded_commit",
        "removed",
        "restart_delay_ms",
        "seen_commit",
        "seen_term",
        "tick_ms",
    )

    def __init__(self, node_id: int, config: RaftConfig, tick_ms: int) -> None:
        self.node_id = node_id
        self.config = config
        self.tick_ms = tick_ms
        self.disk = SimDisk()
        self.core: RaftCore | None = None
        self.machine = RegisterStateMachine()
        self.incarnation = 0
        # Left the cluster (or its addition was lost): switched off, never restarted.
        self.removed = False
        # Crash when the next Ready comes, before any of it is persisted or sent.
        self.crash_next_ready = False
        self.restart_delay_ms: int | None = None
        # ReadStates waiting for the state machine to reach their index.
        self.pending_serves: list[tuple[ReadState, PendingRead]] = []
        self.max_proposed_at_ms = -1
        # What the checker saw of this node, to prove monotonicity.
        self.seen_term = 0
        self.seen_commit = 0
        self.recorded_commit = 0
        self.max_sent_term = 0
        self.led_term = 0

    @property
    def up(self) -> bool:
        return self.core is not None

    def describe(self) -> str:
        core = self.core
        if core is None:
            state = "REMOVED" if self.removed else "DOWN"
            return f"node {self.node_id}: {state} disk_last={self.disk.last_index} hs={self.disk.hard_state}"
        return (
            f"node {self.node_id}: {core.role.name} term={core.term} leader={core.leader_id} "
            f"last={core.log.last_index} commit={core.commit_index} applied={core.applied_index} "
            f"snap={core.log.snapshot_index} conf={core.conf.voters}/{core.conf.learners}"
        )
