"""Value types exchanged between the Raft core and whoever drives it.

Every type here is an immutable value with no behaviour beyond validation helpers, so the
same objects flow through the pure core, the deterministic simulator and (through the
one-to-one mapping in ``consensus.codec``) the ``proto/raft.proto`` wire schema.

Indices and terms are non-negative integers; index 0 / term 0 mean "nothing" (the empty
log before its first entry). Node ids are positive integers; 0 means "no node".
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

NO_NODE = 0


class MessageType(enum.IntEnum):
    """Kinds of Raft message. Values are the wire values of ``raft.MessageType``."""

    VOTE = 1
    VOTE_RESPONSE = 2
    PRE_VOTE = 3
    PRE_VOTE_RESPONSE = 4
    APPEND = 5
    APPEND_RESPONSE = 6
    HEARTBEAT = 7
    HEARTBEAT_RESPONSE = 8
    SNAPSHOT = 9
    SNAPSHOT_RESPONSE = 10
    TIMEOUT_NOW = 11


class EntryKind(enum.IntEnum):
    """What a log entry carries. Values are the wire values of ``raft.EntryKind``."""

    NORMAL = 1
    NOOP = 2
    CONFIG = 3


class Role(enum.IntEnum):
    FOLLOWER = 1
    PRE_CANDIDATE = 2
    CANDIDATE = 3
    LEADER = 4


@dataclass(frozen=True, slots=True)
class Entry:
    """One log entry. ``data`` of a CONFIG entry is ``ConfState.encode()`` of the new config."""

    term: int
    index: int
    kind: EntryKind = EntryKind.NORMAL
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class ConfState:
    """A complete cluster membership: voters decide, learners only receive the log."""

    voters: tuple[int, ...]
    learners: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for node_id in self.voters + self.learners:
            if not isinstance(node_id, int) or node_id <= 0:
                raise ValueError(f"node ids must be positive integers, got {node_id!r}")
        if len(set(self.voters)) != len(self.voters):
            raise ValueError(f"duplicate voter ids in {self.voters}")
        if set(self.voters) & set(self.learners):
            raise ValueError(f"a node cannot be voter and learner: {self.voters} / {self.learners}")

    @property
    def members(self) -> frozenset[int]:
        return frozenset(self.voters) | frozenset(self.learners)

    def encode(self) -> bytes:
        """A small, stable text encoding used as the payload of CONFIG entries."""
        voters = ",".join(str(v) for v in self.voters)
        learners = ",".join(str(v) for v in self.learners)
        return f"v={voters};l={learners}".encode("ascii")

    @staticmethod
    def decode(data: bytes) -> ConfState:
        try:
            voter_part, learner_part = data.decode("ascii").split(";")
            if not voter_part.startswith("v=") or not learner_part.startswith("l="):
                raise ValueError("missing v= or l= prefix")
            voters = tuple(int(x) for x in voter_part[2:].split(",") if x)
            learners = tuple(int(x) for x in learner_part[2:].split(",") if x)
        except (UnicodeDecodeError, ValueError) as exc:
            raise ValueError(f"malformed config entry payload {data[:64]!r}: {exc}") from exc
        return ConfState(voters=voters, learners=learners)


class ConfChangeType(enum.IntEnum):
    ADD_LEARNER = 1
    PROMOTE_LEARNER = 2
    REMOVE_NODE = 3
    ADD_VOTER = 4


@dataclass(frozen=True, slots=True)
class ConfChange:
    """A single-step membership change requested by the application."""

    change: ConfChangeType
    node_id: int


@dataclass(frozen=True, slots=True)
class HardState:
    """What must be durable before any message that depends on it leaves the node."""

    term: int = 0
    vote: int = NO_NODE
    commit: int = 0


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    index: int
    term: int
    conf: ConfState


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The application's state machine image at ``meta.index`` (its bytes are opaque here)."""

    meta: SnapshotMeta
    data: bytes


@dataclass(frozen=True, slots=True)
class Message:
    """One Raft message. A flat record (as in etcd/raft) so the wire schema is one message.

    Field use per type:
      * VOTE / PRE_VOTE: ``log_term``/``index`` describe the candidate's last entry;
        ``force`` is set when the campaign follows a leadership transfer.
      * *_RESPONSE to votes: ``reject``.
      * APPEND: ``log_term``/``index`` of the entry preceding ``entries``; ``commit``.
      * APPEND_RESPONSE: ``index`` = last index now matching (accept) or the rejected probe
        index; ``reject_hint`` / ``log_term`` = follower's hint for fast back-off.
      * HEARTBEAT: ``commit``, ``context`` = heartbeat round number (ReadIndex / lease).
      * HEARTBEAT_RESPONSE: ``context`` echoed.
      * SNAPSHOT: ``snapshot_meta`` plus one chunk: ``chunk_offset``, ``chunk_data``,
        ``chunk_last``, ``snapshot_size``.
      * SNAPSHOT_RESPONSE: ``chunk_offset`` = bytes received so far; ``reject`` on a gap;
        ``index`` = follower's last index once installed.
      * TIMEOUT_NOW: asks the target to campaign at once.
    """

    type: MessageType
    sender: int
    recipient: int
    term: int
    log_term: int = 0
    index: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0
    context: int = 0
    force: bool = False
    snapshot_meta: SnapshotMeta | None = None
    chunk_offset: int = 0
    chunk_data: bytes = b""
    chunk_last: bool = False
    snapshot_size: int = 0


@dataclass(frozen=True, slots=True)
class ReadState:
    """A ReadIndex request that became safe: serve it once applied index >= ``index``."""

    request_id: bytes
    index: int


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile facts about the node worth reporting (not persisted)."""

    leader_id: int
    role: Role


@dataclass(slots=True)
class Ready:
    """A batch of work the driver must do, in this order, then call ``RaftCore.advance``.

    1. If ``snapshot`` is set: persist it, discard every persisted log entry, restore the
       state machine from it.
    2. Persist ``entries``: they replace any persisted entries with index >=
       ``entries[0].index`` (a conflict truncation), then persist ``hard_state`` if set.
       Sync before going on (fsync policy permitting).
    3. Send ``messages`` (only now: they may promise what steps 1-2 made durable).
    4. Apply ``committed_entries`` in order (they are durable on a quorum and locally).
    5. Serve ``read_states`` once the applied index reaches each one's ``index``.
    """

    soft_state: SoftState | None = None
    hard_state: HardState | None = None
    snapshot: Snapshot | None = None
    entries: list[Entry] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    committed_entries: list[Entry] = field(default_factory=list)
    read_states: list[ReadState] = field(default_factory=list)

    def is_empty(self) -> bool:
        return (
            self.soft_state is None
            and self.hard_state is None
            and self.snapshot is None
            and not self.entries
            and not self.messages
            and not self.committed_entries
            and not self.read_states
        )


@dataclass(frozen=True, slots=True)
class RestoredState:
    """What a node found on its disk at start: the input to ``RaftCore.__init__``."""

    hard_state: HardState = HardState()
    snapshot: Snapshot | None = None
    entries: tuple[Entry, ...] = ()
