"""The few pieces of the protobuf wire format that hand framing needs (varints, tags).

Hand framing is for the hot paths that carry megabytes of entry data: protobuf copies a
bytes field into its message and again into the serialization, where joining the pieces
copies once (see ``consensus.transport._framing`` and ``paramstore.shard._push_wire``).
Everything else goes through the generated classes.
"""

from __future__ import annotations

__all__ = [
    "LEN",
    "VARINT",
    "NotCanonicalError",
    "enum_value",
    "read_varint",
    "scan_fields",
    "tag",
    "text",
    "varint",
]

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


class NotCanonicalError(ValueError):
    """Bytes that are not in the one form a hand parser takes (each field once unless it is
    repeated, no unknown wire types): the caller parses them with protobuf instead, so that
    a message means the same whichever way it was read."""


def scan_fields(
    data: memoryview, start: int, end: int, repeated: frozenset[int] = frozenset()
) -> list[tuple[int, int, int, int]]:
    """The fields of the message in ``data[start:end]`` as (number, wire type, first,
    second): a VARINT's value and 0, or a LEN field's (start, end) in ``data``.
    ``NotCanonicalError`` for a field number seen twice (other than the ``repeated`` ones),
    a wire type other than VARINT and LEN, or a length past ``end``."""
    items: list[tuple[int, int, int, int]] = []
    seen: set[int] = set()
    offset = start
    while offset < end:
        key, offset = read_varint(data, offset, end)
        number, wire_type = key >> 3, key & 7
        if number in seen and number not in repeated:
            raise NotCanonicalError(f"field {number} appears twice")
        seen.add(number)
        if wire_type == VARINT:
            value, offset = read_varint(data, offset, end)
            items.append((number, wire_type, value, 0))
        elif wire_type == LEN:
            length, offset = read_varint(data, offset, end)
            if offset + length > end:
                raise NotCanonicalError(f"field {number} runs past its message")
            items.append((number, wire_type, offset, offset + length))
            offset += length
        else:
            raise NotCanonicalError(f"field {number} has wire type {wire_type}")
    return items


def text(data: memoryview, start: int, end: int) -> str:
    """``data[start:end]`` as UTF-8 text (protobuf's ``string``); ``NotCanonicalError`` if
    it is not valid UTF-8."""
    try:
        return str(data[start:end], "utf-8")
    except UnicodeDecodeError:
        raise NotCanonicalError("a string field is not UTF-8") from None


def enum_value(value: int) -> int:
    """A VARINT read for an enum field: protobuf reads an enum as an int32, so a value of
    2**31 or more would mean something else to it (``NotCanonicalError``)."""
    if value >= 1 << 31:
        raise NotCanonicalError(f"enum value {value} is not an int32")
    return value
