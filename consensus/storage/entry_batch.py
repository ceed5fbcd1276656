"""Compact binary form of a run of consecutive log entries (the payload of an ENTRIES record).

::

    first_index u64 | count u32 | count x (term u64 | kind u8 | data_length u32 | data)

Indices are implicit (``first_index + k``), so only consecutive entries can be encoded.
This framing rather than ``consensus.codec`` per entry: for a batch of 10,000 entries of 256
bytes it encodes in 1.4 ms instead of 20 ms (protobuf builds one message object per entry),
and decodes in 14 ms instead of 30 ms.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from consensus.errors import InvalidRequestError
from consensus.messages import Entry, EntryKind
from consensus.storage.errors import RecordTooLargeError

__all__ = ["ENTRY_OVERHEAD_BYTES", "EncodedBatch", "decode_entry_batch", "encode_entry_batches"]

_BATCH_HEAD = struct.Struct("<QI")
_ENTRY_HEAD = struct.Struct("<QBI")
ENTRY_OVERHEAD_BYTES = _ENTRY_HEAD.size
_KIND_BY_WIRE: dict[int, EntryKind] = {kind.value: kind for kind in EntryKind}

# Entry data at least this big is kept as its own buffer in a batch's parts; smaller pieces
# are joined (a writev of thousands of 256-byte pieces would cost more than one join).
_SEPARATE_DATA_BYTES = 64 << 10


@dataclass(frozen=True, slots=True)
class EncodedBatch:
    """One batch's payload, as the buffers that joined make it (see ``encode_entry_batches``)."""

    parts: list[bytes]
    size: int
    first_index: int
    last_index: int


def encode_entry_batches(
    entries: Sequence[Entry], payload_bytes_target: int, payload_bytes_max: int
) -> list[EncodedBatch]:
    """Encode consecutive ``entries`` as payloads of at most ``payload_bytes_target`` bytes
    each, except that one entry alone may take up to ``payload_bytes_max``.

    A payload is left in parts: the small pieces joined, the data of a big entry (a
    gradient of several MiB) as the entry's own buffer, so that writing it copies it once,
    into the kernel."""
    batches: list[EncodedBatch] = []
    if not entries:
        return batches
    pack = _ENTRY_HEAD.pack
    kinds = _KIND_BY_WIRE
    next_index = entries[0].index
    parts: list[bytes] = []
    small: list[bytes] = []  # pieces not yet joined into ``parts``
    size = _BATCH_HEAD.size
    first_of_batch = next_index

    def close_batch() -> None:
        head = _BATCH_HEAD.pack(first_of_batch, next_index - first_of_batch)
        if small:
            parts.append(b"".join(small))
        parts[0:0] = [head]  # the head is known only now; it is tiny to join later
        batches.append(EncodedBatch(parts, size, first_of_batch, next_index - 1))

    try:
        for entry in entries:
            data = entry.data
            entry_bytes = ENTRY_OVERHEAD_BYTES + len(data)
            if size + entry_bytes > payload_bytes_target and next_index > first_of_batch:
                close_batch()
                parts, small = [], []
                size = _BATCH_HEAD.size
                first_of_batch = next_index
            if _BATCH_HEAD.size + entry_bytes > payload_bytes_max:
                raise RecordTooLargeError(
                    f"entry {entry.index} needs {_BATCH_HEAD.size + entry_bytes} bytes in a WAL record, "
                    f"more than the {payload_bytes_max} that record_bytes_max allows"
                )
            if entry.index != next_index or entry.kind not in kinds:
                raise _bad_entry(entry, next_index)
            small.append(pack(entry.term, entry.kind, len(data)))
            if len(data) >= _SEPARATE_DATA_BYTES:
                parts.append(b"".join(small))
                parts.append(data)
                small = []
            else:
                small.append(data)
            size += entry_bytes
            next_index += 1
        close_batch()
    except (struct.error, TypeError) as exc:
        raise InvalidRequestError(f"cannot encode entry {next_index} for the WAL: {exc}") from exc
    return batches


def _bad_entry(entry: Entry, expected_index: int) -> InvalidRequestError:
    if entry.index != expected_index:
        return InvalidRequestError(
            f"entries to persist must be consecutive: expected index {expected_index}, got {entry.index}"
        )
    return InvalidRequestError(f"entry {entry.index} has unknown kind {entry.kind!r}")


def decode_entry_batch(data: bytes, start: int, end: int) -> list[Entry]:
    """Decode the batch in ``data[start:end]``; ``ValueError`` says what is malformed."""
    if end - start < _BATCH_HEAD.size:
        raise ValueError(f"entry batch of {end - start} bytes is shorter than its head")
    first_index, count = _BATCH_HEAD.unpack_from(data, start)
    offset = start + _BATCH_HEAD.size
    entries: list[Entry] = []
    append = entries.append
    unpack = _ENTRY_HEAD.unpack_from
    kinds = _KIND_BY_WIRE
    index = first_index
    try:
        while offset < end:
            term, kind, length = unpack(data, offset)
            offset += ENTRY_OVERHEAD_BYTES
            append(Entry(term, index, kinds[kind], data[offset : offset + length]))
            offset += length
            index += 1
    except KeyError as exc:
        raise ValueError(f"entry {index} has unknown kind {exc.args[0]}") from None
    except struct.error as exc:
        raise ValueError(f"entry {index} is cut short: {exc}") from None
    if offset != end or len(entries) != count:
        raise ValueError(
            f"entry batch holds {len(entries)} entries ending at byte {offset - start}, "
            f"its head says {count} entries in {end - start} bytes"
        )
    if first_index < 1 and entries:
        raise ValueError(f"entry batch starts at index {first_index}; indices start at 1")
    return entries
