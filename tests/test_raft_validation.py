"""Malformed or impossible input: messages no correct peer could send raise
InvalidMessageError and leave the node exactly as it was; misuse of the driving contract
and impossible requests raise InvalidRequestError; bad configs raise ValueError."""

from __future__ import annotations

import contextlib
import dataclasses
import random
from collections.abc import Callable

import pytest

from consensus.config import RaftConfig
from consensus.core import RaftCore
from consensus.errors import InvalidMessageError, InvalidRequestError
from consensus.messages import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryKind,
    HardState,
    Message,
    MessageType,
    RestoredState,
    SnapshotMeta,
)
from tests.raft_harness import Cluster
from tests.raft_scenarios_util import Holder, fingerprint

MT = MessageType
CONF = ConfState((1, 2, 3))


class Ctx:
    """A settled 3-node cluster seen from one follower, with a well-formed APPEND to vary."""

    def __init__(self) -> None:
        self.cluster = Cluster(3)
        self.leader = self.cluster.elect()
        self.cluster.tick(3)
        self.cluster.crash(self.leader)  # a second term, so that entry terms can decrease
        self.leader = self.cluster.elect()
        self.cluster.propose(self.leader, b"payload")
        self.cluster.tick(2)
        self.follower = next(i for i in self.cluster.cores if i != self.leader and i not in self.cluster.down)
        self.core = self.cluster.cores[self.follower]
        self.term = self.core.term
        self.last = self.core.log.last_index
        self.last_term = self.core.log.last_term
        assert self.term >= 2 and not self.core.has_ready()

    def append(self, **fields: object) -> Message:
        base = Message(
            MT.APPEND,
            self.leader,
            self.follower,
            self.term,
            log_term=self.last_term,
            index=self.last,
            entries=(Entry(self.term, self.last + 1, EntryKind.NORMAL, b"new"),),
            commit=self.core.commit_index,
        )
        return dataclasses.replace(base, **fields)  # type: ignore[arg-type]

    def snapshot(self, **fields: object) -> Message:
        base = Message(
            MT.SNAPSHOT,
            self.leader,
            self.follower,
            self.term,
            snapshot_meta=SnapshotMeta(self.last + 5, self.term, CONF),
            chunk_offset=0,
            chunk_data=b"abcd",
            chunk_last=True,
            snapshot_size=4,
        )
        return dataclasses.replace(base, **fields)  # type: ignore[arg-type]

    def entries(self, *terms_and_offsets: tuple[int, int]) -> tuple[Entry, ...]:
        """Entries at last + offset with the given terms."""
        return tuple(Entry(t, self.last + k, EntryKind.NORMAL, b"e") for t, k in terms_and_offsets)


BAD_MESSAGES: dict[str, tuple[Callable[[Ctx], Message], str]] = {
    "negative index": (lambda c: c.append(index=-1), "index must be >= 0"),
    "negative term": (lambda c: c.append(term=-1), "term must be >= 0"),
    "negative log_term": (lambda c: c.append(log_term=-3), "log_term must be >= 0"),
    "negative commit": (lambda c: c.append(commit=-1), "commit must be >= 0"),
    "negative heartbeat commit": (
        lambda c: Message(MT.HEARTBEAT, c.leader, c.follower, c.term, commit=-5),
        "commit must be >= 0",
    ),
    "negative reject hint": (
        lambda c: Message(MT.APPEND_RESPONSE, c.leader, c.follower, c.term, reject=True, reject_hint=-1),
        "reject_hint must be >= 0",
    ),
    "gap in entries": (lambda c: c.append(entries=c.entries((c.term, 1), (c.term, 3))), "not contiguous"),
    "entries not after prev index": (lambda c: c.append(entries=c.entries((c.term, 2))), "not contiguous"),
    "entry term above message term": (lambda c: c.append(entries=c.entries((c.term + 1, 1))), "has term"),
    "entry terms decreasing": (
        lambda c: c.append(log_term=1, entries=c.entries((c.term, 1), (1, 2))),
        "terms never decrease",
    ),
    "entry term below prev log term": (
        lambda c: c.append(entries=c.entries((c.last_term - 1, 1))),
        "has term",
    ),
    "prev log term above term": (lambda c: c.append(log_term=c.term + 1, term=c.term), "log_term"),
    "index 0 with a log term": (lambda c: c.append(index=0, log_term=1, entries=()), "index 0"),
    "unknown sender": (lambda c: c.append(sender=9), "unknown sender 9"),
    "message from itself": (lambda c: c.append(sender=c.follower), "unknown sender"),
    "wrong recipient": (lambda c: c.append(recipient=c.leader), "delivered to node"),
    "unknown message type": (lambda c: c.append(type=99, entries=()), "unknown message type"),
    "entries on a heartbeat": (
        lambda c: Message(MT.HEARTBEAT, c.leader, c.follower, c.term, entries=c.entries((c.term, 1))),
        "only APPEND may",
    ),
    "entries on a vote": (
        lambda c: Message(MT.VOTE, c.leader, c.follower, c.term + 1, entries=c.entries((c.term, 1))),
        "only APPEND may",
    ),
    "unknown entry kind": (
        lambda c: c.append(entries=(Entry(c.term, c.last + 1, 42, b""),)),  # type: ignore[arg-type]
        "unknown kind",
    ),
    "garbage config payload": (
        lambda c: c.append(entries=(Entry(c.term, c.last + 1, EntryKind.CONFIG, b"\xff\x00nonsense"),)),
        "malformed config",
    ),
    "config without voters": (
        lambda c: c.append(entries=(Entry(c.term, c.last + 1, EntryKind.CONFIG, b"v=;l=4"),)),
        "no voters",
    ),
    "config with bad ids": (
        lambda c: c.append(entries=(Entry(c.term, c.last + 1, EntryKind.CONFIG, b"v=1,1;l="),)),
        "duplicate",
    ),
    "snapshot without meta": (lambda c: c.snapshot(snapshot_meta=None), "invalid metadata"),
    "snapshot meta term above term": (
        lambda c: c.snapshot(snapshot_meta=SnapshotMeta(c.last + 5, c.term + 1, CONF)),
        "invalid metadata",
    ),
    "snapshot at index 0": (lambda c: c.snapshot(snapshot_meta=SnapshotMeta(0, 1, CONF)), "invalid metadata"),
    "snapshot without voters": (
        lambda c: c.snapshot(snapshot_meta=SnapshotMeta(c.last + 5, c.term, ConfState(()))),
        "no voters",
    ),
    "snapshot chunk beyond size": (lambda c: c.snapshot(snapshot_size=3, chunk_last=False), "exceeds"),
    "snapshot last chunk short of size": (lambda c: c.snapshot(snapshot_size=10), "does not end"),
    "negative chunk offset": (lambda c: c.snapshot(chunk_offset=-1), "chunk_offset must be >= 0"),
}


@pytest.mark.parametrize("case", sorted(BAD_MESSAGES))
def test_malformed_message_is_rejected_and_changes_nothing(case: str) -> None:
    ctx = Ctx()
    build, expected = BAD_MESSAGES[case]
    msg = build(ctx)
    before = fingerprint(ctx.core)
    entries_before = ctx.core.log.slice(1, ctx.last + 1)
    with pytest.raises(InvalidMessageError, match=expected):
        ctx.core.step(msg)
    assert fingerprint(ctx.core) == before
    assert ctx.core.log.slice(1, ctx.last + 2) == entries_before
    # The node still works: the well-formed variant is accepted.
    ctx.core.step(ctx.append())
    assert ctx.core.log.last_index == ctx.last + 1


def test_a_malformed_message_to_a_leader_changes_nothing() -> None:
    ctx = Ctx()
    leader = ctx.cluster.cores[ctx.leader]
    before = fingerprint(leader)
    progress_before = repr(leader.progress(ctx.follower))
    bad = Message(MT.APPEND_RESPONSE, ctx.follower, ctx.leader, ctx.term + 1, index=-1)
    with pytest.raises(InvalidMessageError):
        leader.step(bad)
    assert fingerprint(leader) == before and repr(leader.progress(ctx.follower)) == progress_before


def test_a_vote_request_claiming_a_last_log_term_above_its_term_is_impossible() -> None:
    # A candidate's last entry was written in a term no later than the one it campaigns in
    # (same rule as "entry term above message term" for APPEND).
    ctx = Ctx()
    before = fingerprint(ctx.core)
    for kind in (MT.VOTE, MT.PRE_VOTE):
        bogus = Message(kind, ctx.leader, ctx.follower, ctx.term + 1, log_term=ctx.term + 50, index=ctx.last)
        with pytest.raises(InvalidMessageError, match="log_term"):
            ctx.core.step(bogus)
        assert fingerprint(ctx.core) == before


def test_a_heartbeat_response_for_a_round_never_sent_cannot_confirm_reads() -> None:
    # No correct follower acknowledges a heartbeat round the leader has not sent yet. If
    # the leader took one at face value, later ReadIndex rounds would count that follower
    # without hearing from it. Rejecting (InvalidMessageError) or ignoring it are both fine.
    cluster = Cluster(5)
    leader = cluster.elect()
    cluster.tick(3)
    core = cluster.cores[leader]
    liar, honest = [i for i in cluster.cores if i != leader][:2]
    with contextlib.suppress(InvalidMessageError):
        core.step(Message(MT.HEARTBEAT_RESPONSE, liar, leader, core.term, context=1_000_000))
    holder = Holder(cluster, lambda m: m.type == MT.HEARTBEAT_RESPONSE).install()
    core.read_index(b"r")
    cluster.deliver_all()
    holder.release(lambda m: m.sender == honest)
    # Leader + one real answer is 2 of 5: not a quorum.
    assert cluster.records[leader].read_states == []


def test_no_call_may_happen_between_ready_and_advance() -> None:
    ctx = Ctx()
    leader = ctx.cluster.cores[ctx.leader]
    leader.propose(b"pending")
    rd = leader.ready()
    hb = Message(MT.HEARTBEAT_RESPONSE, ctx.follower, ctx.leader, ctx.term)
    calls: dict[str, Callable[[], object]] = {
        "step": lambda: leader.step(hb),
        "propose": lambda: leader.propose(b"x"),
        "propose_conf_change": lambda: leader.propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, 4)),
        "tick": leader.tick,
        "read_index": lambda: leader.read_index(b"r"),
        "campaign": leader.campaign,
        "transfer_leadership": lambda: leader.transfer_leadership(ctx.follower),
        "compact": lambda: leader.compact(1, b"s"),
        "ready": leader.ready,
    }
    for name, call in calls.items():
        with pytest.raises(InvalidRequestError, match=f"{name}\\(\\) called between ready\\(\\) and advance"):
            call()
    with pytest.raises(InvalidRequestError, match="propose\\(\\) called between"):
        leader.propose_batch([b"x", b"y"])
    leader.advance(rd)
    with pytest.raises(InvalidRequestError, match="without a preceding ready"):
        leader.advance(rd)
    leader.propose(b"fine-again")


def test_compact_beyond_applied_or_not_after_the_snapshot_is_invalid() -> None:
    ctx = Ctx()
    core = ctx.core
    applied = core.applied_index
    with pytest.raises(InvalidRequestError, match="beyond applied index"):
        core.compact(applied + 1, b"state")
    core.compact(applied - 1, b"state")
    with pytest.raises(InvalidRequestError, match="not after snapshot index"):
        core.compact(applied - 1, b"state")
    assert core.log.first_index == applied


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"node_id": 0}, "node_id must be a positive"),
        ({"heartbeat_interval_ticks": 0}, "heartbeat_interval_ticks must be >= 1"),
        ({"election_timeout_ticks": 3, "heartbeat_interval_ticks": 3}, "must exceed heartbeat"),
        ({"lease_read": True, "check_quorum": False}, "lease_read requires check_quorum"),
        ({"lease_clock_drift_ticks": 10}, "lease_clock_drift_ticks must be in"),
        ({"lease_clock_drift_ticks": -1}, "lease_clock_drift_ticks must be in"),
        ({"entries_per_append_max": 0}, "entries_per_append_max must be >= 1"),
        ({"append_bytes_max": 0}, "append_bytes_max must be >= 1"),
        ({"appends_in_flight_max": 0}, "appends_in_flight_max must be >= 1"),
        ({"snapshot_chunk_bytes_max": 0}, "snapshot_chunk_bytes_max must be >= 1"),
        ({"uncommitted_entries_max": 0}, "uncommitted_entries_max must be >= 1"),
        ({"pending_reads_max": 0}, "pending_reads_max must be >= 1"),
    ],
)
def test_raft_config_validation(fields: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"node_id": 1, "initial_conf": CONF, **fields}
    with pytest.raises(ValueError, match=message):
        RaftConfig(**args)  # type: ignore[arg-type]


def test_inconsistent_persisted_state_is_refused_at_start() -> None:
    config = RaftConfig(node_id=1, initial_conf=CONF)
    entries = (Entry(1, 1), Entry(1, 2))
    with pytest.raises(InvalidRequestError, match="beyond the restored log"):
        RaftCore(config, RestoredState(HardState(1, 1, 5), None, entries), random.Random(0))
    with pytest.raises(InvalidMessageError, match="not contiguous"):
        RaftCore(
            config, RestoredState(HardState(1, 1, 1), None, (Entry(1, 1), Entry(1, 3))), random.Random(0)
        )
