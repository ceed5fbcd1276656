"""The Raft algorithm as a pure state machine (sans-I/O).

``RaftCore`` never touches a socket, a file, a thread or a clock. The driver (the asyncio
runtime, or the simulator) calls ``tick``, ``step``, ``propose``, ``read_index``... and
then collects a ``Ready`` batch of work, does it in the documented order, and calls
``advance``. No other call may happen between ``ready()`` and ``advance()``.

Rules implemented (section numbers from Ongaro's dissertation):
* elections with randomized timeouts, PreVote (9.6) and CheckQuorum (6.2), and vote
  stickiness: a node that heard from a leader within an election timeout ignores campaigns;
* log replication with batching and a bounded pipeline per follower (``progress``), fast
  back-off by term on conflicts;
* commitment only of current-term entries by counting (3.6.2, "Figure 8"); a new leader
  appends a no-op of its term at once;
* ReadIndex reads confirmed by a heartbeat round (6.4); opt-in lease reads (6.4.1);
* leadership transfer (3.10); snapshots with chunked InstallSnapshot (5);
* single-server membership changes and learners (4.1, 4.2.1): a configuration takes effect
  as soon as it is in the log, one may be pending at a time, and only after the leader has
  committed an entry of its own term (the fix for the bug in the original single-server
  algorithm); a leader that removed itself steps down once that change commits.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from consensus.config import RaftConfig
from consensus.errors import InvalidMessageError, InvalidRequestError, NotLeaderError, ProposalDroppedError
from consensus.log import RaftLog
from consensus.membership import changed_conf, conf_at, known_peers
from consensus.messages import (
    NO_NODE,
    ConfChange,
    ConfState,
    Entry,
    EntryKind,
    HardState,
    Message,
    MessageType,
    ReadState,
    Ready,
    RestoredState,
    Role,
    Snapshot,
    SnapshotMeta,
    SoftState,
)
from consensus.progress import Progress, ProgressState
from consensus.validation import check_contiguous, validate_message

_MT = MessageType
_COMMITTED_PER_READY_MAX = 65_536
_HEARTBEAT_ROUNDS_REMEMBERED_MAX = 4096


class RaftCore:
    """One Raft node's algorithm state. See the module docstring for the driving contract."""

    def __init__(self, config: RaftConfig, restored: RestoredState, rng: random.Random) -> None:
        self.config = config
        self.node_id = config.node_id
        self._rng = rng
        hard = restored.hard_state
        snapshot = restored.snapshot

        if snapshot is not None:
            self.log = RaftLog(snapshot.meta.index, snapshot.meta.term)
            base_conf = snapshot.meta.conf
        else:
            self.log = RaftLog()
            base_conf = config.initial_conf
        self._snapshot: Snapshot | None = snapshot
        # (index, conf) of the base configuration and of every CONFIG entry in the log.
        self._conf_history: list[tuple[int, ConfState]] = [(self.log.snapshot_index, base_conf)]
        entries = [e for e in restored.entries if e.index > self.log.snapshot_index]
        if entries:
            check_contiguous(entries, self.log.snapshot_index, what="restored entries")
            self.log.append(entries)
            for entry in entries:
                if entry.kind == EntryKind.CONFIG:
                    self._conf_history.append((entry.index, ConfState.decode(entry.data)))
        self.log.stable_index = self.log.last_index
        self.log.unstable_from = self.log.last_index + 1
        if hard.commit > self.log.last_index:
            raise InvalidRequestError(
                f"restored commit index {hard.commit} is beyond the restored log's last index "
                f"{self.log.last_index}: the persisted state is inconsistent"
            )
        self.log.commit_index = max(hard.commit, self.log.snapshot_index)

        self.term = hard.term
        self.vote = hard.vote
        self.role = Role.FOLLOWER
        self.leader_id = NO_NODE
        self._refresh_known_peers()

        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._ticks = 0
        self._randomized_election_timeout = 0
        self._reset_randomized_timeout()
        # A restarted node may have acked a lease-holding leader just before it crashed; with
        # lease reads on it must not help elect anyone for a full election timeout.
        self._vote_blackout_ticks = config.election_timeout_ticks if config.lease_read else 0

        self._votes: dict[int, bool] = {}
        self._progress: dict[int, Progress] = {}
        self._lead_transferee = NO_NODE
        self._transfer_elapsed = 0
        self._pending_conf_index = 0

        # ReadIndex state (leader only).
        self._heartbeat_round = 0
        self._round_acked: dict[int, int] = {}
        self._round_sent_tick: dict[int, int] = {}
        self._lease_start_tick: int | None = None
        self._pending_reads: list[tuple[bytes, int, int]] = []  # (request_id, index, round)
        self._reads_awaiting_term_commit: list[bytes] = []

        # Snapshot being received from the leader (follower only).
        self._incoming_meta: SnapshotMeta | None = None
        self._incoming_chunks: bytearray = bytearray()

        # Output buffers, drained by ready()/advance().
        self._messages: list[Message] = []
        self._read_states: list[ReadState] = []
        self._snapshot_to_install: Snapshot | None = None
        self._prev_hard_state = HardState(self.term, self.vote, self.log.commit_index)
        self._prev_soft_state = SoftState(self.leader_id, self.role)
        self._ready_outstanding = False

    # ================================================================ public read-only view

    @property
    def conf(self) -> ConfState:
        return self._conf_history[-1][1]

    @property
    def commit_index(self) -> int:
        return self.log.commit_index

    @property
    def applied_index(self) -> int:
        return self.log.applied_index

    @property
    def snapshot(self) -> Snapshot | None:
        return self._snapshot

    @property
    def lead_transferee(self) -> int:
        return self._lead_transferee

    def progress(self, node_id: int) -> Progress | None:
        """The leader's view of ``node_id``'s log (None on non-leaders or unknown nodes)."""
        return self._progress.get(node_id) if self.role == Role.LEADER else None

    def hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.log.commit_index)

    def __repr__(self) -> str:
        return (
            f"RaftCore(id={self.node_id} {self.role.name} term={self.term} leader={self.leader_id} "
            f"last={self.log.last_index} commit={self.log.commit_index} applied={self.log.applied_index})"
        )

    # ================================================================ driving: the clock

    def tick(self) -> None:
        """Advance the logical clock by one tick."""
        self._check_not_in_ready("tick")
        self._ticks += 1
        if self._vote_blackout_ticks > 0:
            self._vote_blackout_ticks -= 1
        if self.role == Role.LEADER:
            self._tick_leader()
        else:
            self._tick_election()

    def _tick_election(self) -> None:
        self._election_elapsed += 1
        if self._promotable() and self._election_elapsed >= self._randomized_election_timeout:
            self._election_elapsed = 0
            self._start_campaign(force=False)

    def _tick_leader(self) -> None:
        self._heartbeat_elapsed += 1
        self._election_elapsed += 1
        if self._election_elapsed >= self.config.election_timeout_ticks:
            self._election_elapsed = 0
            if self.config.check_quorum and not self._quorum_recently_active():
                self._become_follower(self.term, NO_NODE)
                return
            if self._lead_transferee != NO_NODE:
                self._lead_transferee = NO_NODE  # the transfer took too long: abort it
        if self.role == Role.LEADER and self._heartbeat_elapsed >= self.config.heartbeat_interval_ticks:
            self._heartbeat_elapsed = 0
            self._broadcast_heartbeat()

    def _quorum_recently_active(self) -> bool:
        active = 0
        for node_id in self.conf.voters:
            pr = self._progress.get(node_id)
            if node_id == self.node_id or (pr is not None and pr.recent_active):
                active += 1
        for node_id, pr in self._progress.items():
            if node_id != self.node_id:
                pr.recent_active = False
        return active >= self._quorum_size()

    # ================================================================ driving: requests

    def propose(self, data: bytes) -> int:
        """Append one client entry (leader only); returns its index."""
        return self.propose_batch((data,))

    def propose_batch(self, items: Sequence[bytes]) -> int:
        """Append many client entries in one go (leader only); returns the last index."""
        self._check_not_in_ready("propose")
        self._check_can_propose(len(items))
        if not items:
            return self.log.last_index
        term = self.term
        first = self.log.last_index + 1
        entries = [Entry(term, first + k, EntryKind.NORMAL, data) for k, data in enumerate(items)]
        self._append_as_leader(entries)
        return self.log.last_index

    def propose_conf_change(self, change: ConfChange) -> int:
        """Propose a single-step membership change; returns the CONFIG entry's index."""
        self._check_not_in_ready("propose_conf_change")
        self._check_can_propose(1)
        if self._pending_conf_index > self.log.commit_index:
            raise ProposalDroppedError(
                f"configuration change at index {self._pending_conf_index} is not committed yet; "
                "one change may be pending at a time"
            )
        if self.log.term_at(self.log.commit_index) != self.term:
            raise ProposalDroppedError("the new leader has not committed an entry of its term yet")
        pr = self._progress.get(change.node_id)
        lag = self.log.last_index - (pr.match if pr else 0)
        new_conf = changed_conf(self.conf, change, lag, self.config.learner_catchup_entries_max)
        entry = Entry(self.term, self.log.last_index + 1, EntryKind.CONFIG, new_conf.encode())
        self._append_as_leader([entry])
        return entry.index

    def read_index(self, request_id: bytes) -> None:
        """Ask for a linearizable read; a ``ReadState`` for it appears in a later ``Ready``."""
        self._check_not_in_ready("read_index")
        if self.role != Role.LEADER:
            raise NotLeaderError(self.leader_id, "read_index")
        if len(self._pending_reads) + len(self._reads_awaiting_term_commit) >= self.config.pending_reads_max:
            raise ProposalDroppedError(f"{self.config.pending_reads_max} reads are already pending")
        if self.log.term_at(self.log.commit_index) != self.term:
            # Our commit index may lag the previous leader's until our no-op commits.
            self._reads_awaiting_term_commit.append(request_id)
            return
        self._start_read(request_id)

    def _start_read(self, request_id: bytes) -> None:
        index = self.log.commit_index
        if self._quorum_size() == 1 and self.node_id in self.conf.voters:
            self._read_states.append(ReadState(request_id, index))
            return
        if self.config.lease_read and self._lease_valid():
            self._read_states.append(ReadState(request_id, index))
            return
        round_number = self._broadcast_heartbeat()
        self._pending_reads.append((request_id, index, round_number))

    def transfer_leadership(self, target: int) -> None:
        """Hand leadership to ``target`` once its log is complete (aborted after an election timeout)."""
        self._check_not_in_ready("transfer_leadership")
        if self.role != Role.LEADER:
            raise NotLeaderError(self.leader_id, "transfer_leadership")
        if target not in self.conf.voters:
            raise InvalidRequestError(f"transfer target {target} is not a voter of {self.conf.voters}")
        if target == self.node_id:
            return
        if self._lead_transferee == target:
            return
        self._lead_transferee = target
        self._election_elapsed = 0
        self._lease_start_tick = None  # the target will campaign with force: no more lease
        pr = self._progress[target]
        if pr.match == self.log.last_index:
            self._send(target, Message(_MT.TIMEOUT_NOW, self.node_id, target, self.term))
        else:
            self._send_append(target, pr, allow_empty=True)

    def campaign(self) -> None:
        """Start an election now (used by tests and by an operator's "elect me")."""
        self._check_not_in_ready("campaign")
        if self.role != Role.LEADER and self._promotable():
            self._start_campaign(force=False)

    def compact(self, index: int, data: bytes) -> None:
        """The application captured its state at ``index`` (<= applied) as ``data``: keep it as
        the snapshot to send lagging followers and drop the log before it."""
        self._check_not_in_ready("compact")
        self.log.compact(index)
        conf = self._conf_at(index)
        self._snapshot = Snapshot(SnapshotMeta(index, self.log.snapshot_term, conf), data)
        while len(self._conf_history) > 1 and self._conf_history[1][0] <= index:
            self._conf_history.pop(0)
        self._conf_history[0] = (index, conf)

    # ================================================================ Ready / advance

    def has_ready(self) -> bool:
        return bool(
            self._messages
            or self._read_states
            or self._snapshot_to_install is not None
            or self.log.unstable_from <= self.log.last_index
            or self._has_committed_to_apply()
            or self.hard_state() != self._prev_hard_state
            or SoftState(self.leader_id, self.role) != self._prev_soft_state
        )

    def ready(self) -> Ready:
        self._check_not_in_ready("ready")
        rd = Ready()
        soft = SoftState(self.leader_id, self.role)
        if soft != self._prev_soft_state:
            rd.soft_state = soft
        hard = self.hard_state()
        if hard != self._prev_hard_state:
            rd.hard_state = hard
        rd.snapshot = self._snapshot_to_install
        rd.entries = self.log.unstable_entries()
        rd.messages = self._messages
        if self._has_committed_to_apply():
            hi = min(self.log.commit_index, self.log.applied_index + _COMMITTED_PER_READY_MAX)
            rd.committed_entries = self.log.slice(self.log.applied_index + 1, hi + 1)
        rd.read_states = self._read_states
        self._messages = []
        self._read_states = []
        self._ready_outstanding = True
        return rd

    def advance(self, rd: Ready) -> None:
        """The driver did everything ``rd`` asked for."""
        if not self._ready_outstanding:
            raise InvalidRequestError("advance() without a preceding ready()")
        self._ready_outstanding = False
        if rd.soft_state is not None:
            self._prev_soft_state = rd.soft_state
        if rd.hard_state is not None:
            self._prev_hard_state = rd.hard_state
        if rd.snapshot is not None:
            self._snapshot_to_install = None
        if rd.entries:
            self.log.mark_stable(rd.entries[-1].index)
        if rd.committed_entries:
            self.log.applied_index = rd.committed_entries[-1].index
        if self.role == Role.LEADER:
            own = self._progress.get(self.node_id)
            if (
                own is not None
                and own.maybe_update(self.log.stable_index)
                and self._maybe_commit()
                and self.config.broadcast_commit
            ):
                self._broadcast_append()

    def _has_committed_to_apply(self) -> bool:
        return self.log.applied_index < self.log.commit_index

    # ================================================================ driving: messages

    def step(self, msg: Message) -> None:
        """Handle one message from a peer. Raises ``InvalidMessageError`` (state unchanged)
        for a malformed or impossible message."""
        self._check_not_in_ready("step")
        validate_message(msg, self.node_id, self._known_peers, self._may_be_unseen_leader)

        if msg.term > self.term:
            disruptive = msg.type in (_MT.VOTE, _MT.PRE_VOTE) and not msg.force
            if disruptive and (self._in_lease() or self._vote_blackout_ticks > 0):
                return  # we heard from a live leader recently: ignore the disruption
            if msg.type == _MT.PRE_VOTE or (msg.type == _MT.PRE_VOTE_RESPONSE and not msg.reject):
                pass  # pre-votes never change terms
            elif msg.type in (_MT.APPEND, _MT.HEARTBEAT, _MT.SNAPSHOT):
                self._become_follower(msg.term, msg.sender)
            else:
                self._become_follower(msg.term, NO_NODE)
        elif msg.term < self.term:
            if msg.type in (_MT.APPEND, _MT.HEARTBEAT) and (self.config.check_quorum or self.config.pre_vote):
                # A stale leader (e.g. behind a healed partition) learns our term and steps down.
                self._send(msg.sender, Message(_MT.APPEND_RESPONSE, self.node_id, msg.sender, self.term))
            elif msg.type == _MT.PRE_VOTE:
                self._send(
                    msg.sender,
                    Message(_MT.PRE_VOTE_RESPONSE, self.node_id, msg.sender, self.term, reject=True),
                )
            return

        if msg.type in (_MT.VOTE, _MT.PRE_VOTE):
            self._handle_vote_request(msg)
        elif self.role == Role.LEADER:
            self._step_leader(msg)
        elif self.role in (Role.CANDIDATE, Role.PRE_CANDIDATE):
            self._step_candidate(msg)
        else:
            self._step_follower(msg)

    # ---- every role -----------------------------------------------------------------

    def _handle_vote_request(self, msg: Message) -> None:
        can_vote = (
            self.vote == msg.sender
            or (self.vote == NO_NODE and self.leader_id == NO_NODE)
            or (msg.type == _MT.PRE_VOTE and msg.term > self.term)
        )
        grant = can_vote and self.log.is_up_to_date(msg.index, msg.log_term)
        response_type = _MT.VOTE_RESPONSE if msg.type == _MT.VOTE else _MT.PRE_VOTE_RESPONSE
        if grant:
            # A granted pre-vote answers in the term the candidate will use.
            self._send(msg.sender, Message(response_type, self.node_id, msg.sender, msg.term))
            if msg.type == _MT.VOTE:
                self.vote = msg.sender
                self._election_elapsed = 0
        else:
            self._send(msg.sender, Message(response_type, self.node_id, msg.sender, self.term, reject=True))

    # ---- follower ---------------------------------------------------------------------

    def _step_follower(self, msg: Message) -> None:
        t = msg.type
        if t == _MT.APPEND:
            self._election_elapsed = 0
            self.leader_id = msg.sender
            self._handle_append(msg)
        elif t == _MT.HEARTBEAT:
            self._election_elapsed = 0
            self.leader_id = msg.sender
            self._handle_heartbeat(msg)
        elif t == _MT.SNAPSHOT:
            self._election_elapsed = 0
            self.leader_id = msg.sender
            self._handle_snapshot_chunk(msg)
        elif t == _MT.TIMEOUT_NOW and self._promotable():
            self._start_campaign(force=True)
        # Responses meant for a leader or candidate we no longer are: ignore.

    def _handle_append(self, msg: Message) -> None:
        log = self.log
        prev_index, prev_term, entries = msg.index, msg.log_term, msg.entries
        if prev_index < log.commit_index:
            # Everything up to our commit index is settled: skip that part of the message.
            skip = log.commit_index - prev_index
            if skip >= len(entries):
                self._send_append_response(msg.sender, log.commit_index)
                return
            entries = entries[skip:]
            prev_index = log.commit_index
            prev_term = log.term_at(prev_index) or 0
            if entries[0].index - 1 != prev_index:
                raise AssertionError("append trimming lost contiguity")
        if log.matches(prev_index, prev_term):
            last_new = prev_index + len(entries)
            conflict = log.find_conflict(entries)
            if conflict:
                if conflict <= log.commit_index:
                    raise AssertionError(
                        f"entry {conflict} conflicts with committed index {log.commit_index}"
                    )
                new_entries = entries[conflict - prev_index - 1 :]
                if conflict <= log.last_index:
                    self._truncate_conf_history(conflict)
                    log.truncate_and_append(new_entries)
                else:
                    log.append(new_entries)
                self._record_conf_entries(new_entries)
            log.commit_to(min(msg.commit, last_new))
            self._send_append_response(msg.sender, last_new)
        else:
            hint = log.conflict_hint(min(prev_index, log.last_index), prev_term)
            self._send(
                msg.sender,
                Message(
                    _MT.APPEND_RESPONSE,
                    self.node_id,
                    msg.sender,
                    self.term,
                    index=msg.index,
                    reject=True,
                    reject_hint=hint,
                    log_term=log.term_at(hint) or 0,
                ),
            )

    def _send_append_response(self, to: int, index: int) -> None:
        self._send(to, Message(_MT.APPEND_RESPONSE, self.node_id, to, self.term, index=index))

    def _handle_heartbeat(self, msg: Message) -> None:
        # The leader only sends a commit index up to what it knows we hold.
        if msg.commit > self.log.commit_index:
            self.log.commit_to(min(msg.commit, self.log.last_index))
        self._send(
            msg.sender,
            Message(_MT.HEARTBEAT_RESPONSE, self.node_id, msg.sender, self.term, context=msg.context),
        )

    def _handle_snapshot_chunk(self, msg: Message) -> None:
        meta = msg.snapshot_meta
        assert meta is not None  # validated
        if meta.index <= self.log.commit_index:
            # We already have everything it holds.
            self._send_snapshot_response(
                msg.sender, meta, len(msg.chunk_data), done_index=self.log.commit_index
            )
            return
        if msg.chunk_offset == 0:
            self._incoming_meta = meta
            self._incoming_chunks = bytearray()
        if self._incoming_meta != meta or msg.chunk_offset != len(self._incoming_chunks):
            received = len(self._incoming_chunks) if self._incoming_meta == meta else 0
            self._send(
                msg.sender,
                Message(
                    _MT.SNAPSHOT_RESPONSE,
                    self.node_id,
                    msg.sender,
                    self.term,
                    snapshot_meta=meta,
                    chunk_offset=received,
                    reject=True,
                ),
            )
            return
        self._incoming_chunks += msg.chunk_data
        if not msg.chunk_last:
            self._send_snapshot_response(msg.sender, meta, len(self._incoming_chunks), done_index=0)
            return
        if len(self._incoming_chunks) != msg.snapshot_size:
            raise InvalidMessageError(
                f"snapshot at index {meta.index} ended at {len(self._incoming_chunks)} bytes, "
                f"expected {msg.snapshot_size}"
            )
        snapshot = Snapshot(meta, bytes(self._incoming_chunks))
        self._incoming_meta = None
        self._incoming_chunks = bytearray()
        self._install_snapshot(snapshot)
        # Our log now matches the leader's exactly up to the snapshot index (and no further
        # is guaranteed: a matching log may still hold a divergent tail).
        self._send_snapshot_response(msg.sender, meta, len(snapshot.data), done_index=meta.index)

    def _send_snapshot_response(self, to: int, meta: SnapshotMeta, received: int, done_index: int) -> None:
        self._send(
            to,
            Message(
                _MT.SNAPSHOT_RESPONSE,
                self.node_id,
                to,
                self.term,
                snapshot_meta=meta,
                chunk_offset=received,
                index=done_index,
            ),
        )

    def _install_snapshot(self, snapshot: Snapshot) -> None:
        meta = snapshot.meta
        if self.log.matches(meta.index, meta.term):
            # Our log already holds that prefix: just commit up to it (etcd does the same).
            self.log.commit_to(meta.index)
            return
        self.log.restore(meta)
        self._snapshot = snapshot
        self._snapshot_to_install = snapshot
        self._conf_history = [(meta.index, meta.conf)]
        self._refresh_known_peers()

    # ---- candidate --------------------------------------------------------------------

    def _step_candidate(self, msg: Message) -> None:
        t = msg.type
        if t in (_MT.APPEND, _MT.HEARTBEAT, _MT.SNAPSHOT):
            # Someone won this term (or, for a pre-candidate, leads the current one).
            self._become_follower(msg.term, msg.sender)
            self._step_follower(msg)
        elif (t == _MT.VOTE_RESPONSE and self.role == Role.CANDIDATE) or (
            t == _MT.PRE_VOTE_RESPONSE and self.role == Role.PRE_CANDIDATE
        ):
            if msg.sender in self.conf.voters:
                self._votes.setdefault(msg.sender, not msg.reject)
            granted = sum(1 for v in self._votes.values() if v)
            rejected = len(self._votes) - granted
            quorum = self._quorum_size()
            if granted >= quorum:
                if self.role == Role.PRE_CANDIDATE:
                    self._campaign_for_real(force=False)
                else:
                    self._become_leader()
            elif rejected > len(self.conf.voters) - quorum:  # a quorum can no longer be reached
                self._become_follower(self.term, NO_NODE)

    # ---- leader -----------------------------------------------------------------------

    def _step_leader(self, msg: Message) -> None:
        pr = self._progress.get(msg.sender)
        if pr is None:
            return  # a node outside our configuration: nothing to do with it
        t = msg.type
        if t == _MT.APPEND_RESPONSE:
            pr.recent_active = True
            pr.silent_rounds = 0
            self._handle_append_response(msg, pr)
        elif t == _MT.HEARTBEAT_RESPONSE:
            if msg.context > self._heartbeat_round:
                raise InvalidMessageError(
                    f"HEARTBEAT_RESPONSE from {msg.sender} acknowledges round {msg.context}, "
                    f"but only {self._heartbeat_round} rounds were sent"
                )
            pr.recent_active = True
            self._handle_heartbeat_response(msg, pr)
        elif t == _MT.SNAPSHOT_RESPONSE:
            pr.recent_active = True
            self._handle_snapshot_response(msg, pr)

    def _handle_append_response(self, msg: Message, pr: Progress) -> None:
        if msg.reject:
            probe_hint = msg.reject_hint
            if msg.log_term > 0:
                probe_hint = self.log.conflict_hint(msg.reject_hint, msg.log_term)
            if pr.maybe_decrease(msg.index, probe_hint):
                if pr.state == ProgressState.REPLICATE:
                    pr.become_probe()
                self._send_append(msg.sender, pr)
            return
        if msg.index > self.log.last_index:
            return  # answers an append from a previous leadership of ours with a longer log
        # An accepted probe at exactly ``match`` is news too: it says where the logs agree
        # (this happens right after a snapshot, when match was set from the snapshot index).
        probe_confirmed = pr.state == ProgressState.PROBE and msg.index == pr.match
        if not pr.maybe_update(msg.index) and not probe_confirmed:
            return
        if pr.state == ProgressState.PROBE:
            pr.become_replicate()
        elif pr.state == ProgressState.SNAPSHOT and pr.match >= pr.snapshot_index:
            pr.become_probe()
            pr.become_replicate()
        if self._maybe_commit() and self.config.broadcast_commit:
            self._broadcast_append()
        else:
            self._send_append(msg.sender, pr, allow_empty=False)
        if msg.sender == self._lead_transferee and pr.match == self.log.last_index:
            self._send(msg.sender, Message(_MT.TIMEOUT_NOW, self.node_id, msg.sender, self.term))

    def _handle_heartbeat_response(self, msg: Message, pr: Progress) -> None:
        if pr.state == ProgressState.PROBE:
            pr.probe_sent = False
        elif pr.state == ProgressState.REPLICATE and pr.match < self.log.last_index:
            pr.silent_rounds += 1
            if pr.silent_rounds >= self.config.lost_append_rounds:
                # The follower answers heartbeats but has answered no append for an election
                # timeout: appends were probably lost. Not sooner: a heartbeat's answer needs
                # no disk, so it overtakes the answer to an append still being persisted (a
                # 16 MiB entry, say), and sending those appends again would double the load.
                pr.become_probe()
            elif pr.is_paused():
                pr.in_flight.popleft()
        else:
            pr.silent_rounds = 0
        if pr.state == ProgressState.SNAPSHOT:
            self._send_snapshot_chunk(msg.sender, pr)  # resend: a chunk may have been lost
        elif pr.match < self.log.last_index:
            self._send_append(msg.sender, pr, allow_empty=False)
        if msg.sender in self.conf.voters and msg.context > self._round_acked.get(msg.sender, 0):
            self._round_acked[msg.sender] = msg.context
            self._release_confirmed_reads()

    def _handle_snapshot_response(self, msg: Message, pr: Progress) -> None:
        meta = msg.snapshot_meta
        if pr.state != ProgressState.SNAPSHOT or meta is None or meta.index != pr.snapshot_index:
            return
        if msg.index > 0:  # installed (or already had it)
            pr.maybe_update(min(msg.index, self.log.last_index))
            pr.become_probe()
            self._send_append(msg.sender, pr)
            return
        pr.snapshot_offset = msg.chunk_offset
        self._send_snapshot_chunk(msg.sender, pr)

    # ================================================================ leader machinery

    def _append_as_leader(self, entries: list[Entry]) -> None:
        self.log.append(entries)
        for entry in entries:
            if entry.kind == EntryKind.CONFIG:
                self._pending_conf_index = entry.index
        self._record_conf_entries(entries)
        self._broadcast_append()

    def _broadcast_append(self) -> None:
        for node_id, pr in self._progress.items():
            if node_id != self.node_id:
                self._send_append(node_id, pr, allow_empty=True)

    def _send_append(self, to: int, pr: Progress, allow_empty: bool = True) -> None:
        """Send ``to`` what it is missing (or its snapshot) unless its window is full."""
        if pr.is_paused():
            return
        prev_index = pr.next - 1
        prev_term = self.log.term_at(prev_index)
        if prev_term is None:  # compacted away
            self._start_snapshot(to, pr)
            return
        entries = self.log.slice(pr.next, pr.next + self.config.entries_per_append_max)
        if entries and len(entries) > 1:
            entries = self._limit_bytes(entries)
        if not entries and not allow_empty:
            return
        self._send(
            to,
            Message(
                _MT.APPEND,
                self.node_id,
                to,
                self.term,
                log_term=prev_term,
                index=prev_index,
                entries=tuple(entries),
                commit=self.log.commit_index,
            ),
        )
        if entries:
            pr.sent_append(entries[-1].index)
        elif pr.state == ProgressState.PROBE:
            pr.probe_sent = True

    def _limit_bytes(self, entries: list[Entry]) -> list[Entry]:
        budget = self.config.append_bytes_max
        total = 0
        for k, entry in enumerate(entries):
            total += len(entry.data)
            if total > budget and k > 0:
                return entries[:k]
        return entries

    def _start_snapshot(self, to: int, pr: Progress) -> None:
        if self._snapshot is None:
            raise AssertionError(f"entries for node {to} were compacted but no snapshot is held")
        pr.become_snapshot(self._snapshot.meta.index)
        self._send_snapshot_chunk(to, pr)

    def _send_snapshot_chunk(self, to: int, pr: Progress) -> None:
        snapshot = self._snapshot
        if snapshot is None or snapshot.meta.index != pr.snapshot_index:
            pr.become_probe()  # a newer snapshot replaced it: start over
            return
        offset = pr.snapshot_offset
        size = len(snapshot.data)
        chunk = snapshot.data[offset : offset + self.config.snapshot_chunk_bytes_max]
        self._send(
            to,
            Message(
                _MT.SNAPSHOT,
                self.node_id,
                to,
                self.term,
                snapshot_meta=snapshot.meta,
                chunk_offset=offset,
                chunk_data=chunk,
                chunk_last=offset + len(chunk) >= size,
                snapshot_size=size,
            ),
        )

    def _broadcast_heartbeat(self) -> int:
        """Send a heartbeat round to every follower; returns the round number."""
        self._heartbeat_round += 1
        round_number = self._heartbeat_round
        self._round_sent_tick[round_number] = self._ticks
        if len(self._round_sent_tick) > _HEARTBEAT_ROUNDS_REMEMBERED_MAX:
            self._round_sent_tick.pop(next(iter(self._round_sent_tick)))
        for node_id, pr in self._progress.items():
            if node_id == self.node_id:
                continue
            commit = min(pr.match, self.log.commit_index)
            self._send(
                node_id,
                Message(_MT.HEARTBEAT, self.node_id, node_id, self.term, commit=commit, context=round_number),
            )
        return round_number

    def _confirmed_round(self) -> int:
        """Highest heartbeat round that a quorum of voters (us included) has answered."""
        rounds = sorted(
            (
                self._heartbeat_round if v == self.node_id else self._round_acked.get(v, 0)
                for v in self.conf.voters
            ),
            reverse=True,
        )
        return rounds[self._quorum_size() - 1]

    def _release_confirmed_reads(self) -> None:
        confirmed = self._confirmed_round()
        if confirmed <= 0:
            return
        sent_tick = self._round_sent_tick.get(confirmed)
        newer = sent_tick is not None and (
            self._lease_start_tick is None or sent_tick > self._lease_start_tick
        )
        if newer and self._lead_transferee == NO_NODE:
            self._lease_start_tick = sent_tick
        for stale in [r for r in self._round_sent_tick if r < confirmed]:
            del self._round_sent_tick[stale]
        if not self._pending_reads or self._pending_reads[0][2] > confirmed:
            return
        keep: list[tuple[bytes, int, int]] = []
        for request_id, index, round_number in self._pending_reads:
            if round_number <= confirmed:
                self._read_states.append(ReadState(request_id, index))
            else:
                keep.append((request_id, index, round_number))
        self._pending_reads = keep

    def _lease_valid(self) -> bool:
        if self._lease_start_tick is None or self._lead_transferee != NO_NODE:
            return False
        window = self.config.election_timeout_ticks - self.config.lease_clock_drift_ticks
        return self._ticks - self._lease_start_tick < window

    def _maybe_commit(self) -> bool:
        voters = self.conf.voters
        if not voters:
            return False
        matches = sorted(
            (self._progress[v].match if v in self._progress else 0 for v in voters),
            reverse=True,
        )
        candidate = matches[self._quorum_size() - 1]
        if candidate <= self.log.commit_index or self.log.term_at(candidate) != self.term:
            return False  # only entries of our own term are committed by counting (Figure 8)
        self.log.commit_to(candidate)
        self._on_commit_advanced()
        return True

    def _on_commit_advanced(self) -> None:
        if self._reads_awaiting_term_commit and self.log.term_at(self.log.commit_index) == self.term:
            waiting, self._reads_awaiting_term_commit = self._reads_awaiting_term_commit, []
            for request_id in waiting:
                self._start_read(request_id)
        if self.node_id not in self.conf.voters and self._pending_conf_index <= self.log.commit_index:
            # We removed (or demoted) ourselves and that change is now committed: step down.
            self._become_follower(self.term, NO_NODE)

    # ================================================================ roles

    def _become_follower(self, term: int, leader_id: int) -> None:
        if term < self.term:
            raise AssertionError(f"term would go back from {self.term} to {term}")
        if term > self.term:
            self.term = term
            self.vote = NO_NODE
        self.role = Role.FOLLOWER
        self.leader_id = leader_id
        self._reset_role_state()

    def _start_campaign(self, force: bool) -> None:
        if self.config.pre_vote and not force:
            self.role = Role.PRE_CANDIDATE
            self.leader_id = NO_NODE
            self._reset_role_state()
            self._votes = self._own_vote()
            self._request_votes(_MT.PRE_VOTE, self.term + 1, force=False)
            if len(self._votes) >= self._quorum_size():
                self._campaign_for_real(force=False)
        else:
            self._campaign_for_real(force)

    def _campaign_for_real(self, force: bool) -> None:
        self.term += 1
        self.vote = self.node_id
        self.role = Role.CANDIDATE
        self.leader_id = NO_NODE
        self._reset_role_state()
        self._votes = self._own_vote()
        if len(self._votes) >= self._quorum_size():
            self._become_leader()
            return
        self._request_votes(_MT.VOTE, self.term, force)

    def _request_votes(self, kind: MessageType, term: int, force: bool) -> None:
        last_index, last_term = self.log.last_index, self.log.last_term
        for voter in self.conf.voters:
            if voter != self.node_id:
                self._send(
                    voter,
                    Message(
                        kind, self.node_id, voter, term, log_term=last_term, index=last_index, force=force
                    ),
                )

    def _become_leader(self) -> None:
        self.role = Role.LEADER
        self.leader_id = self.node_id
        self._reset_role_state()
        self._rebuild_progress()
        own = self._progress.get(self.node_id)
        if own is not None:
            own.maybe_update(self.log.stable_index)
            own.become_replicate()
        # Any config entry in our log may still be uncommitted: treat it as pending.
        self._pending_conf_index = self.log.last_index
        self._append_as_leader([Entry(self.term, self.log.last_index + 1, EntryKind.NOOP)])

    def _reset_role_state(self) -> None:
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._reset_randomized_timeout()
        self._votes = {}
        self._progress = {}
        self._lead_transferee = NO_NODE
        self._round_acked = {}
        self._round_sent_tick = {}
        self._lease_start_tick = None
        self._pending_reads = []
        self._reads_awaiting_term_commit = []

    def _reset_randomized_timeout(self) -> None:
        timeout = self.config.election_timeout_ticks
        self._randomized_election_timeout = timeout + self._rng.randrange(timeout)

    def _rebuild_progress(self) -> None:
        """Make ``_progress`` cover exactly the current members, keeping what we knew."""
        old = self._progress
        conf = self.conf
        self._progress = {}
        window = self.config.appends_in_flight_max
        for node_id in conf.voters + conf.learners:
            pr = old.get(node_id)
            if pr is None:
                pr = Progress(self.log.last_index + 1, window)
                pr.recent_active = True  # give newcomers a full timeout before CheckQuorum
            pr.is_learner = node_id in conf.learners
            self._progress[node_id] = pr
        if self.node_id not in self._progress and self.role == Role.LEADER:
            # A leader removing itself still replicates until the change commits.
            own = old.get(self.node_id) or Progress(self.log.last_index + 1, window)
            self._progress[self.node_id] = own

    # ================================================================ membership

    def _record_conf_entries(self, entries: Sequence[Entry]) -> None:
        changed = False
        for entry in entries:
            if entry.kind == EntryKind.CONFIG:
                self._conf_history.append((entry.index, ConfState.decode(entry.data)))
                changed = True
        if changed:
            self._on_conf_changed()

    def _truncate_conf_history(self, from_index: int) -> None:
        if self._conf_history[-1][0] >= from_index:
            while len(self._conf_history) > 1 and self._conf_history[-1][0] >= from_index:
                self._conf_history.pop()
            self._on_conf_changed()

    def _on_conf_changed(self) -> None:
        self._refresh_known_peers()
        if self.role == Role.LEADER:
            self._rebuild_progress()
            if self._lead_transferee not in self.conf.voters:
                self._lead_transferee = NO_NODE
        elif self.role in (Role.CANDIDATE, Role.PRE_CANDIDATE) and not self._promotable():
            self._become_follower(self.term, NO_NODE)

    def _conf_at(self, index: int) -> ConfState:
        return conf_at(self._conf_history, index)

    def _refresh_known_peers(self) -> None:
        self._known_peers = known_peers(self.config.initial_conf, self._conf_history, self.node_id)

    def _promotable(self) -> bool:
        """May campaign: a voter of the latest configuration, or of the one before it while
        the latest (which removed us) is uncommitted. Dissertation 4.2.2: such a server "might
        still be needed until the Cnew entry is committed"; without it a 2-voter cluster whose
        leader appended its own removal and then lost the lead is stuck for good (the other
        voter still needs its vote, which it cannot get with the shorter log)."""
        if self.node_id in self.conf.voters:
            return True
        history = self._conf_history
        return (
            len(history) >= 2
            and history[-1][0] > self.log.commit_index
            and self.node_id in history[-2][1].voters
        )

    def _own_vote(self) -> dict[int, bool]:
        """A campaign's starting tally: our own vote counts only if we are a voter of the
        latest configuration (dissertation 4.2.2)."""
        return {self.node_id: True} if self.node_id in self.conf.voters else {}

    def _quorum_size(self) -> int:
        return len(self.conf.voters) // 2 + 1

    def _in_lease(self) -> bool:
        return (
            self.config.check_quorum
            and self.leader_id != NO_NODE
            and self._election_elapsed < self.config.election_timeout_ticks
        )

    # ================================================================ helpers

    def _send(self, to: int, msg: Message) -> None:
        self._messages.append(msg)

    def _may_be_unseen_leader(self, msg: Message) -> bool:
        """A leader-to-follower message from a node no configuration we hold names can still
        be genuine: a member that missed the entries adding that node (it was down or cut
        off) learns them only from the new node once it leads. Refusing would leave such a
        member stuck forever. Only a second leader of a term whose leader we know is impossible."""
        return msg.type in (_MT.APPEND, _MT.HEARTBEAT, _MT.SNAPSHOT) and not (
            msg.term == self.term and self.leader_id not in (NO_NODE, msg.sender)
        )

    def _check_not_in_ready(self, what: str) -> None:
        if self._ready_outstanding:
            raise InvalidRequestError(f"{what}() called between ready() and advance()")

    def _check_can_propose(self, count: int) -> None:
        if self.role != Role.LEADER:
            raise NotLeaderError(self.leader_id, "propose")
        if self._lead_transferee != NO_NODE:
            raise ProposalDroppedError(f"leadership is being transferred to node {self._lead_transferee}")
        uncommitted = self.log.last_index - self.log.commit_index
        if uncommitted + count > self.config.uncommitted_entries_max:
            raise ProposalDroppedError(
                f"{uncommitted} entries are uncommitted; "
                f"at most {self.config.uncommitted_entries_max} allowed"
            )
