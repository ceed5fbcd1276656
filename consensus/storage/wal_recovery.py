"""Opening a WAL directory after a clean stop or a crash: repair what a crash can leave,
refuse what it cannot, and replay the records into the log they describe.

Steps, in order:

1. Remove leftover ``*.tmp`` files (a segment being created when the process died).
2. Read every segment's header, in ``seq`` order; a gap in the sequence or a damaged header
   is fatal.
3. A reset segment (opened when installing a leader's snapshot) whose snapshot is not on
   disk marks an install that did not complete: the snapshot is written after the reset
   segment, and no log record is written into the segment before the snapshot is durable.
   That segment is removed, which leaves the log exactly as it was before the install.
4. Segments before the last reset segment are removed (an install that completed but died
   before deleting them).
5. Segment by segment (one in memory at a time), the records are checked and replayed on
   top of the snapshot. Only the last segment may end in a torn write (segments are synced
   before a new one starts); its torn tail is truncated away on disk so that new appends
   follow the last whole record.

Replay starts from the snapshot, not from an empty log, because compaction may have deleted
segments. Compaction deletes only a *prefix* of segments whose entries all have index <= the
snapshot's, so replaying the rest with everything at or below the snapshot index ignored
gives exactly the entries after the snapshot that a replay of the full history would give.
"""

from __future__ import annotations

import itertools
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from consensus import codec
from consensus.errors import InvalidMessageError
from consensus.messages import Entry, HardState, SnapshotMeta
from consensus.storage.entry_batch import decode_entry_batch
from consensus.storage.errors import StorageCorruptionError
from consensus.storage.files import remove_files, sync_file
from consensus.storage.records import RECORD_HEADER_BYTES, RawRecord, RecordType, TornTail, scan_records
from consensus.storage.segments import (
    SEGMENT_FORMAT_VERSION,
    SEGMENT_HEADER_PAYLOAD_BYTES,
    SegmentHeader,
    SegmentInfo,
    decode_segment_header,
    parse_segment_name,
    peek_format_version,
    record_seed,
    record_seed_of,
)

__all__ = ["RecoveredWal", "decode_truncate_index", "recover_wal"]

_log = logging.getLogger(__name__)


@dataclass(slots=True)
class RecoveredWal:
    segments: list[SegmentInfo]
    base_index: int  # the snapshot index the replay started from (0: none)
    entries: list[Entry]  # base_index + 1 .. last index
    hard_state: HardState
    notes: list[str] = field(default_factory=list)  # repairs done, for the operator


@dataclass(frozen=True, slots=True)
class _Segment:
    path: Path
    header: SegmentHeader


def recover_wal(directory: Path, snapshot: SnapshotMeta | None, *, sync: bool) -> RecoveredWal | None:
    """Recover the WAL in ``directory`` given the newest snapshot on disk; None if it is empty."""
    notes: list[str] = []
    _remove_temp_files(directory, sync, notes)
    loaded = [_read_header(path) for path in _segment_paths(directory)]
    if not loaded:
        if snapshot is not None:
            raise StorageCorruptionError(
                directory,
                None,
                f"no WAL segments but a snapshot at index {snapshot.index}: the log is missing",
            )
        return None
    _drop_incomplete_install(loaded, snapshot, sync, notes)
    _drop_before_last_reset(loaded, directory, sync, notes)
    base_index = snapshot.index if snapshot is not None else 0
    replay = _Replay(base_index)
    segments = []
    for position, segment in enumerate(loaded):
        # One segment in memory at a time, beside the entries decoded so far.
        data = segment.path.read_bytes()
        is_last = position == len(loaded) - 1
        why = "in a segment that is not the last one"
        scan = scan_records(
            data,
            segment.path,
            tail_may_be_torn=is_last,
            not_torn_because=why,
            seed=record_seed(segment.header.seq),
        )
        if scan.torn is not None:
            _truncate_torn_tail(segment.path, len(data), scan.torn, sync, notes)
        max_entry_index = replay.apply_segment(segment.path, data, scan.records)
        segments.append(SegmentInfo(segment.path, segment.header, scan.end_offset, max_entry_index))
    if replay.hard_state is None:
        raise StorageCorruptionError(directory, None, "no hard state record in any segment")
    for note in notes:
        _log.warning("WAL recovery: %s", note)
    return RecoveredWal(segments, base_index, replay.entries, replay.hard_state, notes)


def _remove_temp_files(directory: Path, sync: bool, notes: list[str]) -> None:
    temps = sorted(directory.glob("*.tmp"))
    remove_files(temps, directory, sync=sync)
    notes.extend(f"removed unfinished segment file {path}" for path in temps)


def _segment_paths(directory: Path) -> list[Path]:
    named = []
    for path in directory.iterdir():
        parsed = parse_segment_name(path.name)
        if parsed is not None:
            named.append((parsed[0], path))
    named.sort()
    for (seq, path), (next_seq, next_path) in itertools.pairwise(named):
        if next_seq != seq + 1:
            raise StorageCorruptionError(
                next_path,
                None,
                f"segment sequence jumps from {seq} ({path.name}) to {next_seq}: segments missing",
            )
    return [path for _, path in named]


def _read_header(path: Path) -> _Segment:
    with path.open("rb") as file:
        data = file.read(RECORD_HEADER_BYTES + SEGMENT_HEADER_PAYLOAD_BYTES)
    why = "segments are created whole, under a temporary name"
    try:
        scan = scan_records(
            data, path, tail_may_be_torn=False, records_max=1, not_torn_because=why, seed=record_seed_of(path)
        )
    except StorageCorruptionError:
        _refuse_older_format(data, path)
        raise
    if not scan.records or scan.records[0].type != RecordType.SEGMENT_HEADER:
        raise StorageCorruptionError(path, 0, "the segment does not start with a segment header record")
    record = scan.records[0]
    try:
        header = decode_segment_header(data[record.payload_start : record.payload_end], path)
    except ValueError as exc:
        raise StorageCorruptionError(path, 0, f"bad segment header: {exc}") from None
    return _Segment(path, header)


def _refuse_older_format(data: bytes, path: Path) -> None:
    """A header whose checksum fails but whose payload names another format version is a
    segment of that format (format 1 used zlib's CRC32, unseeded): say so."""
    version = peek_format_version(
        data[RECORD_HEADER_BYTES : RECORD_HEADER_BYTES + SEGMENT_HEADER_PAYLOAD_BYTES]
    )
    if version is not None and version != SEGMENT_FORMAT_VERSION:
        raise StorageCorruptionError(
            path, 0, f"unsupported segment format version {version} (this build: {SEGMENT_FORMAT_VERSION})"
        )


def _drop_incomplete_install(
    loaded: list[_Segment], snapshot: SnapshotMeta | None, sync: bool, notes: list[str]
) -> None:
    resets = [segment for segment in loaded if segment.header.reset is not None]
    if not resets:
        return
    segment = resets[-1]
    assert segment.header.reset is not None
    reset_index, reset_term = segment.header.reset
    snapshot_index = snapshot.index if snapshot is not None else 0
    if reset_index < snapshot_index:
        return
    if snapshot is not None and reset_index == snapshot_index:
        if reset_term != snapshot.term:
            raise StorageCorruptionError(
                segment.path,
                0,
                f"reset segment starts from snapshot (index {reset_index}, term {reset_term}) but the "
                f"snapshot on disk at that index has term {snapshot.term}",
            )
        return
    # The snapshot this segment starts from never became durable: the install did not complete.
    if segment is not loaded[-1]:
        raise StorageCorruptionError(
            segment.path, 0, f"reset segment for a missing snapshot at index {reset_index} is not the last"
        )
    seed = record_seed(segment.header.seq)
    scan = scan_records(segment.path.read_bytes(), segment.path, tail_may_be_torn=True, seed=seed)
    for record in scan.records:
        if record.type not in (RecordType.SEGMENT_HEADER, RecordType.HARD_STATE):
            raise StorageCorruptionError(
                segment.path,
                record.offset,
                f"{record.type.name} record in a reset segment whose snapshot ({reset_index}) is missing",
            )
    remove_files([segment.path], segment.path.parent, sync=sync)
    loaded.pop()
    notes.append(
        f"removed {segment.path.name}: the install of the snapshot at index {reset_index} did not complete"
    )
    if not loaded:
        raise StorageCorruptionError(segment.path.parent, None, "the only segment was an incomplete install")


def _drop_before_last_reset(loaded: list[_Segment], directory: Path, sync: bool, notes: list[str]) -> None:
    last_reset = max((k for k, s in enumerate(loaded) if s.header.reset is not None), default=0)
    if last_reset == 0:
        return
    stale = loaded[:last_reset]
    remove_files([segment.path for segment in stale], directory, sync=sync)
    del loaded[:last_reset]
    notes.append(f"removed {len(stale)} segments that a completed snapshot install had replaced")


def _truncate_torn_tail(path: Path, size: int, torn: TornTail, sync: bool, notes: list[str]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.ftruncate(fd, torn.offset)
        if sync:
            sync_file(fd)
    finally:
        os.close(fd)
    notes.append(f"truncated {path.name} from {size} to {torn.offset} bytes: {torn.reason}")


def decode_truncate_index(data: bytes, record: RawRecord) -> int:
    if record.payload_end - record.payload_start != 8:
        raise ValueError(f"TRUNCATE payload is {record.payload_end - record.payload_start} bytes, expected 8")
    return int.from_bytes(data[record.payload_start : record.payload_end], "little")


class _Replay:
    """The log as the records so far describe it, above ``base_index``."""

    def __init__(self, base_index: int) -> None:
        self.base_index = base_index
        self.entries: list[Entry] = []
        self.hard_state: HardState | None = None

    @property
    def last_index(self) -> int:
        return self.base_index + len(self.entries)

    def apply_segment(self, path: Path, data: bytes, records: list[RawRecord]) -> int:
        """Apply a segment's records after its header; returns its largest entry index."""
        max_entry_index = 0
        for record in records[1:]:
            try:
                if record.type == RecordType.ENTRIES:
                    batch = decode_entry_batch(data, record.payload_start, record.payload_end)
                    if batch:
                        self._append(batch)
                        max_entry_index = max(max_entry_index, batch[-1].index)
                elif record.type == RecordType.HARD_STATE:
                    payload = data[record.payload_start : record.payload_end]
                    self.hard_state = codec.decode_hard_state(payload)
                elif record.type == RecordType.TRUNCATE:
                    self._truncate(decode_truncate_index(data, record))
                else:
                    raise ValueError(f"{record.type.name} record after the start of the segment")
            except (ValueError, InvalidMessageError) as exc:
                reason = f"bad {record.type.name} record: {exc}"
                raise StorageCorruptionError(path, record.offset, reason) from None
        return max_entry_index

    def _append(self, batch: list[Entry]) -> None:
        base = self.base_index
        if batch[-1].index <= base:
            return  # entirely covered by the snapshot
        first = batch[0].index
        start = max(first, base + 1)
        if start != self.last_index + 1:
            raise ValueError(f"entries {first}..{batch[-1].index} do not follow last index {self.last_index}")
        self.entries.extend(batch[start - first :])

    def _truncate(self, from_index: int) -> None:
        if from_index < 1 or from_index > self.last_index + 1:
            raise ValueError(f"truncation at {from_index} outside the log [1, {self.last_index + 1}]")
        del self.entries[max(from_index - self.base_index - 1, 0) :]
