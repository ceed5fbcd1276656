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

from consensus.errors import InvalidRequestError
from consensus.messages import Entry, EntryKind
from consensus.storage.errors import RecordTooLargeError

__all__ = ["ENTRY_OVERHEAD_BYTES", "EncodedBatch", "decode_entry_batch", "encode_entry_batches"]

_BATCH_HEAD = struct.Struct("<QI")
_ENTRY_HEAD = struct.Struct("<QBI")
ENTRY_OVERHEAD_BYTES = _ENTRY_HEAD.size
_KIND_BY_WIRE: dict[int, EntryKind] = {kind.value: kind for kind in EntryKind}

# (payload, first index, last index)
EncodedBatch = tuple[bytes, int, int]


def encode_entry_batches(
    entries: Sequence[Entry], payload_bytes_target: int, payload_bytes_max: int
) -> list[EncodedBatch]:
    """Encode consecutive ``entries`` as payloads of at most ``payload_bytes_target`` bytes
    each, except that one entry alone may take up to ``payload_bytes_max``."""
    batches: list[EncodedBatch] = []
    if not entries:
        return batches
    pack = _ENTRY_HEAD.pack
    kinds = _KIND_BY_WIRE
    next_index = entries[0].index
    parts: list[bytes] = [b""]  # parts[0]: the batch head, filled in when the batch closes
    size = _BATCH_HEAD.size
    first_of_batch = next_index
    try:
        for entry in entries:
            data = entry.data
            entry_bytes = ENTRY_OVERHEAD_BYTES + len(data)
            if size + entry_bytes > payload_bytes_target and len(parts) > 1:
                parts[0] = _BATCH_HEAD.pack(first_of_batch, (len(parts) - 1) // 2)
                batches.append((b"".join(parts), first_of_batch, next_index - 1))
                parts = [b""]
                size = _BATCH_HEAD.size
                first_of_batch = next_index
            if _BATCH_HEAD.size + entry_bytes > payload_bytes_max:
                raise RecordTooLargeError(
                    f"entry {entry.index} needs {_BATCH_HEAD.size + entry_bytes} bytes in a WAL record, "
                    f"more than the {payload_bytes_max} that record_bytes_max allows"
                )
            if entry.index != next_index or entry.kind not in kinds:
                raise _bad_entry(entry, next_index)
            parts.append(pack(entry.term, entry.kind, len(data)))
            parts.append(data)
            size += entry_bytes
            next_index += 1
        parts[0] = _BATCH_HEAD.pack(first_of_batch, (len(parts) - 1) // 2)
        batches.append((b"".join(parts), first_of_batch, next_index - 1))
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
