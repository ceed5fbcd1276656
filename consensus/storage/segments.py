"""WAL segment files: their names and the header record that opens each one.

A segment is named ``<seq>-<first_index>.wal`` (both zero-padded decimal) and opens with a
SEGMENT_HEADER record carrying a magic, the format version, the same ``seq`` and
``first_index`` (the index the next entry was to get when the segment was created), and for a
*reset* segment the snapshot it starts from. A reset segment is created when the node
installs a snapshot from the leader: the whole log before it is discarded. Every segment's
second record is the hard state current when it was created, so that dropping older
segments never loses the latest hard state. Every record of a segment, its header too,
has its header checksum seeded with ``record_seed(seq)`` (see ``records.py``).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "SEGMENT_FORMAT_VERSION",
    "SEGMENT_HEADER_PAYLOAD_BYTES",
    "SEGMENT_MAGIC",
    "SegmentHeader",
    "SegmentInfo",
    "decode_segment_header",
    "encode_segment_header",
    "parse_segment_name",
    "peek_format_version",
    "record_seed",
    "record_seed_of",
    "segment_name",
]

SEGMENT_MAGIC = b"PSWALSEG"
# 2: CRC32C record checksums, header checksums seeded with the segment's seq (``record_seed``).
SEGMENT_FORMAT_VERSION = 2
_FLAG_RESET = 1
_KNOWN_FLAGS = _FLAG_RESET
_PAYLOAD = struct.Struct("<8sHHQQQQ")  # magic, version, flags, seq, first_index, reset_index, reset_term
SEGMENT_HEADER_PAYLOAD_BYTES = _PAYLOAD.size
_NAME = re.compile(r"^(\d{16})-(\d{20})\.wal$")


@dataclass(frozen=True, slots=True)
class SegmentHeader:
    seq: int
    first_index: int
    # For a reset segment: the snapshot (index, term) the log restarts from; None otherwise.
    reset: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.seq < 1 or self.first_index < 1:
            raise ValueError(f"segment seq and first_index must be >= 1: {self}")
        if self.reset is not None and self.first_index != self.reset[0] + 1:
            raise ValueError(f"a reset segment must start right after its snapshot: {self}")


def segment_name(seq: int, first_index: int) -> str:
    return f"{seq:016d}-{first_index:020d}.wal"


def parse_segment_name(name: str) -> tuple[int, int] | None:
    """``(seq, first_index)`` of a segment file name; None for any other name."""
    match = _NAME.match(name)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2))


def record_seed(seq: int) -> int:
    """The seed of the record header checksums of segment ``seq`` (``records.py``): a file
    reused for a later segment gets a later seq, so its old records are not whole in it."""
    return seq & 0xFFFF_FFFF


def record_seed_of(path: Path) -> int:
    """``record_seed`` of the segment file ``path``, from its name."""
    parsed = parse_segment_name(path.name)
    if parsed is None:
        raise ValueError(f"{path.name!r} is not a segment file name (<seq>-<first_index>.wal)")
    return record_seed(parsed[0])


def encode_segment_header(header: SegmentHeader) -> bytes:
    flags = _FLAG_RESET if header.reset is not None else 0
    reset_index, reset_term = header.reset if header.reset is not None else (0, 0)
    return _PAYLOAD.pack(
        SEGMENT_MAGIC, SEGMENT_FORMAT_VERSION, flags, header.seq, header.first_index, reset_index, reset_term
    )


def peek_format_version(payload: bytes) -> int | None:
    """The format version a segment header's payload claims, unchecked; None if the payload
    does not start with the segment magic. Only to word an error better: an older format's
    checksums do not verify under this one's."""
    if len(payload) < _PAYLOAD.size or not payload.startswith(SEGMENT_MAGIC):
        return None
    version: int = _PAYLOAD.unpack_from(payload)[1]
    return version


def decode_segment_header(payload: bytes, path: Path) -> SegmentHeader:
    """Decode and check a header against the file's name; ``ValueError`` says what is wrong."""
    if len(payload) != _PAYLOAD.size:
        raise ValueError(f"segment header is {len(payload)} bytes, expected {_PAYLOAD.size}")
    magic, version, flags, seq, first_index, reset_index, reset_term = _PAYLOAD.unpack(payload)
    if magic != SEGMENT_MAGIC:
        raise ValueError(f"bad segment magic {magic!r}, expected {SEGMENT_MAGIC!r}")
    if version != SEGMENT_FORMAT_VERSION:
        raise ValueError(
            f"unsupported segment format version {version} (this build: {SEGMENT_FORMAT_VERSION})"
        )
    if flags & ~_KNOWN_FLAGS:
        raise ValueError(f"unknown segment flags {flags:#x}")
    named = parse_segment_name(path.name)
    if named != (seq, first_index):
        raise ValueError(f"header says seq {seq}, first index {first_index}, but the file name says {named}")
    reset = (reset_index, reset_term) if flags & _FLAG_RESET else None
    return SegmentHeader(seq, first_index, reset)


@dataclass(slots=True)
class SegmentInfo:
    """What the WAL keeps in memory about one of its segment files."""

    path: Path
    header: SegmentHeader
    size_bytes: int
    # The largest index any ENTRIES record in this segment holds (0: none). Entries a later
    # truncation removed still count: the segment holds them until it is deleted.
    max_entry_index: int
