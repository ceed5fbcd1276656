"""Durable storage for a Raft node: a segmented write-ahead log, snapshot files, and the
``NodeStorage`` façade that persists a ``Ready`` and recovers a ``RestoredState``.

See ``node_storage`` for the data directory layout and the driving loop, ``records`` for
how a torn tail is told apart from corruption, and ``failpoints`` for crash injection.
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
    "failpoints",
]
