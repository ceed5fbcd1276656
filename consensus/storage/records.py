"""Framing of write-ahead-log records, and the scan that tells a torn tail from corruption.

A record is a 13-byte header followed by its payload::

    payload_length u32 | type u8 | payload_crc32c u32 | header_crc32c u32 | payload

all little-endian, checksums CRC32C (the ``crc32c`` package: the CPU's CRC32 instruction,
about 4x zlib's CRC32 here, and a store replica checksums every pushed byte). The header
has its own checksum so that a damaged length is caught as damage instead of being trusted
(a trusted bad length would make everything after it look like a torn tail and be thrown
away).

The header checksum starts from a **seed**, the segment's own (``segments.record_seed``,
from its sequence number), so a record is whole only in the segment life it was written
in. A compacted segment file is reused in place for a later segment without being zeroed
first (``recycling.py``): past the new records it still holds records of its previous
life, and those can never read as records of the new one. (``crc32c(data, seed)`` is
a bijection of the seed for fixed data: under another seed a header's checksum always
differs, it does not merely differ with high probability.) The same idea as SQLite's WAL
salts and RocksDB's recyclable log records.

How a scan classifies a bad spot at offset ``o`` in a file:

* If the file may end in a torn write (it is the last segment) and no whole record (both
  checksums matching, under the segment's seed) follows the bad spot, it is a **torn
  tail**: an interrupted append (a partial header, a record cut short by the end of file,
  a checksum mismatch in the last record), space the file system extended with zeros, a
  reused segment's records of its previous life, or an unsynced append in a reused segment
  of which a later page reached the disk and an earlier one did not (old bytes where its
  header belongs, then some of its bytes). The scan reports it so the caller can truncate
  the file back to ``o``.
* Otherwise it is **corruption** and ``StorageCorruptionError`` names the file and ``o``:
  a bad record with a whole record after it, an unknown type or impossible length under a
  good header checksum, or any damage in a segment that is not the last one.

The one case no format can tell apart: the last record of the last segment damaged in place
(bit rot) looks like a torn append and is dropped. Raft tolerates that only for records not
yet acknowledged, which is why appends are synced before they are acknowledged.
"""

from __future__ import annotations

import enum
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from crc32c import crc32c

from consensus.storage.errors import StorageCorruptionError

__all__ = [
    "RECORD_HEADER_BYTES",
    "RECORD_PAYLOAD_BYTES_LIMIT",
    "RawRecord",
    "RecordType",
    "ScanResult",
    "TornTail",
    "encode_record",
    "payload_checksum",
    "record_head",
    "scan_records",
]


class RecordType(enum.IntEnum):
    SEGMENT_HEADER = 1  # first record of every segment: magic, format version, first index
    HARD_STATE = 2  # consensus.codec HardState
    ENTRIES = 3  # a batch of consecutive entries (consensus.storage.entry_batch)
    TRUNCATE = 4  # u64 index: entries from it on are gone (a conflict truncation)


_KNOWN_TYPES = frozenset(int(t) for t in RecordType)
# The format's bound, independent of configuration, so that lowering ``record_bytes_max``
# never makes existing records unreadable.
RECORD_PAYLOAD_BYTES_LIMIT = 1 << 30

_HEAD = struct.Struct("<IBI")  # payload_length, type, payload_crc32c: what header_crc32c covers
_HEADER_CRC = struct.Struct("<I")
RECORD_HEADER_BYTES = _HEAD.size + _HEADER_CRC.size


def encode_record(record_type: RecordType, payload: bytes, *, seed: int) -> bytes:
    """A small record, whole (big ones are written as ``record_head`` + their own buffers)."""
    length, crc = payload_checksum([payload])
    return record_head(record_type, length, crc, seed) + payload


def payload_checksum(payload: Sequence[bytes | memoryview]) -> tuple[int, int]:
    """``(length, crc32c)`` of the payload ``payload`` joined: the costly half of a record,
    which does not depend on the segment it goes into."""
    length = 0
    crc = 0
    for part in payload:
        length += len(part)
        crc = crc32c(part, crc)
    if length > RECORD_PAYLOAD_BYTES_LIMIT:
        raise AssertionError(f"record payload of {length} bytes exceeds the format limit")
    return length, crc


def record_head(record_type: RecordType, length: int, payload_crc: int, seed: int) -> bytes:
    """The 13-byte header of a record, its checksum started from ``seed``."""
    head = _HEAD.pack(length, record_type, payload_crc)
    return head + _HEADER_CRC.pack(crc32c(head, seed))


@dataclass(frozen=True, slots=True)
class RawRecord:
    """A record whose checksums matched; its payload is ``data[payload_start:payload_end]``."""

    offset: int
    type: RecordType
    payload_start: int
    payload_end: int


@dataclass(frozen=True, slots=True)
class TornTail:
    offset: int  # where the whole records end: truncate the file here
    reason: str


@dataclass(frozen=True, slots=True)
class ScanResult:
    records: list[RawRecord]
    end_offset: int  # bytes [0, end_offset) are whole records
    torn: TornTail | None


def scan_records(
    data: bytes,
    path: Path,
    *,
    tail_may_be_torn: bool,
    records_max: int | None = None,
    not_torn_because: str = "no torn write can be here",
    seed: int,
) -> ScanResult:
    """Check and locate the records of ``data`` (a whole file's contents), all of them or the
    first ``records_max``, their header checksums started from ``seed`` (see above).
    ``not_torn_because`` explains, in a corruption error, why a bad spot was not taken for
    a torn tail when ``tail_may_be_torn`` is false."""
    records: list[RawRecord] = []
    offset = 0
    size = len(data)
    view = memoryview(data)
    unpack_head = _HEAD.unpack_from
    unpack_crc = _HEADER_CRC.unpack_from
    crc32 = crc32c
    while offset < size:
        if size - offset < RECORD_HEADER_BYTES:
            problem, after = "partial record header at end of file", size
        else:
            header_end = offset + _HEAD.size
            length, record_type, payload_crc = unpack_head(data, offset)
            (header_crc,) = unpack_crc(data, header_end)
            payload_start = offset + RECORD_HEADER_BYTES
            payload_end = payload_start + length
            if crc32(view[offset:header_end], seed) != header_crc:
                if not any(view[offset : offset + RECORD_HEADER_BYTES]):
                    problem = "zero bytes where a record header belongs"
                else:
                    problem = "record header checksum mismatch"
                after = payload_start
            elif record_type not in _KNOWN_TYPES:
                raise StorageCorruptionError(path, offset, f"unknown record type {record_type}")
            elif length > RECORD_PAYLOAD_BYTES_LIMIT:
                raise StorageCorruptionError(path, offset, f"record length {length} exceeds the format limit")
            elif payload_end > size:
                problem, after = f"record of {length} payload bytes cut short by the end of file", size
            elif crc32(view[payload_start:payload_end]) != payload_crc:
                problem, after = "record payload checksum mismatch", payload_end
            else:
                records.append(RawRecord(offset, RecordType(record_type), payload_start, payload_end))
                offset = payload_end
                if records_max is not None and len(records) >= records_max:
                    break
                continue
        if not tail_may_be_torn:
            raise StorageCorruptionError(path, offset, f"{problem} ({not_torn_because})")
        if data.count(0, after) == size - after:
            return ScanResult(records, offset, TornTail(offset, problem))
        whole = _whole_record_after(data, offset, seed)
        if whole is None:
            return ScanResult(records, offset, TornTail(offset, f"{problem}, and no whole record after it"))
        raise StorageCorruptionError(
            path, offset, f"{problem} (valid data follows it: a whole record at byte offset {whole})"
        )
    return ScanResult(records, offset, None)


# A byte that can be a record's type: where a header may start, 4 bytes before it.
_TYPE_BYTE = re.compile(b"[" + b"".join(re.escape(bytes([t])) for t in sorted(_KNOWN_TYPES)) + b"]")


def _whole_record_after(data: bytes, bad_offset: int, seed: int) -> int | None:
    """The offset of the first whole record (header and payload checksums both matching)
    that starts after ``bad_offset``, or None. Only run on damage: it tries every offset
    whose type byte is a known type (the regex finds them in C), about 2% of random bytes
    and none of a run of zeros."""
    view = memoryview(data)
    size = len(data)
    type_at = 4  # the type byte's position in a header (_HEAD): after the u32 length
    for match in _TYPE_BYTE.finditer(data, bad_offset + 1 + type_at):
        offset = match.start() - type_at
        if offset + RECORD_HEADER_BYTES > size:
            return None
        length, _, payload_crc = _HEAD.unpack_from(data, offset)
        payload_start = offset + RECORD_HEADER_BYTES
        if length > RECORD_PAYLOAD_BYTES_LIMIT or payload_start + length > size:
            continue
        (header_crc,) = _HEADER_CRC.unpack_from(data, offset + _HEAD.size)
        if crc32c(view[offset : offset + _HEAD.size], seed) != header_crc:
            continue
        if crc32c(view[payload_start : payload_start + length]) == payload_crc:
            return offset
    return None
