"""Errors of the storage layer. Each names the file (and byte offset) it is about where there is one."""

from __future__ import annotations

from pathlib import Path

from consensus.errors import RaftError


class StorageError(RaftError):
    """Base class of every error the storage package raises on purpose."""


class StorageCorruptionError(StorageError):
    """The data on disk is damaged in a way that recovery must not paper over.

    Raised for damage that cannot be a torn write at the end of the log: a bad checksum or
    header followed by valid data, a damaged segment that is not the last one, a snapshot
    whose checksum does not match. Recovery never skips such a record: an operator decides
    (restore the node from its peers, or from a backup).
    """

    def __init__(self, path: Path | str, offset: int | None, reason: str) -> None:
        where = f"{path}" if offset is None else f"{path} at byte offset {offset}"
        super().__init__(f"storage corruption in {where}: {reason}")
        self.path = Path(path)
        self.offset = offset
        self.reason = reason


class StorageIdentityError(StorageError):
    """The data directory belongs to another cluster or node (or has no identity at all)."""


class StorageLockedError(StorageError):
    """Another ``NodeStorage`` (in this or another process) has the data directory open."""


class RecordTooLargeError(StorageError, ValueError):
    """A record (one log entry, a snapshot) is bigger than the configured bound."""


class StorageFailedError(StorageError):
    """An earlier write or fsync failed part-way; the on-disk state is unknown until reopened.

    After a failed fsync the kernel may have dropped the dirty pages, so retrying could
    report success for data that is gone: the only safe course is to stop and recover.
    """


class StorageSyncError(StorageFailedError):
    """An fsync of a WAL segment failed (EIO from a failing disk, say): the node must stop.

    Nothing that write was for may be acknowledged, and the storage is not retried: a failed
    fsync may have dropped the unsynced pages while marking them clean, so a second fsync
    could succeed without the data ever reaching the disk.
    """

    def __init__(self, path: Path | str, cause: OSError) -> None:
        reason = cause.strerror or str(cause)
        super().__init__(f"fsync of WAL segment {path} failed: {reason} (errno {cause.errno})")
        self.path = Path(path)
        self.errno = cause.errno


class StorageClosedError(StorageError):
    """The storage was used after ``close()``."""
