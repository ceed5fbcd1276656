"""Hand framing of ``raft.RaftBatch`` around messages that are already encoded.

``Transport.send`` encodes each message once, when it is handed over (that is when its size
must be known, to refuse an oversize one). A ``Message`` field inside a ``RaftBatch`` is on
the wire exactly its encoding behind a tag and a length, so the batch is written by
joining those pieces: one copy of the payload, no second protobuf serialization. The
receiver parses it with the generated ``RaftBatch`` class; tests check both agree.
"""

from __future__ import annotations

from collections.abc import Sequence

from proto import raft_service_pb2

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

# A varint is at most 10 bytes: a header holds two tagged uint64s, a message a tag + length.
BATCH_HEADER_BYTES_MAX = 2 * (1 + 10)
MESSAGE_FRAMING_BYTES_MAX = 1 + 10


def varint(value: int) -> bytes:
    if value < 0 or value >= 1 << 64:
        raise ValueError(f"varint out of range: {value}")
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


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


def encode_batch(header: bytes, encoded_messages: Sequence[bytes]) -> bytes:
    """The ``RaftBatch`` bytes for ``header`` (see ``batch_header``) and the encoded messages."""
    parts: list[bytes] = [header]
    append = parts.append
    for data in encoded_messages:
        append(_TAG_MESSAGE)
        append(varint(len(data)))
        append(data)
    return b"".join(parts)
