"""Which cluster and node a data directory belongs to, and the lock that keeps it to one user.

The identity file is written (atomically) when a node first starts in an empty directory and
checked at every later start, so that a node started with another node's directory, or a
directory left over from another cluster, refuses to run instead of joining with a log that
is not its own (that would break Raft's safety: a node's votes and log must be its own).
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path

from consensus.storage.errors import StorageCorruptionError, StorageIdentityError, StorageLockedError
from consensus.storage.files import write_file_atomically

__all__ = ["IDENTITY_FILE_NAME", "ClusterIdentity", "DirectoryLock", "check_or_create_identity"]

IDENTITY_FILE_NAME = "IDENTITY"
LOCK_FILE_NAME = "LOCK"
_IDENTITY_FORMAT_VERSION = 1
_CLUSTER_ID_CHARS_MAX = 128
_IDENTITY_BYTES_MAX = 4096


@dataclass(frozen=True, slots=True)
class ClusterIdentity:
    cluster_id: str
    node_id: int

    def __post_init__(self) -> None:
        if not isinstance(self.cluster_id, str) or not 1 <= len(self.cluster_id) <= _CLUSTER_ID_CHARS_MAX:
            raise ValueError(f"cluster_id must be a string of 1 to {_CLUSTER_ID_CHARS_MAX} characters")
        if not self.cluster_id.isprintable():
            raise ValueError(f"cluster_id must be printable, got {self.cluster_id!r}")
        if not isinstance(self.node_id, int) or self.node_id <= 0:
            raise ValueError(f"node_id must be a positive integer, got {self.node_id!r}")

    def encode(self) -> bytes:
        record = {
            "format_version": _IDENTITY_FORMAT_VERSION,
            "cluster_id": self.cluster_id,
            "node_id": self.node_id,
        }
        return (json.dumps(record, sort_keys=True) + "\n").encode()


def check_or_create_identity(data_dir: Path, expected: ClusterIdentity, *, sync: bool) -> bool:
    """Check ``data_dir``'s identity file against ``expected``, or write it when the directory
    holds nothing yet. Returns True when it was created."""
    path = data_dir / IDENTITY_FILE_NAME
    if not path.exists():
        _check_unused(data_dir)
        write_file_atomically(path, expected.encode(), sync=sync)
        return True
    found = _read_identity(path)
    if found != expected:
        raise StorageIdentityError(
            f"{data_dir} belongs to cluster {found.cluster_id!r} node {found.node_id}, not to cluster "
            f"{expected.cluster_id!r} node {expected.node_id}: refusing to use another node's data"
        )
    return False


def _check_unused(data_dir: Path) -> None:
    """A directory without an identity must hold nothing but what a first start leaves
    behind if it dies early (the lock, an unfinished identity file, empty subdirectories)."""
    leftovers = {LOCK_FILE_NAME, IDENTITY_FILE_NAME + ".tmp"}
    for path in data_dir.iterdir():
        if path.name in leftovers or (path.is_dir() and not any(path.iterdir())):
            continue
        raise StorageIdentityError(
            f"{data_dir} has no {IDENTITY_FILE_NAME} file but is not empty ({path.name}): "
            "refusing to guess whose data it is"
        )


def _read_identity(path: Path) -> ClusterIdentity:
    raw = path.read_bytes()[: _IDENTITY_BYTES_MAX + 1]
    try:
        if len(raw) > _IDENTITY_BYTES_MAX:
            raise ValueError(f"more than {_IDENTITY_BYTES_MAX} bytes")
        record = json.loads(raw)
        if record.get("format_version") != _IDENTITY_FORMAT_VERSION:
            raise ValueError(f"unsupported format_version {record.get('format_version')!r}")
        return ClusterIdentity(cluster_id=record["cluster_id"], node_id=record["node_id"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StorageCorruptionError(path, None, f"unreadable identity file: {exc}") from None


class DirectoryLock:
    """An exclusive ``flock`` on ``<data_dir>/LOCK``, held while the storage is open.

    ``flock`` locks belong to the open file, so a second open in the same process is refused
    too, and the kernel drops the lock when the process dies.
    """

    def __init__(self, data_dir: Path) -> None:
        path = data_dir / LOCK_FILE_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StorageLockedError(f"{data_dir} is already open by another NodeStorage ({path})") from None
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
