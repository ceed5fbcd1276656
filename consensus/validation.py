"""Checks of an incoming Raft message that no correct peer could fail, run before the
message touches any state (``RaftCore.step``): a bad message is refused whole with
``InvalidMessageError`` and changes nothing.

They depend only on the message and on what the receiver knows: its id, the peers any
configuration it holds names, and whether a sender it does not know may be a leader that
it has not heard of yet (the core decides that from its term and the leader it follows).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from consensus.errors import InvalidMessageError
from consensus.messages import ConfState, Entry, EntryKind, Message, MessageType

__all__ = ["check_contiguous", "validate_message"]

_MT = MessageType
_VALID_MESSAGE_TYPES = frozenset(int(t) for t in MessageType)
_VALID_ENTRY_KINDS = frozenset(int(k) for k in EntryKind)
_NON_NEGATIVE_FIELDS = (
    "term",
    "log_term",
    "index",
    "commit",
    "reject_hint",
    "context",
    "chunk_offset",
    "snapshot_size",
)


def validate_message(
    msg: Message,
    node_id: int,
    known_peers: frozenset[int],
    may_be_unseen_leader: Callable[[Message], bool],
) -> None:
    """Refuse a message that no correct peer could send to node ``node_id``."""
    if int(msg.type) not in _VALID_MESSAGE_TYPES:
        raise InvalidMessageError(f"unknown message type {msg.type!r}")
    if msg.recipient != node_id:
        raise InvalidMessageError(f"message for node {msg.recipient} delivered to node {node_id}")
    if msg.sender == node_id or (msg.sender not in known_peers and not may_be_unseen_leader(msg)):
        raise InvalidMessageError(
            f"{msg.type.name} from unknown sender {msg.sender}; known peers are {sorted(known_peers)}"
        )
    for name in _NON_NEGATIVE_FIELDS:
        value = getattr(msg, name)
        if value < 0:
            raise InvalidMessageError(f"{msg.type.name} from {msg.sender}: {name} must be >= 0, got {value}")
    if msg.type in (_MT.VOTE, _MT.PRE_VOTE) and msg.log_term > msg.term:
        raise InvalidMessageError(
            f"{msg.type.name} from {msg.sender}: log_term (last log term) {msg.log_term} "
            f"exceeds campaign term {msg.term}"
        )
    if msg.entries and msg.type != _MT.APPEND:
        raise InvalidMessageError(f"{msg.type.name} from {msg.sender} carries entries; only APPEND may")
    if msg.type == _MT.APPEND:
        _validate_entries(msg)
    elif msg.type == _MT.SNAPSHOT:
        _validate_snapshot_chunk(msg)


def check_contiguous(entries: Sequence[Entry], prev_index: int, what: str) -> None:
    """``entries`` follow ``prev_index`` one index after the other."""
    expected = prev_index + 1
    for entry in entries:
        if entry.index != expected:
            raise InvalidMessageError(
                f"{what}: expected index {expected}, got {entry.index} (not contiguous)"
            )
        expected += 1


def _validate_entries(msg: Message) -> None:
    if msg.log_term > msg.term:
        raise InvalidMessageError(f"APPEND from {msg.sender}: log_term {msg.log_term} > term {msg.term}")
    if msg.index == 0 and msg.log_term != 0:
        raise InvalidMessageError(f"APPEND from {msg.sender}: index 0 must have log_term 0")
    check_contiguous(msg.entries, msg.index, what=f"APPEND from {msg.sender}")
    previous_term = msg.log_term
    for entry in msg.entries:
        if entry.term < previous_term or entry.term > msg.term:
            raise InvalidMessageError(
                f"APPEND from {msg.sender}: entry {entry.index} has term {entry.term}, expected "
                f"{previous_term}..{msg.term} (terms never decrease along a log)"
            )
        previous_term = entry.term
        if int(entry.kind) not in _VALID_ENTRY_KINDS:
            raise InvalidMessageError(f"APPEND from {msg.sender}: entry {entry.index} has unknown kind")
        if entry.kind == EntryKind.CONFIG:
            try:
                conf = ConfState.decode(entry.data)
            except ValueError as exc:
                raise InvalidMessageError(f"APPEND from {msg.sender}: entry {entry.index}: {exc}") from exc
            if not conf.voters:
                raise InvalidMessageError(f"APPEND from {msg.sender}: entry {entry.index} has no voters")


def _validate_snapshot_chunk(msg: Message) -> None:
    meta = msg.snapshot_meta
    if meta is None or meta.index < 1 or meta.term < 1 or meta.term > msg.term:
        raise InvalidMessageError(f"SNAPSHOT from {msg.sender} has invalid metadata {meta!r}")
    if not meta.conf.voters:
        raise InvalidMessageError(f"SNAPSHOT from {msg.sender} carries a configuration with no voters")
    if msg.chunk_offset + len(msg.chunk_data) > msg.snapshot_size:
        raise InvalidMessageError(
            f"SNAPSHOT chunk [{msg.chunk_offset}, {msg.chunk_offset + len(msg.chunk_data)}) "
            f"exceeds the snapshot size {msg.snapshot_size}"
        )
    if msg.chunk_last and msg.chunk_offset + len(msg.chunk_data) != msg.snapshot_size:
        raise InvalidMessageError("SNAPSHOT last chunk does not end at the snapshot size")
