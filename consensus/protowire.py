"""The few pieces of the protobuf wire format that hand framing needs (varints, tags).

Hand framing is for the hot paths that carry megabytes of entry data: protobuf copies a
bytes field into its message and again into the serialization, where joining the pieces
copies once (see ``consensus.transport._framing`` and ``paramstore.shard._push_wire``).
Everything else goes through the generated classes.
"""

from __future__ import annotations

__all__ = ["LEN", "VARINT", "read_varint", "tag", "varint"]

VARINT = 0  # wire type of int32/uint64/bool/enum fields
LEN = 2  # wire type of string/bytes/message fields


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


def tag(field_number: int, wire_type: int) -> bytes:
    return varint(field_number << 3 | wire_type)


def read_varint(data: bytes | memoryview, offset: int, end: int) -> tuple[int, int]:
    """The varint at ``data[offset:end]`` and the offset after it; ``ValueError`` when it is
    cut short or longer than a uint64's 10 bytes."""
    value = 0
    shift = 0
    while offset < end:
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if value >= 1 << 64:
                raise ValueError("varint over 64 bits")
            return value, offset
        shift += 7
        if shift >= 70:
            raise ValueError("varint longer than 10 bytes")
    raise ValueError("varint cut short")
