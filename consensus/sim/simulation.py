"""The deterministic simulator: real ``RaftCore`` objects in a simulated world.

Everything that could make two runs differ comes from the seed: the network's fate for
each message, the fault schedule, the clients, each core's election jitter (a fresh
``random.Random`` per node life, seeded from the seed, the node and its incarnation), the
per-node clock skew and even the Raft tunables. Time is an integer count of simulated
milliseconds advanced by an event queue, never the wall clock.

After every event the cluster is checked against the safety properties (``invariants``);
after the fault phase everything is healed and the cluster must make progress again within
a bound (``check_liveness``), which is how a stuck core shows up.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

from consensus.config import RaftConfig
from consensus.core import RaftCore
from consensus.errors import (
    InvalidMessageError,
    InvalidRequestError,
    NotLeaderError,
    ProposalDroppedError,
    RaftError,
)
from consensus.messages import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryKind,
    Message,
    MessageType,
    Ready,
    RestoredState,
    Role,
)
from consensus.sim.clients import ClientHistory, Proposal
from consensus.sim.disk import PersistContractError
from consensus.sim.events import Deliver, EventQueue, Heal, LinkRepair, Restart, Shutdown, Tick, Timer
from consensus.sim.faults import FaultMix, resolve_mix
from consensus.sim.invariants import (
    COMMIT_MONOTONIC,
    COMMITTED_ENTRY_LOST,
    CORE_EXCEPTION,
    DURABLE_BEFORE_SEND,
    LEADER_APPEND_ONLY,
    LIVENESS,
    PERSIST_CONTRACT,
    STATE_MACHINE_SAFETY,
    TERM_MONOTONIC,
    InvariantViolation,
    SafetyChecker,
)
from consensus.sim.network import SimNetwork
from consensus.sim.node import SimNode
from consensus.sim.state_machine import RegisterStateMachine, SnapshotFormatError
from consensus.sim.stats import SimStats
from consensus.sim.trace import TRACE_LINES_MAX, Trace

CoreFactory = Callable[[RaftConfig, RestoredState, random.Random], RaftCore]

TICK_MS = 10
ELECTION_TIMEOUT_TICKS = 10
DEFAULT_STEPS = 2000
CLIENTS = 3
# After healing, a leader must be up and everything pending committed within this long.
LIVENESS_BOUND_MS = 60 * ELECTION_TIMEOUT_TICKS * TICK_MS
_PROBE_RETRY_MS = 2 * ELECTION_TIMEOUT_TICKS * TICK_MS
# A client that heard nothing back for this long tries another node.
_CLIENT_TIMEOUT_MS = 150
# Readies one event may produce before the core is considered to spin.
_READY_ROUNDS_MAX = 64
# Membership changes add at most this many nodes to a schedule (ids are never reused).
_ADDITIONS_MAX = 6

_PHASE_FAULTS = "faults"
_PHASE_LIVENESS = "liveness"


def _default_core_factory(config: RaftConfig, restored: RestoredState, rng: random.Random) -> RaftCore:
    # Looks ``RaftCore`` up at call time, so a test can substitute a deliberately broken core.
    return RaftCore(config, restored, rng)


@dataclass(frozen=True, slots=True)
class ConfProposal:
    index: int
    term: int
    data: bytes
    change: ConfChange


def draw_raft_knobs(rng: random.Random) -> dict[str, int | bool]:
    """Raft tunables for one schedule: small limits exercise batching, flow control and
    chunked snapshots; the variants cover PreVote / CheckQuorum / lease reads on and off."""
    knobs: dict[str, int | bool] = {
        "election_timeout_ticks": ELECTION_TIMEOUT_TICKS,
        "heartbeat_interval_ticks": rng.choice((1, 1, 2, 3)),
        "entries_per_append_max": rng.choice((1, 4, 64, 4096)),
        "append_bytes_max": rng.choice((48, 4096, 4 * 1024 * 1024)),
        "appends_in_flight_max": rng.choice((1, 4, 64)),
        "snapshot_chunk_bytes_max": rng.choice((64, 512, 1024 * 1024)),
        "uncommitted_entries_max": rng.choice((64, 1_000_000)),
        "pending_reads_max": rng.choice((8, 100_000)),
        "learner_catchup_entries_max": rng.choice((8, 1000)),
        "broadcast_commit": rng.choice((True, False)),
    }
    variant = rng.choice(("standard", "standard", "lease", "no_pre_vote", "no_check_quorum", "plain"))
    if variant == "lease":
        # Per-node clock skew is at most 10% (one ms per 10 ms tick); a drift margin of 3
        # ticks out of 10 keeps the lease shorter than any follower's election timer.
        knobs.update(lease_read=True, lease_clock_drift_ticks=3)
    elif variant == "no_pre_vote":
        knobs.update(pre_vote=False)
    elif variant == "no_check_quorum":
        knobs.update(check_quorum=False)
    elif variant == "plain":
        knobs.update(pre_vote=False, check_quorum=False)
    return knobs


class Simulation:
    """One schedule: ``nodes`` voters, a fault mix, a workload, checked after every event.

    ``background=True`` runs the random workload and fault generators (what ``run`` and the
    CLI use); ``background=False`` leaves only clocks and the network running so that a test
    can drive an explicit schedule with ``crash``, ``partition``, ``propose``... and
    ``run_for``. ``core_factory`` exists for tests that plant a broken core.
    """

    def __init__(
        self,
        seed: int,
        *,
        nodes: int = 3,
        faults: FaultMix | str = "light",
        membership: bool = True,
        steps: int = DEFAULT_STEPS,
        background: bool = True,
        core_factory: CoreFactory | None = None,
        clients: int = CLIENTS,
        trace_lines_max: int = TRACE_LINES_MAX,
    ) -> None:
        if not 1 <= nodes <= 9:
            raise ValueError(f"nodes must be in 1..9, got {nodes}")
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        self.seed = seed
        self.steps = steps
        self.membership = membership
        self.background = background
        setup_rng = random.Random(f"{seed}/setup")
        self.mix = resolve_mix(faults, setup_rng)
        self.knobs = draw_raft_knobs(setup_rng)
        self._setup_rng = setup_rng
        self._rng_work = random.Random(f"{seed}/work")
        self._rng_fault = random.Random(f"{seed}/faults")
        self._rng_ready = random.Random(f"{seed}/ready")
        self._core_factory: CoreFactory = core_factory or _default_core_factory
        self.network = SimNetwork(
            random.Random(f"{seed}/net"),
            delay_min_ms=self.mix.delay_min_ms,
            delay_max_ms=self.mix.delay_max_ms,
            drop_probability=self.mix.drop_probability,
            duplicate_probability=self.mix.duplicate_probability,
        )
        self._crash_mid_ready_probability = self.mix.crash_mid_ready_probability
        self.queue = EventQueue()
        self.trace = Trace(trace_lines_max)
        self.checker = SafetyChecker()
        self.history = ClientHistory(clients)
        self.stats = SimStats()
        self.nodes: dict[int, SimNode] = {}
        self.now_ms = 0
        self.phase = _PHASE_FAULTS
        self.initial_conf = ConfState(tuple(range(1, nodes + 1)))
        self._node_count = nodes
        self._next_node_id = nodes + 1
        self._conf_proposals: dict[int, list[ConfProposal]] = {}
        self._heal_generation = 0
        self.trace.add(0, "setup", f"seed={seed} nodes={nodes} mix={self.mix} knobs={self.knobs}")
        for node_id in self.initial_conf.voters:
            self._start_node(node_id, self.initial_conf)
        if background:
            for kind in ("propose", "read", "compact", "transfer", "fault"):
                self._arm(kind)
            if membership:
                self._arm("conf")

    # ================================================================ running

    def run(self) -> SimStats:
        """The fault phase (``steps`` events), then heal and check liveness. Raises
        ``InvariantViolation`` on the first property that fails."""
        while self.stats.events < self.steps and self.step():
            pass
        self.check_liveness()
        return self.collect_stats()

    def collect_stats(self) -> SimStats:
        """The counters, with those kept by the network and the clients folded in."""
        self.stats.acked = self.history.stats.acked
        self.stats.dropped = self.network.stats.dropped + self.network.stats.blocked
        return self.stats

    def step(self) -> bool:
        """Process one event and check every invariant; False if nothing is left to happen."""
        if not len(self.queue):
            return False
        time_ms, event = self.queue.pop()
        self.now_ms = time_ms
        self.stats.events += 1
        self.stats.sim_time_ms = time_ms
        if isinstance(event, Deliver):
            self._deliver(event.message)
        elif isinstance(event, Tick):
            self._tick(event)
        elif isinstance(event, Timer):
            self._on_timer(event.kind)
        elif isinstance(event, Restart):
            node = self.nodes[event.node_id]
            if node.incarnation == event.incarnation and not node.up and not node.removed:
                self.restart(event.node_id)
        elif isinstance(event, Heal):
            if event.generation == self._heal_generation:
                self.heal()
        elif isinstance(event, LinkRepair):
            self.network.link_drop_probability.pop((event.sender, event.recipient), None)
        elif isinstance(event, Shutdown):
            self._shutdown(event.node_id)
        self._check_cluster()
        return True

    def run_for(self, duration_ms: int) -> None:
        """Process every event due within ``duration_ms`` of simulated time."""
        end_ms = self.now_ms + duration_ms
        while True:
            next_ms = self.queue.peek_time_ms()
            if next_ms is None or next_ms > end_ms:
                break
            self.step()
        self.now_ms = max(self.now_ms, end_ms)

    def run_until(self, predicate: Callable[[], bool], timeout_ms: int) -> bool:
        end_ms = self.now_ms + timeout_ms
        while not predicate():
            next_ms = self.queue.peek_time_ms()
            if next_ms is None or next_ms > end_ms:
                return predicate()
            self.step()
        return True

    # ================================================================ queries

    def leader(self) -> int | None:
        """The live leader of the highest term, if any."""
        best_id, best_term = None, -1
        for node in self.nodes.values():
            core = node.core
            if core is not None and core.role == Role.LEADER and core.term > best_term:
                best_id, best_term = node.node_id, core.term
        return best_id

    def live_ids(self) -> list[int]:
        return [node_id for node_id, node in self.nodes.items() if node.up]

    def member_ids(self) -> list[int]:
        """Nodes started and not removed (up or down)."""
        return [node_id for node_id, node in self.nodes.items() if not node.removed]

    def describe(self) -> list[str]:
        return [self.nodes[node_id].describe() for node_id in sorted(self.nodes)]

    # ================================================================ node lives

    def _make_config(self, node_id: int, conf: ConfState) -> RaftConfig:
        return RaftConfig(node_id=node_id, initial_conf=conf, **self.knobs)  # type: ignore[arg-type]

    def _new_core(self, node: SimNode, restored: RestoredState) -> RaftCore:
        rng = random.Random(f"{self.seed}/core/{node.node_id}/{node.incarnation}")
        with self._core_guard(node.node_id, "start"):
            return self._core_factory(node.config, restored, rng)

    def _start_node(self, node_id: int, conf: ConfState) -> SimNode:
        skew = self.mix.clock_skew_ms_max
        tick_ms = TICK_MS + (self._setup_rng.randint(-skew, skew) if skew else 0)
        node = SimNode(node_id, self._make_config(node_id, conf), tick_ms)
        self.nodes[node_id] = node
        node.core = self._new_core(node, RestoredState())
        self.trace.add(
            self.now_ms, "start", f"node {node_id} conf={conf.voters}/{conf.learners} tick={tick_ms}ms"
        )
        self._schedule_first_tick(node)
        return node

    def _schedule_first_tick(self, node: SimNode) -> None:
        phase_ms = self._setup_rng.randint(1, node.tick_ms)
        self.queue.push(self.now_ms + phase_ms, Tick(node.node_id, node.incarnation))

    def crash(self, node_id: int, *, restart_after_ms: int | None = None, mid_ready: bool = False) -> None:
        """Kill the node now (or, with ``mid_ready``, while it handles its next Ready, losing
        that Ready's writes and messages); it comes back after ``restart_after_ms`` if given."""
        node = self.nodes[node_id]
        if not node.up:
            return
        if mid_ready:
            node.crash_next_ready = True
            node.restart_delay_ms = restart_after_ms
            self.trace.add(self.now_ms, "arm-crash", f"node {node_id} crashes at its next Ready")
            return
        self._crash_now(node, restart_after_ms, mid_ready=False)

    def _crash_now(self, node: SimNode, restart_after_ms: int | None, *, mid_ready: bool) -> None:
        self.history.forget_node(node.node_id, node.incarnation)
        node.core = None
        node.incarnation += 1
        node.pending_serves = []
        node.crash_next_ready = False
        node.restart_delay_ms = None
        self.stats.crashes += 1
        if mid_ready:
            self.stats.mid_ready_crashes += 1
        self.trace.add(self.now_ms, "crash", f"node {node.node_id}" + (" mid-Ready" if mid_ready else ""))
        if restart_after_ms is not None:
            self.queue.push(self.now_ms + restart_after_ms, Restart(node.node_id, node.incarnation))

    def restart(self, node_id: int) -> None:
        """Bring a crashed node back from exactly what its disk holds."""
        node = self.nodes[node_id]
        if node.up or node.removed:
            return
        core = self._new_core(node, node.disk.restored())
        snapshot = node.disk.snapshot
        if snapshot is not None:
            machine = self._decode_snapshot(node_id, snapshot.data, snapshot.meta.index)
        else:
            machine = RegisterStateMachine()
        if machine.applied_index != core.applied_index:
            raise InvariantViolation(
                PERSIST_CONTRACT,
                f"node {node_id} restarts with applied index {core.applied_index}, its snapshot is at "
                f"{machine.applied_index}",
            )
        if core.term < node.max_sent_term:
            raise InvariantViolation(
                TERM_MONOTONIC,
                f"node {node_id} restarts in term {core.term} after sending messages "
                f"of term {node.max_sent_term}",
            )
        node.core = core
        node.machine = machine
        node.max_proposed_at_ms = self.history.max_proposed_at_ms(machine.payloads)
        node.seen_term = core.term
        node.seen_commit = core.commit_index
        node.recorded_commit = core.log.snapshot_index
        node.led_term = 0
        self.stats.restarts += 1
        self.trace.add(self.now_ms, "restart", node.describe())
        self._schedule_first_tick(node)
        self._drain(node)

    def _shutdown(self, node_id: int) -> None:
        node = self.nodes[node_id]
        if node.removed:
            return
        node.removed = True
        if node.up:
            self.history.forget_node(node_id, node.incarnation)
            node.core = None
            node.incarnation += 1
            node.pending_serves = []
        self.trace.add(self.now_ms, "shutdown", f"node {node_id} left the cluster")

    # ================================================================ events

    def _tick(self, event: Tick) -> None:
        node = self.nodes[event.node_id]
        core = node.core
        if core is None or node.incarnation != event.incarnation:
            return
        with self._core_guard(node.node_id, "tick"):
            core.tick()
        self._drain(node)
        if node.up and node.incarnation == event.incarnation:
            self.queue.push(self.now_ms + node.tick_ms, Tick(node.node_id, node.incarnation))

    def _deliver(self, msg: Message) -> None:
        node = self.nodes.get(msg.recipient)
        if node is None or node.core is None or not self.network.can_deliver(msg):
            return
        self.trace.add(self.now_ms, "deliver", msg)
        try:
            with self._core_guard(node.node_id, "step"):
                node.core.step(msg)
        except InvalidMessageError as exc:
            self.stats.invalid_messages += 1
            self.trace.add(self.now_ms, "invalid", f"node {node.node_id}: {exc}")
            return
        self._drain(node)

    @contextmanager
    def _core_guard(self, node_id: int, what: str) -> Iterator[None]:
        """Errors the core raises on purpose pass; anything else is a bug in the core."""
        try:
            yield
        except (RaftError, InvariantViolation):
            raise
        except Exception as exc:
            raise InvariantViolation(CORE_EXCEPTION, f"node {node_id} {what}(): {exc!r}") from exc

    # ================================================================ Ready

    def _drain(self, node: SimNode) -> None:
        """Do the work of every Ready the node has, in the contract's order."""
        for _ in range(_READY_ROUNDS_MAX):
            core = node.core
            if core is None:
                return
            try:
                if not core.has_ready():
                    return
                rd = core.ready()
            except InvariantViolation:
                raise
            except Exception as exc:
                raise InvariantViolation(CORE_EXCEPTION, f"node {node.node_id} ready(): {exc!r}") from exc
            p = self._crash_mid_ready_probability
            if node.crash_next_ready or (p > 0.0 and self._rng_ready.random() < p):
                delay_ms = node.restart_delay_ms
                if delay_ms is None and self.phase == _PHASE_FAULTS and self.background:
                    delay_ms = self._rng_fault.randint(1, self.mix.restart_delay_ms_max)
                self._crash_now(node, delay_ms, mid_ready=True)
                return
            self._handle_ready(node, core, rd)
            try:
                core.advance(rd)
            except Exception as exc:
                raise InvariantViolation(CORE_EXCEPTION, f"node {node.node_id} advance(): {exc!r}") from exc
            if node.machine.applied_index != core.applied_index:
                raise InvariantViolation(
                    PERSIST_CONTRACT,
                    f"node {node.node_id}: core says applied {core.applied_index}, the state machine is at "
                    f"{node.machine.applied_index}",
                )
        raise InvariantViolation(
            CORE_EXCEPTION, f"node {node.node_id} still has work after {_READY_ROUNDS_MAX} Readies"
        )

    def _handle_ready(self, node: SimNode, core: RaftCore, rd: Ready) -> None:
        node_id = node.node_id
        disk = node.disk
        if rd.soft_state is not None:
            self.trace.add(
                self.now_ms,
                "role",
                f"node {node_id} {rd.soft_state.role.name} term={core.term} leader={rd.soft_state.leader_id}",
            )
        # 1. snapshot
        if rd.snapshot is not None:
            self._install_snapshot(node, rd)
        # 2. entries, then hard state
        if rd.entries:
            first = rd.entries[0].index
            self.checker.on_entries(node_id, rd.entries, core.log.term_at(first - 1))
            if core.role == Role.LEADER and first <= disk.last_index:
                raise InvariantViolation(
                    LEADER_APPEND_ONLY,
                    f"leader {node_id} of term {core.term} rewrites its log from index {first} "
                    f"(persisted up to {disk.last_index})",
                )
            try:
                disk.append(rd.entries)
            except PersistContractError as exc:
                raise InvariantViolation(PERSIST_CONTRACT, f"node {node_id}: {exc}") from exc
        if rd.hard_state is not None:
            self.checker.on_hard_state_persisted(node_id, disk.hard_state, rd.hard_state)
            disk.set_hard_state(rd.hard_state)
        if disk.hard_state.commit > disk.last_index:
            raise InvariantViolation(
                PERSIST_CONTRACT,
                f"node {node_id} persisted commit {disk.hard_state.commit} beyond its persisted log "
                f"({disk.last_index})",
            )
        # 3. messages, only now that what they promise is durable
        for msg in rd.messages:
            self._check_durable(node, msg)
            for delay_ms in self.network.send(msg):
                self.queue.push(self.now_ms + delay_ms, Deliver(msg))
        self.stats.messages += len(rd.messages)
        # 4. apply
        for entry in rd.committed_entries:
            self._apply(node, entry)
        # 5. reads
        for read_state in rd.read_states:
            read = self.history.on_read_state(node_id, read_state.request_id, read_state.index)
            if read is not None:
                node.pending_serves.append((read_state, read))
        if node.pending_serves:
            self._serve_reads(node)

    def _decode_snapshot(self, node_id: int, data: bytes, index: int) -> RegisterStateMachine:
        try:
            machine = RegisterStateMachine.restore(data)
        except SnapshotFormatError as exc:
            raise InvariantViolation(
                STATE_MACHINE_SAFETY, f"node {node_id}: snapshot at {index}: {exc}"
            ) from exc
        if machine.applied_index != index:
            raise InvariantViolation(
                STATE_MACHINE_SAFETY,
                f"node {node_id}: snapshot labelled index {index} holds the state at {machine.applied_index}",
            )
        self.checker.on_state(node_id, index, machine.fingerprint, "restores a snapshot")
        return machine

    def _install_snapshot(self, node: SimNode, rd: Ready) -> None:
        snapshot = rd.snapshot
        assert snapshot is not None
        meta = snapshot.meta
        known = self.checker.committed.get(meta.index)
        if known is not None and known.term != meta.term:
            raise InvariantViolation(
                COMMITTED_ENTRY_LOST,
                f"node {node.node_id} installs a snapshot at ({meta.index}, term {meta.term}); "
                f"committed there is term {known.term}",
            )
        try:
            node.disk.install_snapshot(snapshot)
        except PersistContractError as exc:
            raise InvariantViolation(PERSIST_CONTRACT, f"node {node.node_id}: {exc}") from exc
        node.machine = self._decode_snapshot(node.node_id, snapshot.data, meta.index)
        node.max_proposed_at_ms = self.history.max_proposed_at_ms(node.machine.payloads)
        self.stats.snapshots += 1
        self.trace.add(self.now_ms, "install", f"node {node.node_id} snapshot ({meta.index}, t{meta.term})")

    def _check_durable(self, node: SimNode, msg: Message) -> None:
        """A message may only promise what is already on the sender's disk."""
        t = msg.type
        if t == MessageType.PRE_VOTE or t == MessageType.PRE_VOTE_RESPONSE:
            return  # pre-votes speak of a future term on purpose and promise nothing
        disk = node.disk
        hard = disk.hard_state
        if msg.term > hard.term:
            raise InvariantViolation(
                DURABLE_BEFORE_SEND,
                f"node {node.node_id} sends {t.name} of term {msg.term} with term {hard.term} persisted",
            )
        if t == MessageType.VOTE_RESPONSE and not msg.reject:
            if hard.vote != msg.recipient or hard.term != msg.term:
                raise InvariantViolation(
                    DURABLE_BEFORE_SEND,
                    f"node {node.node_id} grants its term-{msg.term} vote to {msg.recipient}; "
                    f"persisted {hard}",
                )
            self.checker.on_vote_granted(node.node_id, msg.term, msg.recipient)
        elif (
            (t == MessageType.APPEND_RESPONSE and not msg.reject) or t == MessageType.SNAPSHOT_RESPONSE
        ) and msg.index > disk.last_index:
            raise InvariantViolation(
                DURABLE_BEFORE_SEND,
                f"node {node.node_id} acknowledges index {msg.index} with its log persisted "
                f"up to {disk.last_index}",
            )
        if msg.term > node.max_sent_term:
            node.max_sent_term = msg.term

    def _apply(self, node: SimNode, entry: Entry) -> None:
        node_id = node.node_id
        if entry.index > node.disk.last_index:
            raise InvariantViolation(
                PERSIST_CONTRACT,
                f"node {node_id} applies entry {entry.index} before persisting it "
                f"(disk up to {node.disk.last_index})",
            )
        if self.checker.on_apply(node_id, entry):
            self._on_newly_committed(entry)
        try:
            node.machine.apply(entry)
        except ValueError as exc:
            raise InvariantViolation(PERSIST_CONTRACT, f"node {node_id}: {exc}") from exc
        self.checker.on_state(node_id, entry.index, node.machine.fingerprint, "applies")
        if entry.kind == EntryKind.NORMAL:
            proposal = self.history.proposals.get(entry.data)
            if proposal is not None and proposal.proposed_at_ms > node.max_proposed_at_ms:
                node.max_proposed_at_ms = proposal.proposed_at_ms
        self.history.on_applied(node_id, node.incarnation, entry, self.now_ms)

    def _serve_reads(self, node: SimNode) -> None:
        keep = []
        for read_state, read in node.pending_serves:
            if node.machine.applied_index >= read_state.index:
                self.history.on_read_served(read, node.machine, node.max_proposed_at_ms, self.now_ms)
                self.stats.reads += 1
            else:
                keep.append((read_state, read))
        node.pending_serves = keep

    def _on_newly_committed(self, entry: Entry) -> None:
        if entry.kind == EntryKind.NORMAL:
            self.stats.committed += 1
        elif entry.kind == EntryKind.CONFIG:
            self.stats.conf_changes += 1
        for proposal in self._conf_proposals.pop(entry.index, []):
            change = proposal.change
            won = entry.term == proposal.term and entry.data == proposal.data
            if won and change.change == ConfChangeType.REMOVE_NODE:
                # A removed node is switched off a little later, as an operator would.
                self.queue.push(self.now_ms + self._rng_work.randint(1, 300), Shutdown(change.node_id))
            elif not won and change.change == ConfChangeType.ADD_LEARNER:
                self.queue.push(self.now_ms + 1, Shutdown(change.node_id))

    # ================================================================ checks after each event

    def _check_cluster(self) -> None:
        checker = self.checker
        for node in self.nodes.values():
            core = node.core
            if core is None:
                continue
            term = core.term
            if term < node.seen_term:
                raise InvariantViolation(
                    TERM_MONOTONIC, f"node {node.node_id} went from term {node.seen_term} to {term}"
                )
            node.seen_term = term
            commit = core.commit_index
            if commit < node.seen_commit:
                raise InvariantViolation(
                    COMMIT_MONOTONIC, f"node {node.node_id} went from commit {node.seen_commit} to {commit}"
                )
            node.seen_commit = commit
            if core.role == Role.LEADER and node.led_term != term:
                node.led_term = term
                if checker.on_leader(node.node_id, term):
                    self.stats.elections += 1
                    self.trace.add(self.now_ms, "leader", f"node {node.node_id} term {term}")
                checker.check_leader_completeness(node.node_id, term, core.log, 1, checker.committed_max)
            if commit > node.recorded_commit:
                self._record_commits(node, core)

    def _record_commits(self, node: SimNode, core: RaftCore) -> None:
        log = core.log
        lo = max(node.recorded_commit + 1, log.snapshot_index + 1)
        hi = core.commit_index
        node.recorded_commit = hi
        if lo > hi:
            return
        newly: list[Entry] = []
        for entry in log.slice(lo, hi + 1):
            if self.checker.on_committed(node.node_id, entry):
                newly.append(entry)
                self._on_newly_committed(entry)
        if not newly:
            return
        # Leaders of a later term than the one these commits were learned in must hold them.
        for other in self.nodes.values():
            other_core = other.core
            if other_core is not None and other_core.role == Role.LEADER and other_core.term > core.term:
                self.checker.check_leader_completeness(
                    other.node_id, other_core.term, other_core.log, newly[0].index, newly[-1].index
                )

    # ================================================================ the workload

    def _client_target(self, client: int) -> SimNode | None:
        if self.history.client_stuck(client, self.now_ms, _CLIENT_TIMEOUT_MS):
            # Like a real client after a timeout: forget the leader it knew and try anyone.
            self.history.leader_guess[client] = 0
            self.history.last_proposal[client] = None
            self.history.last_read[client] = None
        guess = self.history.leader_guess[client]
        node = self.nodes.get(guess)
        if node is not None and node.up:
            return node
        live = self.live_ids()
        if not live:
            return None
        return self.nodes[self._rng_work.choice(live)]

    def propose(self, client: int = 0, count: int = 1, node_id: int | None = None) -> Proposal | None:
        """A client proposes ``count`` fresh payloads to the node it believes leads (or
        ``node_id``). Returns the last proposal, or None if the node refused or is down."""
        node = self._client_target(client) if node_id is None else self.nodes.get(node_id)
        if node is None or node.core is None:
            self.stats.refused += 1
            self.history.stats.unavailable += 1
            self.history.leader_guess[client] = 0
            return None
        core = node.core
        payloads = [self.history.next_payload(client) for _ in range(count)]
        try:
            with self._core_guard(node.node_id, "propose"):
                last = core.propose_batch(payloads) if count > 1 else core.propose(payloads[0])
        except NotLeaderError as exc:
            self.stats.refused += 1
            self.history.stats.not_leader += 1
            self.history.leader_guess[client] = exc.leader_id
            return None
        except ProposalDroppedError:
            self.stats.refused += 1
            self.history.stats.dropped += 1
            return None
        self.history.leader_guess[client] = node.node_id
        self.history.on_proposed(payloads, node.node_id, node.incarnation, last, core.term, self.now_ms)
        self.history.note_client_request(client, payloads[-1], None)
        self.stats.proposals += count
        self.trace.add(
            self.now_ms, "propose", f"node {node.node_id} {payloads[-1].decode()} at {last} t{core.term}"
        )
        self._drain(node)
        return self.history.proposals[payloads[-1]]

    def read(self, client: int = 0, node_id: int | None = None) -> bytes | None:
        """A client asks for a linearizable read; returns its request id if accepted."""
        node = self._client_target(client) if node_id is None else self.nodes.get(node_id)
        if node is None or node.core is None:
            self.history.stats.reads_refused += 1
            return None
        request_id = self.history.next_read_id()
        try:
            with self._core_guard(node.node_id, "read_index"):
                node.core.read_index(request_id)
        except NotLeaderError as exc:
            self.history.stats.reads_refused += 1
            self.history.leader_guess[client] = exc.leader_id
            return None
        except ProposalDroppedError:
            self.history.stats.reads_refused += 1
            return None
        self.history.on_read_started(request_id, node.node_id, node.incarnation, self.now_ms)
        self.history.note_client_request(client, None, request_id)
        self.trace.add(self.now_ms, "read", f"node {node.node_id} {request_id.decode()}")
        self._drain(node)
        return request_id

    def compact(self, node_id: int) -> bool:
        """The node snapshots its state machine at its applied index and compacts its log."""
        node = self.nodes[node_id]
        core = node.core
        if core is None or core.applied_index <= core.log.snapshot_index:
            return False
        index = core.applied_index
        try:
            with self._core_guard(node_id, "compact"):
                core.compact(index, node.machine.snapshot_bytes())
        except InvalidRequestError:
            return False
        snapshot = core.snapshot
        if snapshot is None or snapshot.meta.index != index:
            raise InvariantViolation(
                PERSIST_CONTRACT, f"node {node_id} compacted to {index} but holds {snapshot}"
            )
        node.disk.compact(snapshot)
        self.stats.compactions += 1
        self.trace.add(self.now_ms, "compact", f"node {node_id} at {index}")
        self._drain(node)
        return True

    def transfer(self, target: int | None = None) -> bool:
        """Ask the leader to hand over to ``target`` (a random other voter if None)."""
        leader_id = self.leader()
        if leader_id is None:
            return False
        node = self.nodes[leader_id]
        core = node.core
        assert core is not None
        if target is None:
            others = [v for v in core.conf.voters if v != leader_id]
            if not others:
                return False
            target = self._rng_work.choice(others)
        try:
            with self._core_guard(leader_id, "transfer_leadership"):
                core.transfer_leadership(target)
        except (NotLeaderError, InvalidRequestError, ProposalDroppedError):
            return False
        self.stats.transfers += 1
        self.trace.add(self.now_ms, "transfer", f"leader {leader_id} -> {target}")
        self._drain(node)
        return True

    def conf_change(self, change: ConfChange) -> bool:
        """Propose a membership change at the leader; starts the node an ADD_LEARNER names."""
        leader_id = self.leader()
        if leader_id is None:
            self.stats.conf_refused += 1
            return False
        node = self.nodes[leader_id]
        core = node.core
        assert core is not None
        try:
            with self._core_guard(leader_id, "propose_conf_change"):
                index = core.propose_conf_change(change)
        except (NotLeaderError, InvalidRequestError, ProposalDroppedError) as exc:
            self.stats.conf_refused += 1
            self.trace.add(self.now_ms, "conf-no", f"{change.change.name} {change.node_id}: {exc}")
            return False
        entry = core.log.entry_at(index)
        self._conf_proposals.setdefault(index, []).append(ConfProposal(index, entry.term, entry.data, change))
        self.trace.add(
            self.now_ms, "conf", f"leader {leader_id} {change.change.name} {change.node_id} at {index}"
        )
        if (
            change.change in (ConfChangeType.ADD_LEARNER, ConfChangeType.ADD_VOTER)
            and change.node_id not in self.nodes
        ):
            self._start_node(change.node_id, core.conf)
        self._drain(node)
        return True

    def add_learner(self) -> bool:
        if self._next_node_id > self._node_count + _ADDITIONS_MAX:
            return False
        node_id = self._next_node_id
        if not self.conf_change(ConfChange(ConfChangeType.ADD_LEARNER, node_id)):
            return False
        self._next_node_id += 1
        return True

    def _random_conf_change(self) -> None:
        leader_id = self.leader()
        if leader_id is None:
            return
        core = self.nodes[leader_id].core
        assert core is not None
        conf = core.conf
        rng = self._rng_work
        voters_min = max(3, self._node_count - 1) if self._node_count >= 3 else self._node_count
        voters_max = self._node_count + 1
        options: list[ConfChange | None] = []
        if conf.learners:
            options.append(ConfChange(ConfChangeType.PROMOTE_LEARNER, rng.choice(conf.learners)))
            if rng.random() < 0.2:
                options.append(ConfChange(ConfChangeType.REMOVE_NODE, rng.choice(conf.learners)))
        elif len(conf.voters) < voters_max:
            options.append(None)  # add a learner
        if len(conf.voters) > voters_min:
            options.append(ConfChange(ConfChangeType.REMOVE_NODE, rng.choice(conf.voters)))
        if not options:
            return
        choice = rng.choice(options)
        if choice is None:
            self.add_learner()
        else:
            self.conf_change(choice)

    # ================================================================ faults

    def partition(self, kind: str, nodes: list[int] | None = None, duration_ms: int | None = None) -> None:
        """Cut the network: ``symmetric``, ``asymmetric``, ``bridge`` or ``isolate``; ``nodes``
        is the order to split in (shuffled members if None). Replaces any earlier cut."""
        order = list(nodes) if nodes is not None else self.member_ids()
        if nodes is None:
            self._rng_fault.shuffle(order)
        if len(order) < 2:
            return
        self.network.heal()
        rng = self._rng_fault
        if kind == "isolate":
            self.network.isolate(order[0], order[1:])
        elif kind == "bridge" and len(order) >= 3:
            rest = order[1:]
            cut = rng.randint(1, len(rest) - 1)
            self.network.partition_bridge(rest[:cut], rest[cut:], order[0])
        elif kind == "asymmetric":
            cut = rng.randint(1, len(order) - 1)
            self.network.partition_asymmetric(order[:cut], order[cut:])
        else:
            cut = rng.randint(1, len(order) // 2)
            self.network.partition_symmetric(order[:cut], order[cut:])
        self._heal_generation += 1
        self.stats.partitions += 1
        self.trace.add(self.now_ms, "partition", self.network.partition_description)
        if duration_ms is not None:
            self.queue.push(self.now_ms + duration_ms, Heal(self._heal_generation))

    def heal(self) -> None:
        if self.network.partitioned:
            self.trace.add(self.now_ms, "heal", self.network.partition_description)
        self._heal_generation += 1
        self.network.heal()

    def _random_fault(self) -> None:
        mix = self.mix
        rng = self._rng_fault
        if mix.crash_probability and rng.random() < mix.crash_probability:
            live = [n for n in self.live_ids() if not self.nodes[n].removed]
            if live:
                victim = rng.choice(live)
                delay_ms = rng.randint(1, mix.restart_delay_ms_max)
                self.crash(victim, restart_after_ms=delay_ms, mid_ready=rng.random() < 0.3)
        # A partition mostly runs its course (long enough for a new leader to rise on the
        # other side, so stale leaders meet clients) before another one replaces it.
        replace = not self.network.partitioned or rng.random() < 0.2
        if mix.partition_probability and rng.random() < mix.partition_probability and replace:
            kind = rng.choice(mix.partition_kinds)
            self.partition(kind, duration_ms=rng.randint(100, mix.partition_duration_ms_max))
        if mix.flaky_link_probability and rng.random() < mix.flaky_link_probability:
            members = self.member_ids()
            if len(members) >= 2:
                sender, recipient = rng.sample(members, 2)
                self.network.link_drop_probability[(sender, recipient)] = mix.flaky_link_drop_probability
                self.queue.push(self.now_ms + rng.randint(50, 1000), LinkRepair(sender, recipient))
                self.trace.add(self.now_ms, "flaky", f"link {sender}->{recipient}")

    # ================================================================ generators

    _TIMER_GAPS_MS: ClassVar[dict[str, tuple[int, int]]] = {
        "propose": (2, 15),
        "read": (10, 60),
        "compact": (80, 300),
        "transfer": (200, 900),
        "conf": (150, 500),
    }

    def _arm(self, kind: str) -> None:
        if kind == "fault":
            if not self.mix.injects_faults:
                return
            gap_ms = self.mix.fault_interval_ms
        else:
            lo, hi = self._TIMER_GAPS_MS[kind]
            gap_ms = self._rng_work.randint(lo, hi)
        self.queue.push(self.now_ms + gap_ms, Timer(kind))

    def _on_timer(self, kind: str) -> None:
        if self.phase != _PHASE_FAULTS:
            return
        rng = self._rng_work
        if kind == "propose":
            client = rng.randrange(self.history.clients)
            self.propose(client, count=1 if rng.random() < 0.8 else rng.randint(2, 4))
        elif kind == "read":
            # Half the reads go to any node that believes it leads, stale ones included: a
            # client with an outdated leader cache must still read linearizably.
            leaders = [
                n for n, node in self.nodes.items() if node.core is not None and node.core.role == Role.LEADER
            ]
            target = rng.choice(leaders) if leaders and rng.random() < 0.5 else None
            self.read(rng.randrange(self.history.clients), node_id=target)
        elif kind == "compact":
            live = self.live_ids()
            if live:
                self.compact(rng.choice(live))
        elif kind == "transfer":
            self.transfer()
        elif kind == "conf":
            self._random_conf_change()
        elif kind == "fault":
            self._random_fault()
        self._arm(kind)

    # ================================================================ liveness

    def heal_everything(self) -> None:
        """No more faults: heal the network, stop losses, restart every crashed member."""
        self.phase = _PHASE_LIVENESS
        self.heal()
        self.network.heal_everything()
        self._crash_mid_ready_probability = 0.0
        for node_id in sorted(self.nodes):
            node = self.nodes[node_id]
            node.crash_next_ready = False
            if not node.removed and not node.up:
                self.restart(node_id)
        self.trace.add(self.now_ms, "heal-all", "network healed, crashed nodes restarted")

    def liveness_bound_ms(self) -> int:
        """How long a healed cluster may take: some election timeouts, plus one worst-case
        round trip per entry a lagging member still has to fetch (small append limits and
        reordering can make catching up that slow without anything being stuck)."""
        lasts = [node.core.log.last_index for node in self.nodes.values() if node.core is not None]
        backlog = max(lasts) - min(lasts) if lasts else 0
        return LIVENESS_BOUND_MS + backlog * 2 * self.mix.delay_max_ms

    def check_liveness(self, bound_ms: int | None = None) -> None:
        """After healing, within ``bound_ms`` (default ``liveness_bound_ms()``): one leader; a
        fresh proposal acknowledged; every member's log equal to the leader's, fully committed
        and applied (so every proposal still pending was decided); and a read served.
        Raises ``liveness`` otherwise."""
        self.heal_everything()
        self._check_cluster()
        if bound_ms is None:
            bound_ms = self.liveness_bound_ms()
        deadline_ms = self.now_ms + bound_ms
        probes: list[Proposal] = []
        next_probe_ms = self.now_ms
        read_id: bytes | None = None
        while True:
            leader_id = self.leader()
            if leader_id is not None:
                if not any(p.acked_at_ms is not None for p in probes):
                    if self.now_ms >= next_probe_ms and all(self._probe_failed(p) for p in probes):
                        next_probe_ms = self.now_ms + _PROBE_RETRY_MS
                        probe = self.propose(0, node_id=leader_id)
                        if probe is not None:
                            probes.append(probe)
                elif self._converged(leader_id):
                    if read_id is not None and read_id in self.history.completed_reads:
                        return  # served (and checked)
                    if read_id is None or self._read_orphaned(read_id):
                        read_id = self.read(0, node_id=leader_id)
            next_ms = self.queue.peek_time_ms()
            if next_ms is None or next_ms > deadline_ms:
                break
            self.step()
        raise InvariantViolation(
            LIVENESS,
            f"no progress within {bound_ms}ms after healing: leader={self.leader()} "
            f"probes={[(p.payload.decode(), p.index, p.acked_at_ms) for p in probes[-3:]]} "
            f"read={read_id!r}; " + "; ".join(self.describe()),
        )

    def _probe_failed(self, probe: Proposal) -> bool:
        """The probe can no longer be acknowledged: lost, or its node crashed or lost the lead."""
        node = self.nodes[probe.node_id]
        core = node.core
        return (
            probe.lost
            or core is None
            or node.incarnation != probe.incarnation
            or core.role != Role.LEADER
            or core.term != probe.term
        )

    def _read_orphaned(self, read_id: bytes) -> bool:
        read = self.history.reads.get(read_id)
        if read is None:
            return True
        node = self.nodes[read.node_id]
        core = node.core
        return core is None or core.role != Role.LEADER or self.now_ms - read.invoked_at_ms > _PROBE_RETRY_MS

    def _converged(self, leader_id: int) -> bool:
        leader = self.nodes[leader_id].core
        assert leader is not None
        last = leader.log.last_index
        if leader.commit_index != last or leader.applied_index != last:
            return False
        for member in leader.conf.members:
            node = self.nodes.get(member)
            core = node.core if node is not None else None
            if core is None or core.log.last_index != last or core.applied_index != last:
                return False
        return True
