"""Hand framing of ``raft.RaftBatch`` around messages that are already encoded.

``Transport.send`` encodes each message once, when it is handed over (that is when its size
must be known, to refuse an oversize one). A ``Message`` field inside a ``RaftBatch`` is on
the wire exactly its encoding behind a tag and a length, so the batch is written by
joining those pieces: one copy of the payload, no second protobuf serialization. The
receiver parses it with the generated ``RaftBatch`` class; tests check both agree.

An append carrying big entries (gradients of several MiB) is itself framed by hand
(``encode_message_parts``): protobuf would copy each entry's data into the message and again
into its serialization, for every follower; here the entry data stays the entry's own buffer
until the batch is joined.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from consensus.codec import encode_message
from consensus.errors import InvalidMessageError
from consensus.messages import Entry, Message
from consensus.protowire import varint
from proto import raft_pb2, raft_service_pb2

_SERVICE = raft_service_pb2.DESCRIPTOR.services_by_name["RaftTransport"]
TRANSPORT_SERVICE_NAME: str = _SERVICE.full_name
STREAM_METHOD_NAME = "Stream"
STREAM_METHOD_PATH = f"/{TRANSPORT_SERVICE_NAME}/{STREAM_METHOD_NAME}"
if _SERVICE.methods_by_name[STREAM_METHOD_NAME].input_type.name != "RaftBatch":
    raise AssertionError("consensus.transport assumes RaftTransport.Stream takes RaftBatch")

# Wire tags (field number << 3 | wire type) of RaftBatch's fields.
_FIELDS = raft_service_pb2.RaftBatch.DESCRIPTOR.fields_by_name
if (_FIELDS["from_node"].number, _FIELDS["to_node"].number, _FIELDS["messages"].number) != (1, 2, 3):
    raise AssertionError("consensus.transport assumes RaftBatch fields from_node=1, to_node=2, messages=3")
_TAG_FROM_NODE = b"\x08"  # field 1, varint
_TAG_TO_NODE = b"\x10"  # field 2, varint
_TAG_MESSAGE = b"\x1a"  # field 3, length-delimited

# Wire tags of Message.entries and of Entry's fields.
_ENTRY_FIELDS = raft_pb2.Entry.DESCRIPTOR.fields_by_name
if raft_pb2.Message.DESCRIPTOR.fields_by_name["entries"].number != 7 or tuple(
    _ENTRY_FIELDS[name].number for name in ("term", "index", "kind", "data")
) != (1, 2, 3, 4):
    raise AssertionError("consensus.transport assumes Message.entries=7, Entry term=1 index=2 kind=3 data=4")
_TAG_ENTRY = b"\x3a"  # Message field 7, length-delimited
_TAG_TERM = b"\x08"
_TAG_INDEX = b"\x10"
_TAG_KIND = b"\x18"
_TAG_DATA = b"\x22"
# Entries with this much data or more make an append worth framing by hand.
HAND_FRAMED_ENTRY_BYTES = 64 << 10

# A varint is at most 10 bytes: a header holds two tagged uint64s, a message a tag + length.
BATCH_HEADER_BYTES_MAX = 2 * (1 + 10)
MESSAGE_FRAMING_BYTES_MAX = 1 + 10


@dataclass(frozen=True, slots=True)
class EncodedMessage:
    """One message's encoding as buffers that, joined, are its protobuf bytes."""

    parts: tuple[bytes, ...]
    size: int

    @classmethod
    def of(cls, data: bytes) -> EncodedMessage:
        return cls((data,), len(data))

    def join(self) -> bytes:
        return self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)


def encode_message_parts(msg: Message) -> EncodedMessage:
    """``msg`` encoded (parsing the joined parts gives ``decode_message``'s result): by
    protobuf, except an append with an entry of ``HAND_FRAMED_ENTRY_BYTES`` or more, whose
    entries are framed here after the rest of the message (protobuf parsers take fields in
    any order), each entry's data as its own part."""
    entries = msg.entries
    if not any(len(entry.data) >= HAND_FRAMED_ENTRY_BYTES for entry in entries):
        return EncodedMessage.of(encode_message(msg))
    parts = [encode_message(dataclasses.replace(msg, entries=()))]
    size = len(parts[0])
    for position, entry in enumerate(entries):
        try:
            framed, data = _frame_entry(entry)
        except (TypeError, ValueError) as exc:
            raise InvalidMessageError(f"Message.entries[{position}]: cannot encode: {exc}") from exc
        parts.append(framed)
        size += len(framed)
        if data:
            parts.append(data)
            size += len(data)
    return EncodedMessage(tuple(parts), size)


def _frame_entry(entry: Entry) -> tuple[bytes, bytes]:
    """The entry's tag, length and fields up to its data's length; and the data."""
    data = entry.data
    if not isinstance(data, bytes):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    head = b""
    if entry.term:
        head += _TAG_TERM + varint(entry.term)
    if entry.index:
        head += _TAG_INDEX + varint(entry.index)
    if entry.kind:
        head += _TAG_KIND + varint(int(entry.kind))
    if data:
        head += _TAG_DATA + varint(len(data))
    return _TAG_ENTRY + varint(len(head) + len(data)) + head, data


def message_framing_bytes(encoded_size: int) -> int:
    """Bytes a message of ``encoded_size`` takes inside a batch (its tag, length and body)."""
    return 1 + len(varint(encoded_size)) + encoded_size


def batch_header(from_node: int, to_node: int) -> bytes:
    # proto3 leaves zero scalars out; node ids are never 0 here, but stay exact anyway.
    header = b""
    if from_node:
        header += _TAG_FROM_NODE + varint(from_node)
    if to_node:
        header += _TAG_TO_NODE + varint(to_node)
    return header


def encode_batch(header: bytes, encoded_messages: Sequence[bytes | EncodedMessage]) -> bytes:
    """The ``RaftBatch`` bytes for ``header`` (see ``batch_header``) and the encoded messages:
    one join, the only copy of their payload made here."""
    parts: list[bytes] = [header]
    append = parts.append
    for message in encoded_messages:
        append(_TAG_MESSAGE)
        if isinstance(message, bytes):
            append(varint(len(message)))
            append(message)
        else:
            append(varint(message.size))
            parts.extend(message.parts)
    return b"".join(parts)
