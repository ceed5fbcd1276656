"""Durable storage for a Raft node: a segmented write-ahead log, snapshot files, and the
``NodeStorage`` façade that persists a ``Ready`` and recovers a ``RestoredState``.

See ``node_storage`` for the data directory layout and the driving loop, ``records`` for
how a torn tail is told apart from corruption, and ``failpoints`` for crash injection.

Test and chaos facilities, off unless an environment variable turns them on:

* ``PARAMSTORE_FAILPOINTS`` (``failpoints``): crash at a named point of the write path, or
  (``wal.fsync_error``) make the WAL's fsync fail with EIO, after which the node fail-stops
  (``StorageSyncError``; it never retries a failed fsync);
* ``PARAMSTORE_SYNC_JOURNAL`` (``sync_journal``): append "<segment path> <synced size>" to a
  file after every WAL fsync, so that a chaos run can simulate a power loss by cutting a
  killed node's segments back to what it had synced.
"""

from consensus.storage import failpoints
from consensus.storage.config import FsyncPolicy, StorageConfig
from consensus.storage.errors import (
    RecordTooLargeError,
    StorageClosedError,
    StorageCorruptionError,
    StorageError,
    StorageFailedError,
    StorageIdentityError,
    StorageLockedError,
    StorageSyncError,
)
from consensus.storage.node_storage import NodeStorage

__all__ = [
    "FsyncPolicy",
    "NodeStorage",
    "RecordTooLargeError",
    "StorageClosedError",
    "StorageConfig",
    "StorageCorruptionError",
    "StorageError",
    "StorageFailedError",
    "StorageIdentityError",
    "StorageLockedError",
    "StorageSyncError",
    "failpoints",
]
