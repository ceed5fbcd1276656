"""The asyncio driver of one Raft node: the thin loop that does what ``Ready`` says.

One task owns the ``RaftCore``; everything else (incoming messages, proposals, reads, the
tick timer) reaches it through bounded queues, so the core is never touched concurrently
and ``ready()``/``advance()`` are never interleaved with other calls. Per loop turn it:

1. steps the messages that arrived (bounded per turn), ticks if a tick is due;
2. proposes every queued proposal in one batch (this is where concurrent clients'
   requests are merged into one log append);
3. handles ``Ready`` batches: persist (storage), send (transport), apply (state machine),
   release reads whose index has been applied, then ``advance``;
4. takes a snapshot of the state machine when the log has grown past a threshold;
5. syncs the write-ahead log when the group-commit deadline has come.

The tick timer runs at the configured interval divided by a ``TickRate`` factor (1 unless
a fault test skews it). Hosts pass their transport's rate (``Transport.tick_rate``, which
``RaftAdmin.SetTickRate`` changes); without one the node keeps a private rate of 1. A
change takes effect at once, not after the tick already scheduled.

Proposals resolve when their entry is applied (with the state machine's result); an entry
that was overwritten by another leader's resolves with ``ProposalDroppedError``. Reads
use ReadIndex: they resolve once the applied index has reached the read index.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from consensus.config import RaftConfig
from consensus.core import RaftCore
from consensus.errors import (
    InvalidMessageError,
    InvalidRequestError,
    NotLeaderError,
    ProposalDroppedError,
    ProposalTooLargeError,
    RaftError,
)
from consensus.messages import (
    ConfChange,
    ConfState,
    Entry,
    EntryKind,
    Message,
    MessageType,
    ReadState,
    Ready,
    Role,
    Snapshot,
)
from consensus.storage import NodeStorage
from consensus.tick_rate import TickRate

log = logging.getLogger(__name__)

_CONF_CHANGES_PENDING_MAX = 16
_COALESCE_YIELDS = 2
# What a leader sends that depends on its term only, never on its own log being durable.
_LEADER_MESSAGES = frozenset({MessageType.APPEND, MessageType.HEARTBEAT})
# A leader's lone write up to this size syncs on the loop; a bigger one (a store's gradient
# push) syncs in a thread, so the loop keeps streaming its appends during the fsync.
_INLINE_SYNC_BYTES_MAX = 64 * 1024


class StateMachine(Protocol):
    """The application's replicated state machine, deterministic on every replica."""

    def apply(self, entry: Entry) -> object:
        """Apply one committed NORMAL entry; the result goes back to its proposer."""

    def snapshot(self) -> bytes:
        """The whole state as bytes (taken at the applied index)."""

    def restore(self, data: bytes) -> None:
        """Replace the whole state with a snapshot's bytes."""


class NodeStoppedError(RaftError):
    """The node was stopped while the request was waiting."""


@dataclass(frozen=True, slots=True)
class RuntimeConfig:
    tick_interval_ms: float = 20.0
    inbound_messages_max: int = 65_536
    messages_per_turn_max: int = 4096
    proposals_pending_max: int = 65_536
    proposals_per_batch_max: int = 4096
    reads_pending_max: int = 65_536
    # Take a state machine snapshot (and compact the log) every this many applied entries,
    # or once the entries applied since the last one hold this many bytes and at least as
    # many as that snapshot did. The bytes bound keeps a log of big entries (gradients of
    # MiBs: 10,000 of them would be tens of GiB) short; the second condition keeps
    # snapshots of a big state from costing more writes than the log they replace.
    snapshot_every_entries: int = 10_000
    snapshot_every_bytes: int = 256 * 1024 * 1024
    # The largest proposal accepted: it must fit one WAL record and one transport message
    # (the host sets it from those limits; the default fits their defaults).
    entry_bytes_max: int = 16 * 1024 * 1024 - 64 * 1024
    # Group commit by holding back: while this many proposal batches of the leader are
    # appended but not yet committed, newly queued proposals wait, and leave together as
    # one batch when the oldest commits (0: no limit, every loop turn proposes what it
    # has). Each batch costs a message and its answer per follower, and on a CPU-bound
    # host those, not the disk, are what small writes pay for: the coordinator sets 1,
    # so 16 concurrent writers share a few big batches instead of many small ones. A
    # lone writer never waits (its previous write is committed before it sends the next).
    # Store groups keep 0: there a second big entry replicating while the first commits
    # is what keeps the links busy.
    proposal_batches_in_flight_max: int = 0

    def __post_init__(self) -> None:
        if self.tick_interval_ms <= 0:
            raise ValueError(f"tick_interval_ms must be > 0, got {self.tick_interval_ms}")
        for name in (
            "inbound_messages_max",
            "messages_per_turn_max",
            "proposals_pending_max",
            "proposals_per_batch_max",
            "reads_pending_max",
            "snapshot_every_entries",
            "snapshot_every_bytes",
            "entry_bytes_max",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.proposal_batches_in_flight_max < 0:
            raise ValueError(
                f"proposal_batches_in_flight_max must be >= 0, got {self.proposal_batches_in_flight_max}"
            )


@dataclass(slots=True)
class _PendingProposal:
    data: bytes
    future: asyncio.Future[object]


@dataclass(slots=True)
class _PendingRead:
    request_id: bytes
    future: asyncio.Future[int]
    index: int = 0


class RaftNode:
    """Runs one ``RaftCore`` with real storage and a message sender."""

    def __init__(
        self,
        raft_config: RaftConfig,
        storage: NodeStorage,
        send: Callable[[Message], None],
        state_machine: StateMachine,
        runtime_config: RuntimeConfig | None = None,
        rng: random.Random | None = None,
        tick_rate: TickRate | None = None,
    ) -> None:
        self.runtime_config = runtime_config or RuntimeConfig()
        self.tick_rate = tick_rate if tick_rate is not None else TickRate()
        self._tick_rate_changed = False
        self._unsubscribe_tick_rate: Callable[[], None] | None = None
        self.storage = storage
        self._send = send
        self.state_machine = state_machine
        restored = storage.restored_state()
        self.core = RaftCore(raft_config, restored, rng or random.Random())
        # Entry bytes applied since the last snapshot, and that snapshot's size (see
        # ``RuntimeConfig.snapshot_every_bytes``).
        self._bytes_since_snapshot = 0
        self._last_snapshot_bytes = 0
        # A snapshot whose file is being written (see ``_maybe_snapshot``).
        self._snapshot_write: asyncio.Future[None] | None = None
        self._snapshot_written: Snapshot | None = None
        if restored.snapshot is not None:
            state_machine.restore(restored.snapshot.data)
            self._last_snapshot_bytes = len(restored.snapshot.data)
        self.node_id = raft_config.node_id
        self._inbound: deque[Message] = deque()
        self._proposals: deque[_PendingProposal] = deque()
        self._awaiting_apply: dict[int, tuple[int, asyncio.Future[object]]] = {}
        # (term, last index) of this leader's proposal batches not yet known committed;
        # kept only under RuntimeConfig.proposal_batches_in_flight_max.
        self._batches_in_flight: deque[tuple[int, int]] = deque()
        self._reads_to_start: deque[_PendingRead] = deque()
        self._reads_started: dict[bytes, _PendingRead] = {}
        self._reads_to_serve: deque[_PendingRead] = deque()
        self._read_counter = 0
        # Calls into the core made by other tasks wait here for the driver's turn: the core
        # must not be called while a Ready is being handled (its sync may be in a thread).
        self._conf_changes: deque[tuple[ConfChange, asyncio.Future[object]]] = deque()
        self._transfer_target = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self.counters: dict[str, int] = {
            "messages_in": 0,
            "messages_dropped": 0,
            "messages_invalid": 0,
            "messages_out": 0,
            "entries_applied": 0,
            "snapshots_taken": 0,
            "snapshots_installed": 0,
            "syncs_off_loop": 0,
            "proposal_batches": 0,
            "proposals": 0,
            "ticks": 0,
        }

    # ---- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("node already started")
        self._unsubscribe_tick_rate = self.tick_rate.subscribe(self._on_tick_rate)
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"raft-node-{self.node_id}")

    async def stop(self) -> None:
        self._stopped = True
        self._wake.set()
        if self._unsubscribe_tick_rate is not None:
            self._unsubscribe_tick_rate()
            self._unsubscribe_tick_rate = None
        if self._task is not None:
            await self._task
            self._task = None
        if self._snapshot_write is not None:
            # Not cancellable part-way: wait for the file (it is complete or a temp file).
            with contextlib.suppress(Exception):
                await self._snapshot_write
            self._snapshot_write = None
        self._fail_everything(NodeStoppedError(f"node {self.node_id} stopped"))

    async def wait_done(self) -> None:
        """Return once the driver loop has ended; re-raises what made it fail, if anything."""
        if self._task is not None:
            await asyncio.shield(self._task)

    # ---- inputs ---------------------------------------------------------------------------

    def deliver(self, msg: Message) -> None:
        """Hand over a message from the network (never blocks; drops when the queue is full)."""
        if len(self._inbound) >= self.runtime_config.inbound_messages_max:
            self.counters["messages_dropped"] += 1
            return
        self._inbound.append(msg)
        self._wake.set()

    async def propose(self, data: bytes, timeout_s: float) -> object:
        """Replicate ``data``; returns what the state machine's ``apply`` returned for it."""
        self._check_running()
        if self.core.role != Role.LEADER:
            raise NotLeaderError(self.core.leader_id, "propose")
        if len(data) > self.runtime_config.entry_bytes_max:
            raise ProposalTooLargeError(
                f"a proposal of {len(data)} bytes is over the largest log entry of "
                f"{self.runtime_config.entry_bytes_max} bytes"
            )
        if len(self._proposals) >= self.runtime_config.proposals_pending_max:
            raise ProposalDroppedError(f"{len(self._proposals)} proposals are already queued")
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._proposals.append(_PendingProposal(data, future))
        self._wake.set()
        # asyncio.timeout around the future itself, not wait_for: no extra task hop per
        # proposal, and a timeout still cancels the future (the apply then skips it).
        async with asyncio.timeout(timeout_s):
            return await future

    async def read_index(self, timeout_s: float) -> int:
        """Linearizable read barrier: returns once the local state machine reflects every
        write acknowledged before the call. Serve the read from the state machine after it."""
        self._check_running()
        if self.core.role != Role.LEADER:
            raise NotLeaderError(self.core.leader_id, "read")
        pending = len(self._reads_to_start) + len(self._reads_started) + len(self._reads_to_serve)
        if pending >= self.runtime_config.reads_pending_max:
            raise ProposalDroppedError(f"{pending} reads are already pending")
        self._read_counter += 1
        read = _PendingRead(self._read_counter.to_bytes(8, "big"), asyncio.get_running_loop().create_future())
        self._reads_to_start.append(read)
        self._wake.set()
        async with asyncio.timeout(timeout_s):
            return await read.future

    async def change_membership(self, change: ConfChange, timeout_s: float) -> ConfState:
        """Propose one single-step membership change; returns the membership once its CONFIG
        entry is applied here."""
        self._check_running()
        if self.core.role != Role.LEADER:
            raise NotLeaderError(self.core.leader_id, "change membership")
        if len(self._conf_changes) >= _CONF_CHANGES_PENDING_MAX:
            raise ProposalDroppedError(f"{len(self._conf_changes)} membership changes are already queued")
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._conf_changes.append((change, future))
        self._wake.set()
        async with asyncio.timeout(timeout_s):
            await future
        return self.core.conf

    def transfer_leadership(self, target: int) -> None:
        """Ask the core to hand leadership to ``target`` (done on the driver's next turn)."""
        if self.core.role != Role.LEADER:
            raise NotLeaderError(self.core.leader_id, "transfer_leadership")
        if target not in self.core.conf.voters:
            raise InvalidRequestError(f"transfer target {target} is not a voter of {self.core.conf.voters}")
        self._transfer_target = target
        self._wake.set()

    # ---- status ---------------------------------------------------------------------------

    def status(self) -> dict[str, object]:
        core = self.core
        return {
            "id": self.node_id,
            "role": core.role.name.lower(),
            "term": core.term,
            "leader": core.leader_id,
            "commit_index": core.commit_index,
            "applied_index": core.applied_index,
            "last_index": core.log.last_index,
            "snapshot_index": core.log.snapshot_index,
            "voters": list(core.conf.voters),
            "learners": list(core.conf.learners),
            "tick_rate": self.tick_rate.factor,
            "proposals_queued": len(self._proposals),
            **self.counters,
        }

    # ---- the loop -------------------------------------------------------------------------

    def _on_tick_rate(self, _factor: float) -> None:
        self._tick_rate_changed = True
        self._wake.set()

    async def _run(self) -> None:
        base_tick_s = self.runtime_config.tick_interval_ms / 1000.0
        tick_s = self.tick_rate.interval_s(base_tick_s)
        next_tick = time.monotonic() + tick_s
        try:
            while not self._stopped:
                if self._tick_rate_changed:
                    # A faster rate must not wait out the slow tick already scheduled.
                    self._tick_rate_changed = False
                    tick_s = self.tick_rate.interval_s(base_tick_s)
                    next_tick = min(next_tick, time.monotonic() + tick_s)
                timeout = next_tick - time.monotonic()
                deadline = self.storage.sync_deadline()
                if deadline is not None:
                    timeout = min(timeout, deadline - time.monotonic())
                proposals_ready = bool(self._proposals) and not self._proposals_held()
                idle = not (self._inbound or proposals_ready or self._reads_to_start or self._conf_changes)
                if timeout > 0 and idle and not self._transfer_target:
                    self._wake.clear()
                    # asyncio.timeout rather than wait_for: no task is created per idle turn.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(timeout):
                            await self._wake.wait()
                if self._stopped:
                    break
                if self._proposals and self._awaiting_apply:
                    # Entries are in flight already, so a lone new proposal would only take
                    # a round trip of its own: let the requests arriving right behind it
                    # (their handlers are runnable) join its batch first. Bounded: a few
                    # loop passes, never a timer.
                    for _ in range(_COALESCE_YIELDS):
                        await asyncio.sleep(0)
                self._step_inbound()
                now = time.monotonic()
                if now >= next_tick:
                    self.core.tick()
                    self.counters["ticks"] += 1
                    # Catch up at most one tick: a stalled loop must not fire an election storm.
                    next_tick = max(next_tick + tick_s, now)
                self._propose_queued()
                self._start_queued_reads()
                self._run_queued_core_calls()
                while self.core.has_ready():
                    await self._handle_ready(self.core.ready())
                self._maybe_snapshot()
                if self.storage.needs_sync():
                    self.storage.sync()
                # Give the transport and clients a chance to run.
                await asyncio.sleep(0)
        except Exception:
            log.exception("raft node %d: driver loop failed; stopping", self.node_id)
            self._stopped = True
            raise

    def _step_inbound(self) -> None:
        for _ in range(min(len(self._inbound), self.runtime_config.messages_per_turn_max)):
            msg = self._inbound.popleft()
            self.counters["messages_in"] += 1
            try:
                self.core.step(msg)
            except InvalidMessageError as exc:
                self.counters["messages_invalid"] += 1
                log.warning("raft node %d: dropped invalid message: %s", self.node_id, exc)

    def _proposals_held(self) -> bool:
        """Whether queued proposals wait for an earlier batch to commit (see
        ``RuntimeConfig.proposal_batches_in_flight_max``)."""
        limit = self.runtime_config.proposal_batches_in_flight_max
        if not limit or self.core.role != Role.LEADER:
            self._batches_in_flight.clear()
            return False
        in_flight = self._batches_in_flight
        term, commit = self.core.term, self.core.commit_index
        while in_flight and (in_flight[0][0] != term or in_flight[0][1] <= commit):
            in_flight.popleft()
        return len(in_flight) >= limit

    def _propose_queued(self) -> None:
        if not self._proposals:
            return
        if self.core.role != Role.LEADER:
            self._fail_proposals(NotLeaderError(self.core.leader_id, "propose"))
            return
        if self._proposals_held():
            return
        batch = [
            self._proposals.popleft()
            for _ in range(min(len(self._proposals), self.runtime_config.proposals_per_batch_max))
        ]
        batch = [p for p in batch if not p.future.done()]  # timed out while queued
        if not batch:
            return
        try:
            last_index = self.core.propose_batch([p.data for p in batch])
        except RaftError as exc:
            for proposal in batch:
                proposal.future.set_exception(exc)
            return
        self.counters["proposal_batches"] += 1
        self.counters["proposals"] += len(batch)
        term = self.core.term
        if self.runtime_config.proposal_batches_in_flight_max:
            self._batches_in_flight.append((term, last_index))
        first_index = last_index - len(batch) + 1
        for offset, proposal in enumerate(batch):
            self._awaiting_apply[first_index + offset] = (term, proposal.future)

    def _start_queued_reads(self) -> None:
        while self._reads_to_start:
            read = self._reads_to_start.popleft()
            if read.future.done():
                continue
            try:
                self.core.read_index(read.request_id)
            except RaftError as exc:
                read.future.set_exception(exc)
                continue
            self._reads_started[read.request_id] = read

    def _run_queued_core_calls(self) -> None:
        while self._conf_changes:
            change, future = self._conf_changes.popleft()
            if future.done():
                continue
            try:
                index = self.core.propose_conf_change(change)
            except RaftError as exc:
                future.set_exception(exc)
                continue
            self._awaiting_apply[index] = (self.core.term, future)
        if self._transfer_target:
            target, self._transfer_target = self._transfer_target, 0
            try:
                self.core.transfer_leadership(target)
            except RaftError as exc:
                log.info("raft node %d: leadership transfer to %d not started: %s", self.node_id, target, exc)

    async def _handle_ready(self, rd: Ready) -> None:
        if rd.snapshot is not None:
            self.state_machine.restore(rd.snapshot.data)
            self._bytes_since_snapshot = 0
            self._last_snapshot_bytes = len(rd.snapshot.data)
            self.counters["snapshots_installed"] += 1
            self._fail_awaiting_up_to(rd.snapshot.meta.index)
        # A leader's appends do not depend on its own copy being durable (Raft thesis
        # 10.2.1): they leave before its fsync, so its disk and the followers' work in
        # parallel. Safe here because the acks are stepped only on a later loop turn, after
        # this sync returned, so nothing counts the leader's copy before it is on disk.
        # Whatever else the ready says (votes, acks of our own entries) waits for the sync.
        early: list[Message] = []
        late: list[Message] = rd.messages
        if rd.snapshot is None and self.core.role == Role.LEADER and self._term_and_vote_unchanged(rd):
            early = [m for m in rd.messages if m.type in _LEADER_MESSAGES]
            late = [m for m in rd.messages if m.type not in _LEADER_MESSAGES]
            for msg in early:
                self._send(msg)
        if self.storage.save_ready(rd, defer_sync=True):
            # Nothing that depends on this write is sent before the sync returns. Under
            # load the fsync runs in a thread (it releases the GIL): meanwhile the loop takes
            # in proposals and messages, which become the next batch - group commit. A lone
            # request syncs inline: the thread hop would only add to its latency.
            # With appends already handed to the transport they must actually leave before
            # the fsync, so the followers' disks overlap ours: a small lone batch yields one
            # loop pass (the links write it) and then syncs inline; a big or busy one syncs
            # in a thread so the loop keeps streaming while the disk works.
            if self._under_load(rd) or (early and _entry_bytes(rd) > _INLINE_SYNC_BYTES_MAX):
                self.counters["syncs_off_loop"] += 1
                await asyncio.to_thread(self.storage.sync)
            else:
                if early:
                    await asyncio.sleep(0)
                self.storage.sync()
        for msg in late:
            self._send(msg)
        self.counters["messages_out"] += len(rd.messages)
        for entry in rd.committed_entries:
            self._apply(entry)
        for read_state in rd.read_states:
            self._on_read_state(read_state)
        self.core.advance(rd)
        if rd.soft_state is not None and rd.soft_state.role != Role.LEADER:
            self._fail_reads(NotLeaderError(rd.soft_state.leader_id, "read"))
        self._serve_reads()

    def _term_and_vote_unchanged(self, rd: Ready) -> bool:
        if rd.hard_state is None:
            return True
        durable = self.storage.hard_state
        return (rd.hard_state.term, rd.hard_state.vote) == (durable.term, durable.vote)

    def _under_load(self, rd: Ready) -> bool:
        """Others are waiting behind this write: several entries at once, several proposals
        in flight, or more input already queued."""
        return len(rd.entries) > 1 or len(self._awaiting_apply) > 1 or bool(self._inbound or self._proposals)

    def _apply(self, entry: Entry) -> None:
        result: object = None
        if entry.kind == EntryKind.NORMAL:
            result = self.state_machine.apply(entry)
        self.counters["entries_applied"] += 1
        self._bytes_since_snapshot += len(entry.data)
        waiting = self._awaiting_apply.pop(entry.index, None)
        if waiting is not None:
            term, future = waiting
            if future.done():
                return
            if term == entry.term:
                future.set_result(result)
            else:
                future.set_exception(
                    ProposalDroppedError(
                        f"entry {entry.index} was replaced by another leader's (term {entry.term})"
                    )
                )

    def _on_read_state(self, read_state: ReadState) -> None:
        read = self._reads_started.pop(read_state.request_id, None)
        if read is not None:
            read.index = read_state.index
            self._reads_to_serve.append(read)

    def _serve_reads(self) -> None:
        applied = self.core.applied_index
        keep: deque[_PendingRead] = deque()
        while self._reads_to_serve:
            read = self._reads_to_serve.popleft()
            if read.future.done():
                continue
            if read.index <= applied:
                read.future.set_result(read.index)
            else:
                keep.append(read)
        self._reads_to_serve = keep

    def _maybe_snapshot(self) -> None:
        """Take a snapshot when one is due. The state is captured here, on the driver (it
        must be of one applied index); its file is written in a thread while the driver
        goes on (a state of tens of MiB takes longer to write than an election timeout:
        a leader blocked that long would be deposed), and the log is compacted on a later
        turn, once the file is durable."""
        writing = self._snapshot_write
        if writing is not None:
            if not writing.done():
                return
            self._snapshot_write = None
            writing.result()  # a failed write: the storage has failed, the driver stops
            snapshot = self._snapshot_written
            self._snapshot_written = None
            assert snapshot is not None
            if self.storage.finish_snapshot(snapshot):
                self.storage.compact(snapshot.meta.index)
                self.counters["snapshots_taken"] += 1
            return
        core = self.core
        config = self.runtime_config
        by_bytes = self._bytes_since_snapshot >= max(config.snapshot_every_bytes, self._last_snapshot_bytes)
        if core.applied_index - core.log.snapshot_index < config.snapshot_every_entries and not by_bytes:
            return
        index = core.applied_index
        if index <= core.log.snapshot_index:
            return
        core.compact(index, self.state_machine.snapshot())
        snapshot = core.snapshot
        assert snapshot is not None and snapshot.meta.index == index
        self._bytes_since_snapshot = 0
        self._last_snapshot_bytes = len(snapshot.data)
        self.storage.begin_snapshot(snapshot)
        self._snapshot_written = snapshot
        self._snapshot_write = asyncio.ensure_future(
            asyncio.to_thread(self.storage.write_snapshot_file, snapshot)
        )

    # ---- failing waiters ------------------------------------------------------------------

    def _fail_awaiting_up_to(self, index: int) -> None:
        for entry_index in [i for i in self._awaiting_apply if i <= index]:
            _, future = self._awaiting_apply.pop(entry_index)
            if not future.done():
                future.set_exception(ProposalDroppedError(f"entry {entry_index} was covered by a snapshot"))

    def _fail_proposals(self, exc: Exception) -> None:
        while self._proposals:
            proposal = self._proposals.popleft()
            if not proposal.future.done():
                proposal.future.set_exception(exc)

    def _fail_reads(self, exc: Exception) -> None:
        for read in [*self._reads_to_start, *self._reads_started.values(), *self._reads_to_serve]:
            if not read.future.done():
                read.future.set_exception(exc)
        self._reads_to_start.clear()
        self._reads_started.clear()
        self._reads_to_serve.clear()

    def _fail_everything(self, exc: Exception) -> None:
        self._fail_proposals(exc)
        while self._conf_changes:
            _, future = self._conf_changes.popleft()
            if not future.done():
                future.set_exception(exc)
        self._fail_reads(exc)
        for _, future in self._awaiting_apply.values():
            if not future.done():
                future.set_exception(exc)
        self._awaiting_apply.clear()

    def _check_running(self) -> None:
        if self._stopped or self._task is None:
            raise NodeStoppedError(f"node {self.node_id} is not running")


def _entry_bytes(rd: Ready) -> int:
    return sum(len(entry.data) for entry in rd.entries)
