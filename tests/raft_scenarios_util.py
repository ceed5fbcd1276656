"""Helpers for the Raft scenario tests, on top of ``tests/raft_harness.py``.

* ``Holder``: a ``drop_filter`` that holds matching messages back (instead of losing them)
  so a test can release them later, one by one or in groups.
* ``RandomDrop``: a seeded lossy network.
* Queries: a node's log entries, its applied state machine (replays after a restart are
  checked, not double counted), fingerprints of a core's state, messages sent since a mark.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from consensus.core import RaftCore
from consensus.messages import Entry, EntryKind, Message, MessageType, Role
from tests.raft_harness import Cluster

MessagePredicate = Callable[[Message], bool]

SNAPSHOT_MARKER = b"<snap>"  # what the harness records as "applied" when a snapshot is installed


class Holder:
    """A drop filter that keeps the messages matching ``predicate`` for later release."""

    def __init__(self, cluster: Cluster, predicate: MessagePredicate) -> None:
        self.cluster = cluster
        self.predicate = predicate
        self.held: list[Message] = []
        self._bypass = False
        self.next_filter: MessagePredicate | None = None  # applied to messages not held

    def __call__(self, msg: Message) -> bool:
        if not self._bypass and self.predicate(msg):
            self.held.append(msg)
            return True
        return self.next_filter is not None and self.next_filter(msg)

    def install(self) -> Holder:
        self.cluster.drop_filter = self
        return self

    def take(self, predicate: MessagePredicate | None = None) -> list[Message]:
        """Remove and return the held messages matching ``predicate`` (all if None)."""
        taken = [m for m in self.held if predicate is None or predicate(m)]
        self.held = [m for m in self.held if not (predicate is None or predicate(m))]
        return taken

    def discard(self, predicate: MessagePredicate | None = None) -> int:
        return len(self.take(predicate))

    def release(self, predicate: MessagePredicate | None = None, settle: bool = True) -> int:
        """Deliver the matching held messages (in the order they were held), then let the
        network settle; messages they cause are subject to the holder again."""
        released = self.take(predicate)
        self._bypass = True
        try:
            for msg in released:
                self.cluster.deliver_one(msg)
        finally:
            self._bypass = False
        if settle:
            self.cluster.deliver_all()
        return len(released)


class RandomDrop:
    """Drop each message with probability ``rate`` (seeded, so runs are reproducible)."""

    def __init__(self, rate: float, seed: int) -> None:
        self.rate = rate
        self.rng = random.Random(seed)
        self.dropped = 0
        self.enabled = True

    def __call__(self, msg: Message) -> bool:
        if self.enabled and self.rng.random() < self.rate:
            self.dropped += 1
            return True
        return False


def log_entries(core: RaftCore) -> list[Entry]:
    """The entries a core holds (after its snapshot, if any)."""
    return core.log.slice(core.log.first_index, core.log.last_index + 1)


def entry_ids(entries: list[Entry]) -> list[tuple[int, int, bytes]]:
    return [(e.index, e.term, e.data) for e in entries]


def applied_state(cluster: Cluster, node_id: int) -> dict[int, Entry]:
    """index -> entry for everything ``node_id`` applied. After a restart the harness replays
    committed entries into the same record: a replayed index must carry the same entry."""
    state: dict[int, Entry] = {}
    for entry in cluster.records[node_id].applied:
        if entry.kind == EntryKind.NOOP and entry.data == SNAPSHOT_MARKER:
            continue
        previous = state.setdefault(entry.index, entry)
        assert previous == entry, f"node {node_id} applied {previous} and later {entry} at the same index"
    return state


def applied_normal_data(cluster: Cluster, node_id: int) -> list[bytes]:
    """Client payloads applied by ``node_id``, in index order, each index once."""
    state = applied_state(cluster, node_id)
    return [state[i].data for i in sorted(state) if state[i].kind == EntryKind.NORMAL]


def assert_state_machine_safety(cluster: Cluster) -> None:
    """No two nodes ever applied different entries at the same index (Raft's State Machine
    Safety), and no node applied two different entries at one index."""
    seen: dict[int, tuple[int, Entry]] = {}
    for node_id in sorted(cluster.records):
        for index, entry in applied_state(cluster, node_id).items():
            first = seen.setdefault(index, (node_id, entry))
            assert first[1] == entry, (
                f"index {index}: node {first[0]} applied {first[1]}, node {node_id} {entry}"
            )


def fingerprint(core: RaftCore) -> tuple[object, ...]:
    """Everything a rejected message or request must leave untouched."""
    return (
        core.term,
        core.vote,
        core.role,
        core.leader_id,
        core.log.first_index,
        core.log.last_index,
        core.log.last_term,
        core.commit_index,
        core.applied_index,
        core.conf,
        core.has_ready(),
    )


def sent_since(
    cluster: Cluster,
    mark: int,
    kind: MessageType | None = None,
    sender: int | None = None,
    recipient: int | None = None,
) -> list[Message]:
    """Messages handed to the network after ``mark`` (an earlier ``len(cluster.sent)``)."""
    return [
        m
        for m in cluster.sent[mark:]
        if (kind is None or m.type == kind)
        and (sender is None or m.sender == sender)
        and (recipient is None or m.recipient == recipient)
    ]


def force_leader(cluster: Cluster, node_id: int, attempts: int = 5) -> None:
    """Make ``node_id`` campaign (again, if a first try loses on terms) until it leads,
    without ticking anyone: the test decides who can hear it."""
    for _ in range(attempts):
        cluster.cores[node_id].campaign()
        cluster.deliver_all()
        if cluster.cores[node_id].role == Role.LEADER:
            return
    raise AssertionError(f"node {node_id} did not win within {attempts} campaigns: {cluster.cores}")
