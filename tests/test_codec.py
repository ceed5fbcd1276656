"""consensus.codec: exact round trips between the value types and proto/raft.proto."""

from __future__ import annotations

import dataclasses
import enum

import pytest
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper
from google.protobuf.message import Message as ProtoMessage
from hypothesis import given
from hypothesis import strategies as st

from consensus import codec
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

UINT64_MAX = 2**64 - 1

# Mostly small numbers (what real logs hold), sometimes the extremes of the wire type.
uint64s = st.one_of(st.integers(0, 1000), st.integers(0, UINT64_MAX), st.just(UINT64_MAX))
node_ids = st.integers(1, UINT64_MAX)
payloads = st.binary(max_size=64)

entries = st.builds(Entry, term=uint64s, index=uint64s, kind=st.sampled_from(EntryKind), data=payloads)


@st.composite
def conf_states(draw: st.DrawFn) -> ConfState:
    members = draw(st.lists(node_ids, unique=True, max_size=9))
    voter_count = draw(st.integers(0, len(members)))
    return ConfState(voters=tuple(members[:voter_count]), learners=tuple(members[voter_count:]))


snapshot_metas = st.builds(SnapshotMeta, index=uint64s, term=uint64s, conf=conf_states())
snapshots = st.builds(Snapshot, meta=snapshot_metas, data=st.binary(max_size=256))
hard_states = st.builds(HardState, term=uint64s, vote=uint64s, commit=uint64s)

messages = st.builds(
    Message,
    type=st.sampled_from(MessageType),
    sender=uint64s,
    recipient=uint64s,
    term=uint64s,
    log_term=uint64s,
    index=uint64s,
    entries=st.lists(entries, max_size=8).map(tuple),
    commit=uint64s,
    reject=st.booleans(),
    reject_hint=uint64s,
    context=uint64s,
    force=st.booleans(),
    snapshot_meta=st.none() | snapshot_metas,
    chunk_offset=uint64s,
    chunk_data=payloads,
    chunk_last=st.booleans(),
    snapshot_size=uint64s,
)

VALID_ENTRY_KINDS = {member.value for member in EntryKind}
VALID_MESSAGE_TYPES = {member.value for member in MessageType}
# proto3 enums are int32 on the wire; anything outside the Python enum must be refused.
int32s = st.integers(-(2**31), 2**31 - 1)


# ---- the schema is the dataclasses, field for field ---------------------------------------


@pytest.mark.parametrize(
    ("value_type", "proto_type"),
    [
        (Entry, raft_pb2.Entry),
        (ConfState, raft_pb2.ConfState),
        (HardState, raft_pb2.HardState),
        (SnapshotMeta, raft_pb2.SnapshotMeta),
        (Snapshot, raft_pb2.Snapshot),
        (Message, raft_pb2.Message),
    ],
)
def test_proto_fields_are_the_dataclass_fields(value_type: type, proto_type: type[ProtoMessage]) -> None:
    dataclass_fields = [field.name for field in dataclasses.fields(value_type)]
    by_number = proto_type.DESCRIPTOR.fields_by_number
    assert [by_number[number].name for number in sorted(by_number)] == dataclass_fields


@pytest.mark.parametrize(
    ("python_enum", "proto_enum", "prefix"),
    [(MessageType, raft_pb2.MessageType, "MESSAGE_TYPE_"), (EntryKind, raft_pb2.EntryKind, "ENTRY_KIND_")],
)
def test_proto_enums_are_the_python_enums(
    python_enum: type[enum.IntEnum], proto_enum: EnumTypeWrapper, prefix: str
) -> None:
    wire = {name: number for name, number in proto_enum.items()}
    expected = {prefix + "UNSPECIFIED": 0} | {prefix + member.name: member.value for member in python_enum}
    assert wire == expected


# ---- round trips --------------------------------------------------------------------------


@given(messages)
def test_message_round_trips_through_bytes(msg: Message) -> None:
    decoded = codec.decode_message(codec.encode_message(msg))
    assert decoded == msg
    assert type(decoded.type) is MessageType
    assert all(type(entry.kind) is EntryKind for entry in decoded.entries)


@given(messages)
def test_message_round_trips_through_proto(msg: Message) -> None:
    assert codec.message_from_proto(codec.message_to_proto(msg)) == msg


@given(messages)
def test_snapshot_meta_presence_is_kept(msg: Message) -> None:
    proto = raft_pb2.Message.FromString(codec.encode_message(msg))
    assert proto.HasField("snapshot_meta") == (msg.snapshot_meta is not None)


@given(entries)
def test_entry_round_trips(entry: Entry) -> None:
    assert codec.decode_entry(codec.encode_entry(entry)) == entry
    assert codec.entry_from_proto(codec.entry_to_proto(entry)) == entry


@given(hard_states)
def test_hard_state_round_trips(hard_state: HardState) -> None:
    assert codec.decode_hard_state(codec.encode_hard_state(hard_state)) == hard_state
    assert codec.hard_state_from_proto(codec.hard_state_to_proto(hard_state)) == hard_state


@given(snapshots)
def test_snapshot_round_trips(snapshot: Snapshot) -> None:
    assert codec.decode_snapshot(codec.encode_snapshot(snapshot)) == snapshot
    assert codec.snapshot_from_proto(codec.snapshot_to_proto(snapshot)) == snapshot
    assert codec.snapshot_meta_from_proto(codec.snapshot_meta_to_proto(snapshot.meta)) == snapshot.meta
    assert codec.conf_state_from_proto(codec.conf_state_to_proto(snapshot.meta.conf)) == snapshot.meta.conf


def test_decoding_accepts_any_bytes_like_buffer() -> None:
    msg = Message(type=MessageType.APPEND, sender=1, recipient=2, term=3, entries=(Entry(3, 1),))
    encoded = codec.encode_message(msg)
    assert codec.decode_message(bytearray(encoded)) == msg  # type: ignore[arg-type]
    assert codec.decode_message(memoryview(encoded)) == msg  # type: ignore[arg-type]


def test_unknown_fields_from_a_newer_schema_are_ignored() -> None:
    msg = Message(type=MessageType.HEARTBEAT, sender=1, recipient=2, term=3, commit=4, context=5)
    field_100_varint_1 = bytes([0xA0, 0x06, 0x01])
    assert codec.decode_message(codec.encode_message(msg) + field_100_varint_1) == msg


# ---- bad input on decode ------------------------------------------------------------------


def test_malformed_bytes_are_rejected() -> None:
    with pytest.raises(InvalidMessageError, match=r"^Message: not a valid encoding \(2 bytes\)"):
        codec.decode_message(b"\xff\xff")


def test_non_bytes_input_is_rejected() -> None:
    with pytest.raises(InvalidMessageError, match="expected bytes to decode, got str"):
        codec.decode_message("hello")  # type: ignore[arg-type]


@given(int32s.filter(lambda value: value not in VALID_MESSAGE_TYPES))
def test_unknown_message_type_is_rejected(bad_type: int) -> None:
    data = raft_pb2.Message(type=bad_type, sender=1, recipient=2, term=1).SerializeToString()  # type: ignore[arg-type]
    with pytest.raises(InvalidMessageError, match=rf"^Message\.type: unknown MessageType value {bad_type};"):
        codec.decode_message(data)


def test_unset_message_type_is_rejected() -> None:
    with pytest.raises(InvalidMessageError, match=r"^Message\.type: unknown MessageType value 0; expected"):
        codec.decode_message(b"")


@given(
    st.lists(entries, min_size=1, max_size=6),
    st.data(),
    int32s.filter(lambda value: value not in VALID_ENTRY_KINDS),
)
def test_unknown_entry_kind_is_rejected_naming_the_entry(
    good_entries: list[Entry], data: st.DataObject, bad_kind: int
) -> None:
    position = data.draw(st.integers(0, len(good_entries) - 1))
    proto = codec.message_to_proto(
        Message(type=MessageType.APPEND, sender=1, recipient=2, term=1, entries=tuple(good_entries))
    )
    proto.entries[position].kind = bad_kind  # type: ignore[assignment]
    with pytest.raises(
        InvalidMessageError,
        match=rf"^Message\.entries\[{position}\]\.kind: unknown EntryKind value {bad_kind}; "
        r"expected one of 1 \(NORMAL\), 2 \(NOOP\), 3 \(CONFIG\)$",
    ):
        codec.decode_message(proto.SerializeToString())


def test_unknown_kind_of_a_lone_entry_is_rejected() -> None:
    data = raft_pb2.Entry(term=1, index=1, kind=7).SerializeToString()  # type: ignore[arg-type]
    with pytest.raises(InvalidMessageError, match=r"^Entry\.kind: unknown EntryKind value 7;"):
        codec.decode_entry(data)


@pytest.mark.parametrize(
    ("voters", "learners", "complaint"),
    [
        ([0, 1], [], "positive integers"),
        ([1, 1], [], "duplicate voter"),
        ([1, 2], [2], "voter and learner"),
    ],
)
def test_impossible_membership_is_rejected(voters: list[int], learners: list[int], complaint: str) -> None:
    meta = raft_pb2.SnapshotMeta(index=5, term=2, conf=raft_pb2.ConfState(voters=voters, learners=learners))
    message = raft_pb2.Message(type=raft_pb2.MESSAGE_TYPE_SNAPSHOT, sender=1, recipient=2, snapshot_meta=meta)
    with pytest.raises(InvalidMessageError, match=rf"^Message\.snapshot_meta\.conf: .*{complaint}"):
        codec.decode_message(message.SerializeToString())
    with pytest.raises(InvalidMessageError, match=rf"^Snapshot\.meta\.conf: .*{complaint}"):
        codec.decode_snapshot(raft_pb2.Snapshot(meta=meta).SerializeToString())


def test_snapshot_without_meta_is_rejected() -> None:
    with pytest.raises(InvalidMessageError, match=r"^Snapshot\.meta: missing"):
        codec.decode_snapshot(raft_pb2.Snapshot(data=b"state").SerializeToString())


def test_snapshot_meta_without_membership_is_rejected() -> None:
    snapshot = raft_pb2.Snapshot(meta=raft_pb2.SnapshotMeta(index=5, term=2), data=b"state")
    with pytest.raises(InvalidMessageError, match=r"^Snapshot\.meta\.conf: missing"):
        codec.decode_snapshot(snapshot.SerializeToString())


def test_empty_membership_is_kept_distinct_from_missing_membership() -> None:
    snapshot = Snapshot(meta=SnapshotMeta(index=5, term=2, conf=ConfState(voters=())), data=b"")
    assert codec.decode_snapshot(codec.encode_snapshot(snapshot)) == snapshot


# ---- values protobuf cannot hold, on encode -----------------------------------------------


def _message(**changes: object) -> Message:
    base = Message(type=MessageType.APPEND, sender=1, recipient=2, term=3)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("msg", "field_path"),
    [
        (_message(term=-1), r"Message\.term"),
        (_message(commit=UINT64_MAX + 1), r"Message\.commit"),
        (_message(chunk_data="text"), r"Message\.chunk_data"),
        (_message(entries=(Entry(1, 1), Entry(1, -2))), r"Message\.entries\[1\]\.index"),
        (_message(entries=(Entry(1, 1, data="text"),)), r"Message\.entries\[0\]\.data"),  # type: ignore[arg-type]
        (
            _message(snapshot_meta=SnapshotMeta(index=-1, term=1, conf=ConfState(voters=(1,)))),
            r"Message\.snapshot_meta\.index",
        ),
        (
            _message(snapshot_meta=SnapshotMeta(index=1, term=1, conf=ConfState(voters=(1, 2**64)))),
            r"Message\.snapshot_meta\.conf\.voters\[1\]",
        ),
    ],
)
def test_unencodable_message_field_is_named(msg: Message, field_path: str) -> None:
    with pytest.raises(InvalidMessageError, match=rf"^{field_path}: cannot encode"):
        codec.encode_message(msg)


def test_unencodable_fields_of_other_records_are_named() -> None:
    with pytest.raises(InvalidMessageError, match=r"^HardState\.commit: cannot encode -1"):
        codec.encode_hard_state(HardState(term=1, vote=1, commit=-1))
    with pytest.raises(InvalidMessageError, match=r"^Entry\.term: cannot encode -1"):
        codec.encode_entry(Entry(term=-1, index=1))
    snapshot = Snapshot(meta=SnapshotMeta(index=1, term=-4, conf=ConfState(voters=(1,))), data=b"")
    with pytest.raises(InvalidMessageError, match=r"^Snapshot\.meta\.term: cannot encode -4"):
        codec.encode_snapshot(snapshot)
