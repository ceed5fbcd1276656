"""The write-ahead log: a directory of segment files holding entries and hard states.

Writing is append-only. ``append`` turns entries and a hard state into records (a TRUNCATE
record first when the entries overwrite the log's tail, then ENTRIES records of at most
``record_bytes_max`` bytes, then the HARD_STATE), writes them with one ``write`` per segment
touched, and syncs as the fsync policy says. A segment rolls before a record would take it
past ``segment_bytes_max``: the full segment is synced first (so only the last segment can
ever end in a torn write), and the new one is created complete (header and current hard
state) under a temporary name, synced, renamed into place, and its directory synced.

Store nodes append with direct writes (``StorageConfig.direct_writes``, ``append_file.py``),
which pad the last block with zeros: recovery reads them as a zero-filled tail.

No thread runs inside: with ``FsyncPolicy.BATCH`` the driver calls ``sync()`` when
``needs_sync()`` becomes true (at ``sync_deadline()``).

Opening a WAL that already exists syncs its last segment: after a process crash the records
recovery reads back may be in the page cache only, and the node must not acknowledge
anything on the strength of records that a power failure could still take away.

Every fsync of a segment goes through ``_sync_segment``: a failed fsync raises
``StorageSyncError`` (the node fail-stops; the ``wal.fsync_error`` failpoint makes one fail
on purpose), and a successful one is recorded in the sync journal when that test facility
is on (``sync_journal``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from consensus import codec
from consensus.errors import InvalidRequestError
from consensus.messages import Entry, HardState, SnapshotMeta
from consensus.storage import failpoints, sync_journal
from consensus.storage.append_file import AppendFile, direct_buffer
from consensus.storage.config import FsyncPolicy, StorageConfig
from consensus.storage.entry_batch import encode_entry_batches
from consensus.storage.errors import StorageSyncError
from consensus.storage.files import remove_files, sync_directory, sync_file
from consensus.storage.records import (
    RECORD_HEADER_BYTES,
    RecordType,
    encode_record,
    payload_checksum,
    record_head,
)
from consensus.storage.recycling import recycled_name, recycled_paths, recycled_seq
from consensus.storage.segments import (
    SEGMENT_HEADER_PAYLOAD_BYTES,
    SegmentHeader,
    SegmentInfo,
    encode_segment_header,
    record_seed,
    segment_name,
)
from consensus.storage.wal_recovery import RecoveredWal, recover_wal

__all__ = ["WriteAheadLog"]

Clock = Callable[[], float]

# The most a new segment's header and hard state records take (a hard state's protobuf
# encoding is at most 33 bytes: three 10-byte varints and their tags).
_PREAMBLE_BYTES_MAX = 2 * RECORD_HEADER_BYTES + SEGMENT_HEADER_PAYLOAD_BYTES + 33


@dataclass(frozen=True, slots=True)
class _Pending:
    """One record, checksummed but without its header (whose checksum is seeded by the
    segment it lands in, which is known only when it is written), and the log state once
    it is written."""

    type: RecordType
    payload: Sequence[bytes | memoryview]
    payload_bytes: int
    payload_crc: int
    last_index: int
    hard_state: HardState
    max_entry_index: int  # 0 unless an ENTRIES record


class WriteAheadLog:
    """Segments in ``directory``; entries ``base_index + 1 .. last_index`` and a hard state."""

    def __init__(
        self,
        directory: Path,
        config: StorageConfig,
        clock: Clock,
        recovered: RecoveredWal,
    ) -> None:
        if not recovered.segments:
            raise AssertionError("a WAL always has at least one segment")
        self.directory = directory
        self._config = config
        self._clock = clock
        self._segments = recovered.segments
        self._base_index = recovered.base_index
        self._last_index = recovered.base_index + len(recovered.entries)
        self._hard_state = recovered.hard_state
        self._unsynced_since: float | None = None
        self._recycled = recycled_paths(directory)
        surplus = len(self._recycled) - config.recycled_segments_max
        if surplus > 0:
            remove_files(self._recycled[:surplus], directory, sync=config.syncs)
            del self._recycled[:surplus]
        self._buffer = direct_buffer() if config.direct_writes else None
        self._file = AppendFile(self._segments[-1].path, self._segments[-1].size_bytes, buffer=self._buffer)

    @classmethod
    def open(
        cls, directory: Path, config: StorageConfig, clock: Clock, snapshot: SnapshotMeta | None
    ) -> tuple[WriteAheadLog, RecoveredWal]:
        """Recover the WAL in ``directory`` (creating it empty when there is none)."""
        recovered = recover_wal(directory, snapshot, sync=config.syncs)
        if recovered is None:
            header = SegmentHeader(seq=1, first_index=1)
            path, size = _create_segment(directory, header, HardState(), sync=config.syncs)
            recovered = RecoveredWal([SegmentInfo(path, header, size, 0)], 0, [], HardState())
            return cls(directory, config, clock, recovered), recovered
        wal = cls(directory, config, clock, recovered)
        if config.syncs:
            # What a crashed process wrote may be in the page cache only: durable before use.
            # (Every earlier segment was synced in full before the next one was created.)
            try:
                wal._sync_active()
            except BaseException:
                wal._file.close()
                raise
        return wal, recovered

    # ---- state --------------------------------------------------------------------------

    @property
    def base_index(self) -> int:
        """Entries up to here are covered by the snapshot: they can no longer be rewritten."""
        return self._base_index

    @property
    def last_index(self) -> int:
        return self._last_index

    @property
    def hard_state(self) -> HardState:
        return self._hard_state

    @property
    def segments(self) -> tuple[SegmentInfo, ...]:
        return tuple(self._segments)

    # ---- writing ------------------------------------------------------------------------

    def append(
        self, entries: Sequence[Entry], hard_state: HardState | None, *, defer_sync: bool = False
    ) -> bool:
        """Persist ``entries`` (replacing the log from ``entries[0].index`` on), then ``hard_state``.

        Under ``ALWAYS`` the write is synced before this returns, unless it only moves the
        commit index (no entries, same term and vote): Raft never needs the commit index
        durable (a restarted node learns it again from the leader), so such a write rides
        with the next sync, as etcd's ``MustSync`` does. With ``defer_sync`` the sync that
        is owed is left to the caller (who may run ``sync`` in another thread, so that the
        event loop keeps gathering the next batch meanwhile): the return value says whether
        it must call ``sync()`` before anything that depends on this write leaves the node.
        """
        previous = self._hard_state
        pending = self._encode(entries, hard_state)
        if not pending:
            return False
        must_sync = bool(entries) or (
            hard_state is not None and (hard_state.term, hard_state.vote) != (previous.term, previous.vote)
        )
        self._write(pending)
        failpoints.hit(failpoints.WAL_AFTER_APPEND_BEFORE_FSYNC)
        policy = self._config.fsync
        if policy is FsyncPolicy.ALWAYS and must_sync:
            if defer_sync:
                return True
            self.sync()
        elif policy is FsyncPolicy.BATCH and self.needs_sync():
            self.sync()
        return False

    def _encode(self, entries: Sequence[Entry], hard_state: HardState | None) -> list[_Pending]:
        """All validation and encoding, before anything is written."""
        pending: list[_Pending] = []
        last = self._last_index
        state = self._hard_state
        if entries:
            first = entries[0].index
            if first <= self._base_index:
                raise InvalidRequestError(
                    f"cannot write entry {first}: entries up to {self._base_index} are in the snapshot"
                )
            if first > last + 1:
                raise InvalidRequestError(f"entries starting at {first} leave a gap after last index {last}")
            if first <= last:
                if first <= state.commit:
                    raise InvalidRequestError(
                        f"entries starting at {first} would replace committed entries (commit {state.commit})"
                    )
                last = first - 1
                pending.append(_pending(RecordType.TRUNCATE, [first.to_bytes(8, "little")], last, state, 0))
            payload_bytes_max = self._config.record_bytes_max - RECORD_HEADER_BYTES
            # Records no bigger than a segment's room, so big batches still fill segments evenly.
            segment_room = self._config.segment_bytes_max - _PREAMBLE_BYTES_MAX - RECORD_HEADER_BYTES
            target = min(payload_bytes_max, segment_room)
            for batch in encode_entry_batches(entries, target, payload_bytes_max):
                last = batch.last_index
                pending.append(_pending(RecordType.ENTRIES, batch.parts, last, state, last))
        if hard_state is not None:
            _check_hard_state(state, hard_state, max(last, self._base_index))
            state = hard_state
            pending.append(
                _pending(RecordType.HARD_STATE, [codec.encode_hard_state(hard_state)], last, state, 0)
            )
        return pending

    def _write(self, pending: list[_Pending]) -> None:
        chunk: list[bytes | memoryview] = []
        chunk_bytes = 0
        for item in pending:
            segment = self._segments[-1]
            size = segment.size_bytes + chunk_bytes
            item_bytes = RECORD_HEADER_BYTES + item.payload_bytes
            # A segment holding only its preamble takes any record, however large: no endless rolling.
            if size > _PREAMBLE_BYTES_MAX and size + item_bytes > self._config.segment_bytes_max:
                self._flush(chunk)
                chunk, chunk_bytes = [], 0
                self._roll()
                segment = self._segments[-1]
            seed = record_seed(segment.header.seq)
            chunk.append(record_head(item.type, item.payload_bytes, item.payload_crc, seed))
            chunk.extend(item.payload)
            chunk_bytes += item_bytes
            self._last_index = item.last_index
            self._hard_state = item.hard_state
            segment.max_entry_index = max(segment.max_entry_index, item.max_entry_index)
        self._flush(chunk)

    def _flush(self, chunk: list[bytes | memoryview]) -> None:
        if not chunk:
            return
        self._file.write_parts(chunk)
        self._segments[-1].size_bytes += sum(len(part) for part in chunk)
        if self._unsynced_since is None:
            self._unsynced_since = self._clock()

    def _roll(self) -> None:
        """Close the full segment (synced) and continue in a new one."""
        self._new_segment(SegmentHeader(self._segments[-1].header.seq + 1, self._last_index + 1))

    def _new_segment(self, header: SegmentHeader) -> None:
        # Only the last segment may have anything after its last record (see recovery).
        self._cut_recycled_tail()
        if self._config.syncs:
            self._sync_active()
        recycled = self._take_recycled(header.seq)
        path, size = _create_segment(
            self.directory, header, self._hard_state, sync=self._config.syncs, recycled=recycled
        )
        file = AppendFile(path, size, buffer=self._buffer)
        self._file.close()
        self._file = file
        self._segments.append(SegmentInfo(path, header, size, 0))

    def _take_recycled(self, seq: int) -> Path | None:
        """A recycled file for segment ``seq``, if the pool has one. Its old records are
        seeded with its old seq, so only a file whose old seq is lower (and not a multiple
        of 2^32 lower, the seed's width) may take ``seq``; any other is deleted (a pool
        left beside a log that started over, say)."""
        while self._recycled:
            path = self._recycled.pop()
            old = recycled_seq(path)
            if old < seq and record_seed(old) != record_seed(seq):
                return path
            remove_files([path], self.directory, sync=self._config.syncs)
        return None

    def _cut_recycled_tail(self) -> None:
        """Cut the active segment at its logical end: a reused file still holds old records
        past it, and a direct write pads its last block with zeros (``append_file.py``)."""
        size = self._segments[-1].size_bytes
        if self._file.size_on_disk() > size:
            self._file.truncate(size)

    # ---- snapshots and compaction -------------------------------------------------------

    def begin_reset(self, snapshot: SnapshotMeta, hard_state: HardState | None) -> None:
        """Start a new log after a leader's snapshot (discarding every entry), in a reset segment.

        The segment opens with ``hard_state`` (its commit capped at the snapshot index, since
        the entries it may cover come later), so that once the install is durable the term
        is at least the one it happened in. The caller writes the snapshot file only after
        this returns, then calls ``drop_replaced_segments``; recovery undoes a reset whose
        snapshot is missing, and with it this hard state.
        """
        if snapshot.index <= self._base_index:
            raise InvalidRequestError(
                f"snapshot at index {snapshot.index} is not newer than the log's base {self._base_index}"
            )
        if hard_state is not None:
            opening = HardState(hard_state.term, hard_state.vote, min(hard_state.commit, snapshot.index))
            _check_hard_state(self._hard_state, opening, snapshot.index)
            self._hard_state = opening
        seq = self._segments[-1].header.seq + 1
        header = SegmentHeader(seq, snapshot.index + 1, (snapshot.index, snapshot.term))
        self._new_segment(header)
        self._base_index = snapshot.index
        self._last_index = snapshot.index

    def drop_replaced_segments(self) -> list[Path]:
        """After a completed reset: delete every segment before the reset segment."""
        if self._segments[-1].header.reset is None:
            raise AssertionError("drop_replaced_segments without a reset segment last")
        return self._drop_prefix(len(self._segments) - 1)

    def note_snapshot(self, index: int) -> None:
        """The application saved a snapshot at ``index``: entries up to it are final."""
        if not self._base_index < index <= self._last_index:
            raise InvalidRequestError(
                f"snapshot index {index} is outside the log's range ({self._base_index}, {self._last_index}]"
            )
        self._base_index = index

    def compact(self, index: int) -> list[Path]:
        """Delete the oldest segments whose entries all have index <= ``index`` (never the last)."""
        if index > self._base_index:
            raise InvalidRequestError(f"cannot compact to {index}: the snapshot is at {self._base_index}")
        count = 0
        for segment in self._segments[:-1]:
            if segment.max_entry_index > index:
                break
            count += 1
        return self._drop_prefix(count)

    def _drop_prefix(self, count: int) -> list[Path]:
        """Drop the oldest ``count`` segments, in order (a power failure part-way leaves a
        suffix of the log, never a gap). The newest of them are kept for reuse, up to the
        pool's size: renamed, they are no longer segments."""
        doomed = self._segments[:count]
        keep = min(count, max(0, self._config.recycled_segments_max - len(self._recycled)))
        removed = remove_files(
            [s.path for s in doomed[: count - keep]], self.directory, sync=self._config.syncs
        )
        for segment in doomed[count - keep :]:
            target = self.directory / recycled_name(segment.header.seq)
            os.rename(segment.path, target)
            if self._config.syncs:
                sync_directory(self.directory)
            self._recycled.append(target)
            removed.append(segment.path)
        del self._segments[:count]
        return removed

    # ---- syncing ------------------------------------------------------------------------

    def needs_sync(self) -> bool:
        """True once the oldest unsynced write is ``sync_interval_ms`` old (``BATCH`` only)."""
        deadline = self.sync_deadline()
        return deadline is not None and self._clock() >= deadline

    def sync_deadline(self) -> float | None:
        """When (on the storage's clock, in seconds) ``sync()`` is due; None if nothing is pending."""
        if self._unsynced_since is None or self._config.fsync is not FsyncPolicy.BATCH:
            return None
        return self._unsynced_since + self._config.sync_interval_ms / 1000

    def sync(self) -> None:
        """Make every write so far durable (whatever the policy, when there is any)."""
        if self._unsynced_since is None:
            return
        self._sync_active()
        failpoints.hit(failpoints.WAL_AFTER_FSYNC)

    def _sync_active(self) -> None:
        segment = self._segments[-1]
        _sync_segment(self._file.fileno(), segment.path, segment.size_bytes)
        self._unsynced_since = None

    def close(self) -> None:
        if self._config.fsync is FsyncPolicy.BATCH:
            self.sync()
        self._cut_recycled_tail()  # a clean stop leaves no tail for recovery to repair
        self._file.close()
        if self._buffer is not None:
            self._buffer.close()
            self._buffer = None


def _pending(
    record_type: RecordType,
    payload: Sequence[bytes | memoryview],
    last_index: int,
    hard_state: HardState,
    max_entry_index: int,
) -> _Pending:
    length, crc = payload_checksum(payload)
    return _Pending(record_type, payload, length, crc, last_index, hard_state, max_entry_index)


def _check_hard_state(previous: HardState, new: HardState, last_index: int) -> None:
    if new.term < previous.term:
        raise InvalidRequestError(f"hard state term goes back from {previous.term} to {new.term}")
    if new.commit < previous.commit:
        raise InvalidRequestError(f"hard state commit goes back from {previous.commit} to {new.commit}")
    if new.commit > last_index:
        raise InvalidRequestError(f"hard state commit {new.commit} is beyond the last index {last_index}")


def _create_segment(
    directory: Path, header: SegmentHeader, hard_state: HardState, *, sync: bool, recycled: Path | None = None
) -> tuple[Path, int]:
    """Create a complete segment (header + hard state) atomically; its path and size.

    A new file is written under a temporary name, synced and renamed. A ``recycled`` file is
    written in place: the preamble over its start, synced, then renamed. The rest of it
    still holds records of its previous life, which under this segment's checksum seed are
    never whole (``records.py``): recovery reads them as a torn tail, and the records
    written from here on overwrite them.
    """
    path = directory / segment_name(header.seq, header.first_index)
    seed = record_seed(header.seq)
    data = encode_record(RecordType.SEGMENT_HEADER, encode_segment_header(header), seed=seed) + encode_record(
        RecordType.HARD_STATE, codec.encode_hard_state(hard_state), seed=seed
    )
    if len(data) > _PREAMBLE_BYTES_MAX:
        raise AssertionError(f"segment preamble of {len(data)} bytes exceeds {_PREAMBLE_BYTES_MAX}")
    source = recycled if recycled is not None else path.with_name(path.name + ".tmp")
    flags = os.O_WRONLY | os.O_CLOEXEC | (0 if recycled is not None else os.O_CREAT | os.O_EXCL)
    fd = os.open(source, flags, 0o644)
    try:
        written = os.pwrite(fd, data, 0)
        if written != len(data):
            raise OSError(f"segment preamble: pwrite wrote {written} of {len(data)} bytes")
        if sync:
            # Journaled under the final name: once the file has that name, this much is durable.
            _sync_segment(fd, path, len(data))
    finally:
        os.close(fd)
    os.rename(source, path)
    if sync:
        sync_directory(directory)
    return path, len(data)


def _sync_segment(fd: int, path: Path, size: int) -> None:
    """fsync segment ``path`` (``size`` bytes long); a failure is final (``StorageSyncError``)."""
    try:
        failpoints.fail_io(failpoints.WAL_FSYNC_ERROR)
        sync_file(fd)
    except OSError as exc:
        raise StorageSyncError(path, exc) from exc
    sync_journal.record(path, size)
