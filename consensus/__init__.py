"""Raft consensus: a pure, sans-I/O core plus the value types it exchanges with its driver.

The core (``RaftCore``) does no I/O: it is driven by ticks, incoming messages and proposals,
and hands back ``Ready`` batches saying what to persist, send and apply. Wire encoding of
the value types lives in ``consensus.codec`` (imported on its own, so the core does not
pull in protobuf).
"""

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
    NO_NODE,
    ConfChange,
    ConfChangeType,
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

__all__ = [
    "NO_NODE",
    "ConfChange",
    "ConfChangeType",
    "ConfState",
    "Entry",
    "EntryKind",
    "HardState",
    "InvalidMessageError",
    "InvalidRequestError",
    "Message",
    "MessageType",
    "NotLeaderError",
    "ProposalDroppedError",
    "RaftConfig",
    "RaftCore",
    "RaftError",
    "ReadState",
    "Ready",
    "RestoredState",
    "Role",
    "Snapshot",
    "SnapshotMeta",
    "SoftState",
]
