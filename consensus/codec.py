"""Conversion between the value types of ``consensus.messages`` and the ``proto/raft.proto`` schema.

The mapping is one-to-one: every dataclass field is the proto field of the same name, and
enum values are the same numbers (proto's 0 = UNSPECIFIED has no Python counterpart and is
rejected). For each type there is a ``*_to_proto`` / ``*_from_proto`` pair, and for the
types that travel or are stored on their own an ``encode_*`` / ``decode_*`` pair over bytes.

Encoding a value protobuf cannot hold (a negative or >= 2**64 integer, a ``str`` where bytes
belong) and decoding bytes that are not a valid record (malformed protobuf, an unknown
enum value, an impossible ``ConfState``, a missing required sub-message) raise
``InvalidMessageError`` naming the offending field, e.g. ``Message.entries[3].kind``.

Entries are the bulk of the traffic, so each one costs exactly one constructor call in
either direction; all checking of their fields that is not a dictionary lookup happens only
after a failure, to name the field.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from google.protobuf.message import DecodeError
from google.protobuf.message import Message as ProtoMessage

from consensus.errors import InvalidMessageError
from consensus.messages import (
    ConfState,
    Entry,
    EntryKind,
    HardState,
    Message,
    MessageType,
    Snapshot,
    SnapshotMeta,
)
from proto import raft_pb2

__all__ = [
    "conf_state_from_proto",
    "conf_state_to_proto",
    "decode_entry",
    "decode_hard_state",
    "decode_message",
    "decode_snapshot",
    "encode_entry",
    "encode_hard_state",
    "encode_message",
    "encode_snapshot",
    "entry_from_proto",
    "entry_to_proto",
    "hard_state_from_proto",
    "hard_state_to_proto",
    "message_from_proto",
    "message_to_proto",
    "snapshot_from_proto",
    "snapshot_meta_from_proto",
    "snapshot_meta_to_proto",
    "snapshot_to_proto",
]

_P = TypeVar("_P", bound=ProtoMessage)

_MESSAGE_TYPE_BY_WIRE: dict[int, MessageType] = {member.value: member for member in MessageType}
_ENTRY_KIND_BY_WIRE: dict[int, EntryKind] = {member.value: member for member in EntryKind}

# The hot loops below build ``Entry`` positionally (a quarter faster than by keyword); this
# pins the order they rely on.
if tuple(f.name for f in dataclasses.fields(Entry)) != ("term", "index", "kind", "data"):
    raise AssertionError("consensus.codec assumes Entry's fields are (term, index, kind, data)")

# The generated stubs type enum arguments as the proto enum classes; our IntEnums carry the
# same numbers, which the runtime accepts. Calling through these untyped aliases says so once
# instead of casting every value (``typing.cast`` is a real call, per entry).
_new_entry_proto: Callable[..., raft_pb2.Entry] = raft_pb2.Entry
_new_message_proto: Callable[..., raft_pb2.Message] = raft_pb2.Message


# ---- encoding -----------------------------------------------------------------------------


def entry_to_proto(entry: Entry) -> raft_pb2.Entry:
    try:
        return _new_entry_proto(term=entry.term, index=entry.index, kind=entry.kind, data=entry.data)
    except (TypeError, ValueError) as exc:
        raise _encode_error("Entry", raft_pb2.Entry(), entry, exc) from exc


def conf_state_to_proto(conf: ConfState) -> raft_pb2.ConfState:
    try:
        return raft_pb2.ConfState(voters=conf.voters, learners=conf.learners)
    except (TypeError, ValueError) as exc:
        raise _encode_error("ConfState", raft_pb2.ConfState(), conf, exc) from exc


def hard_state_to_proto(hard_state: HardState) -> raft_pb2.HardState:
    try:
        return raft_pb2.HardState(term=hard_state.term, vote=hard_state.vote, commit=hard_state.commit)
    except (TypeError, ValueError) as exc:
        raise _encode_error("HardState", raft_pb2.HardState(), hard_state, exc) from exc


def snapshot_meta_to_proto(meta: SnapshotMeta) -> raft_pb2.SnapshotMeta:
    try:
        return _snapshot_meta_to_proto(meta)
    except (TypeError, ValueError) as exc:
        raise _encode_error("SnapshotMeta", raft_pb2.SnapshotMeta(), meta, exc) from exc


def snapshot_to_proto(snapshot: Snapshot) -> raft_pb2.Snapshot:
    try:
        return raft_pb2.Snapshot(meta=_snapshot_meta_to_proto(snapshot.meta), data=snapshot.data)
    except (TypeError, ValueError) as exc:
        raise _encode_error("Snapshot", raft_pb2.Snapshot(), snapshot, exc) from exc


def message_to_proto(msg: Message) -> raft_pb2.Message:
    try:
        proto = _new_message_proto(
            type=msg.type,
            sender=msg.sender,
            recipient=msg.recipient,
            term=msg.term,
            log_term=msg.log_term,
            index=msg.index,
            commit=msg.commit,
            reject=msg.reject,
            reject_hint=msg.reject_hint,
            context=msg.context,
            force=msg.force,
            chunk_offset=msg.chunk_offset,
            chunk_data=msg.chunk_data,
            chunk_last=msg.chunk_last,
            snapshot_size=msg.snapshot_size,
        )
        if msg.snapshot_meta is not None:
            proto.snapshot_meta.CopyFrom(_snapshot_meta_to_proto(msg.snapshot_meta))
        # ``add`` builds each entry in place: about twice as fast as constructing them apart.
        add_entry = proto.entries.add
        for entry in msg.entries:
            add_entry(term=entry.term, index=entry.index, kind=entry.kind, data=entry.data)
    except (TypeError, ValueError) as exc:
        raise _encode_error("Message", raft_pb2.Message(), msg, exc) from exc
    return proto


def encode_entry(entry: Entry) -> bytes:
    return entry_to_proto(entry).SerializeToString()


def encode_hard_state(hard_state: HardState) -> bytes:
    return hard_state_to_proto(hard_state).SerializeToString()


def encode_snapshot(snapshot: Snapshot) -> bytes:
    return snapshot_to_proto(snapshot).SerializeToString()


def encode_message(msg: Message) -> bytes:
    return message_to_proto(msg).SerializeToString()


def _snapshot_meta_to_proto(meta: SnapshotMeta) -> raft_pb2.SnapshotMeta:
    return raft_pb2.SnapshotMeta(
        index=meta.index,
        term=meta.term,
        conf=raft_pb2.ConfState(voters=meta.conf.voters, learners=meta.conf.learners),
    )


def _encode_error(path: str, empty_proto: ProtoMessage, value: object, exc: Exception) -> InvalidMessageError:
    """Slow path after a failed encode: find the first field protobuf refuses and name it."""
    located = _locate_unencodable(empty_proto, value, path)
    return InvalidMessageError(located or f"{path}: cannot encode: {exc}")


def _locate_unencodable(proto: Any, value: object, path: str) -> str | None:
    # Dataclass and proto field names are the same by construction of the schema, so the
    # value can be replayed field by field into an empty proto to see which one fails.
    if not dataclasses.is_dataclass(value):
        return f"{path}: expected a {type(proto).__name__} value, got {type(value).__name__}"
    for field in dataclasses.fields(value):
        item = getattr(value, field.name)
        field_path = f"{path}.{field.name}"
        if item is None:
            continue
        if dataclasses.is_dataclass(item):
            problem = _locate_unencodable(getattr(proto, field.name), item, field_path)
        elif isinstance(item, tuple):
            problem = _locate_unencodable_repeated(getattr(proto, field.name), item, field_path)
        else:
            problem = _try_assign(proto, field.name, item, field_path)
        if problem is not None:
            return problem
    return None


def _locate_unencodable_repeated(container: Any, items: tuple[object, ...], path: str) -> str | None:
    for position, item in enumerate(items):
        item_path = f"{path}[{position}]"
        if dataclasses.is_dataclass(item):
            problem = _locate_unencodable(container.add(), item, item_path)
        else:
            try:
                container.append(item)
                problem = None
            except (TypeError, ValueError) as exc:
                problem = f"{item_path}: cannot encode {item!r}: {exc}"
        if problem is not None:
            return problem
    return None


def _try_assign(proto: Any, name: str, item: object, path: str) -> str | None:
    try:
        setattr(proto, name, item)
    except (TypeError, ValueError) as exc:
        return f"{path}: cannot encode {item!r}: {exc}"
    return None


# ---- decoding -----------------------------------------------------------------------------


def entry_from_proto(proto: raft_pb2.Entry) -> Entry:
    kind = _ENTRY_KIND_BY_WIRE.get(proto.kind)
    if kind is None:
        raise _unknown_enum_error("Entry.kind", EntryKind, proto.kind)
    return Entry(proto.term, proto.index, kind, proto.data)


def conf_state_from_proto(proto: raft_pb2.ConfState) -> ConfState:
    return _conf_state_from_proto(proto, "ConfState")


def hard_state_from_proto(proto: raft_pb2.HardState) -> HardState:
    return HardState(term=proto.term, vote=proto.vote, commit=proto.commit)


def snapshot_meta_from_proto(proto: raft_pb2.SnapshotMeta) -> SnapshotMeta:
    return _snapshot_meta_from_proto(proto, "SnapshotMeta")


def snapshot_from_proto(proto: raft_pb2.Snapshot) -> Snapshot:
    if not proto.HasField("meta"):
        raise InvalidMessageError("Snapshot.meta: missing (every snapshot carries its metadata)")
    return Snapshot(meta=_snapshot_meta_from_proto(proto.meta, "Snapshot.meta"), data=proto.data)


def message_from_proto(proto: raft_pb2.Message) -> Message:
    msg_type = _MESSAGE_TYPE_BY_WIRE.get(proto.type)
    if msg_type is None:
        raise _unknown_enum_error("Message.type", MessageType, proto.type)
    kinds = _ENTRY_KIND_BY_WIRE
    try:
        entries = tuple([Entry(e.term, e.index, kinds[e.kind], e.data) for e in proto.entries])
    except KeyError:
        raise _bad_entry_kind_error("Message.entries", proto.entries) from None
    snapshot_meta = (
        _snapshot_meta_from_proto(proto.snapshot_meta, "Message.snapshot_meta")
        if proto.HasField("snapshot_meta")
        else None
    )
    return Message(
        type=msg_type,
        sender=proto.sender,
        recipient=proto.recipient,
        term=proto.term,
        log_term=proto.log_term,
        index=proto.index,
        entries=entries,
        commit=proto.commit,
        reject=proto.reject,
        reject_hint=proto.reject_hint,
        context=proto.context,
        force=proto.force,
        snapshot_meta=snapshot_meta,
        chunk_offset=proto.chunk_offset,
        chunk_data=proto.chunk_data,
        chunk_last=proto.chunk_last,
        snapshot_size=proto.snapshot_size,
    )


def decode_entry(data: bytes) -> Entry:
    return entry_from_proto(_parse(raft_pb2.Entry, data, "Entry"))


def decode_hard_state(data: bytes) -> HardState:
    return hard_state_from_proto(_parse(raft_pb2.HardState, data, "HardState"))


def decode_snapshot(data: bytes) -> Snapshot:
    return snapshot_from_proto(_parse(raft_pb2.Snapshot, data, "Snapshot"))


def decode_message(data: bytes) -> Message:
    return message_from_proto(_parse(raft_pb2.Message, data, "Message"))


def _parse(proto_class: type[_P], data: bytes, name: str) -> _P:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidMessageError(f"{name}: expected bytes to decode, got {type(data).__name__}")
    try:
        return proto_class.FromString(data)
    except DecodeError as exc:
        raise InvalidMessageError(f"{name}: not a valid encoding ({len(data)} bytes): {exc}") from exc


def _conf_state_from_proto(proto: raft_pb2.ConfState, path: str) -> ConfState:
    try:
        return ConfState(voters=tuple(proto.voters), learners=tuple(proto.learners))
    except ValueError as exc:
        raise InvalidMessageError(f"{path}: {exc}") from exc


def _snapshot_meta_from_proto(proto: raft_pb2.SnapshotMeta, path: str) -> SnapshotMeta:
    if not proto.HasField("conf"):
        raise InvalidMessageError(f"{path}.conf: missing (every snapshot records its membership)")
    conf = _conf_state_from_proto(proto.conf, f"{path}.conf")
    return SnapshotMeta(index=proto.index, term=proto.term, conf=conf)


def _unknown_enum_error(path: str, enum_class: type[enum.IntEnum], value: int) -> InvalidMessageError:
    expected = ", ".join(f"{member.value} ({member.name})" for member in enum_class)
    return InvalidMessageError(
        f"{path}: unknown {enum_class.__name__} value {value}; expected one of {expected}"
    )


def _bad_entry_kind_error(path: str, entries: Sequence[raft_pb2.Entry]) -> InvalidMessageError:
    for position, entry in enumerate(entries):
        if entry.kind not in _ENTRY_KIND_BY_WIRE:
            return _unknown_enum_error(f"{path}[{position}].kind", EntryKind, entry.kind)
    raise AssertionError(f"{path}: an entry kind failed to map but none is unknown")
