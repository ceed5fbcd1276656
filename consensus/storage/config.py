"""Tunables of one node's storage, with their units in their names."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from consensus.storage.records import RECORD_PAYLOAD_BYTES_LIMIT


class FsyncPolicy(enum.StrEnum):
    """When the write-ahead log is flushed to stable storage.

    * ``ALWAYS``: every ``save_ready`` (and every other write) syncs before it returns, so
      everything it wrote survives a power failure - except a hard state that only moves
      the commit index, which Raft does not need durable: it is synced with the next write
      (etcd's rule). The caller may also take the sync into its own hands
      (``save_ready(defer_sync=True)``) to run it off its event loop.
    * ``BATCH``: group commit. A write syncs only if the oldest unsynced record is at least
      ``sync_interval_ms`` old; the driver calls ``sync()`` when ``needs_sync()`` says so (at
      ``sync_deadline()``). On power loss at most the writes of the last ``sync_interval_ms``
      (plus the driver's scheduling delay) are lost; a process crash loses nothing. Snapshot
      files, new segments and directory changes are still synced at once (they are rare).
    * ``NEVER``: no fsync at all, not even of directories. For tests only.
    """

    ALWAYS = "always"
    BATCH = "batch"
    NEVER = "never"


_SEGMENT_BYTES_MIN = 512


@dataclass(frozen=True, slots=True)
class StorageConfig:
    """Configuration of one ``NodeStorage``.

    ``fsync`` may be given as its string value (``"batch"``). ``record_bytes_max`` bounds one
    WAL record: a batch of entries is split into records of at most this size, and one entry
    that does not fit alone is refused with ``RecordTooLargeError``. A segment rolls before a
    record would take it past ``segment_bytes_max`` (a record larger than that gets a
    segment of its own).
    """

    fsync: FsyncPolicy = FsyncPolicy.ALWAYS
    sync_interval_ms: int = 10
    segment_bytes_max: int = 64 * 1024 * 1024
    record_bytes_max: int = 16 * 1024 * 1024
    snapshot_bytes_max: int = 16 * 1024 * 1024 * 1024
    snapshots_kept_max: int = 2
    # Compacted segments kept to be reused in place (``recycling.py``); 0 deletes them all.
    # Four cover a store's compaction (a snapshot per 256 MiB of 64 MiB segments); the disk
    # they hold is bounded by recycled_segments_max x segment_bytes_max.
    recycled_segments_max: int = 4
    # Pruned snapshot files kept to write the next snapshot into in place, for the same
    # reason (``snapshots.py``); 0 deletes them. Each holds a snapshot's worth of disk.
    recycled_snapshots_max: int = 1
    # Append to WAL segments with O_DIRECT from an aligned buffer (``append_file.py``): far
    # less CPU per byte for logs of big entries; each write then waits for the device.
    direct_writes: bool = False

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "fsync", FsyncPolicy(self.fsync))
        except ValueError:
            expected = ", ".join(repr(p.value) for p in FsyncPolicy)
            raise ValueError(f"fsync must be one of {expected}, got {self.fsync!r}") from None
        if self.sync_interval_ms < 1:
            raise ValueError(f"sync_interval_ms must be >= 1, got {self.sync_interval_ms}")
        if self.segment_bytes_max < _SEGMENT_BYTES_MIN:
            raise ValueError(
                f"segment_bytes_max must be >= {_SEGMENT_BYTES_MIN}, got {self.segment_bytes_max}"
            )
        if not 64 <= self.record_bytes_max <= RECORD_PAYLOAD_BYTES_LIMIT:
            raise ValueError(
                f"record_bytes_max must be in [64, {RECORD_PAYLOAD_BYTES_LIMIT}], got {self.record_bytes_max}"
            )
        if self.snapshot_bytes_max < 1:
            raise ValueError(f"snapshot_bytes_max must be >= 1, got {self.snapshot_bytes_max}")
        if self.recycled_segments_max < 0:
            raise ValueError(f"recycled_segments_max must be >= 0, got {self.recycled_segments_max}")
        if self.recycled_snapshots_max < 0:
            raise ValueError(f"recycled_snapshots_max must be >= 0, got {self.recycled_snapshots_max}")
        if self.snapshots_kept_max < 1:
            raise ValueError(f"snapshots_kept_max must be >= 1, got {self.snapshots_kept_max}")

    @property
    def syncs(self) -> bool:
        """Whether files and directories are ever synced (everything but ``NEVER``)."""
        return self.fsync is not FsyncPolicy.NEVER
