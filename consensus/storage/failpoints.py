"""Named crash points in the storage write path, for crash-consistency tests and chaos runs.

Off by default. A failpoint is armed by name, either from the environment variable
``PARAMSTORE_FAILPOINTS`` read when this module is first imported (comma-separated items,
each ``name`` or ``name@N`` meaning "crash on the N-th hit"), or with ``arm``. Hitting an
armed failpoint kills the process at once with SIGKILL: no ``finally`` blocks, no buffered
output, exactly like ``kill -9`` between two instructions. (The kernel's page cache survives,
as in a real process crash; losing unsynced data is a power failure, which this does not
simulate: ``paramstore chaos`` does that with the sync journal, ``sync_journal.py``.)

One failpoint is not a crash: ``wal.fsync_error`` makes the WAL's fsync fail with
``OSError(EIO)`` instead of syncing, on the N-th fsync and every one after it (a disk that
failed stays failed), so that tests can check the node fail-stops instead of going on.
"""

from __future__ import annotations

import errno
import os
import signal

__all__ = [
    "ENV_VARIABLE",
    "FAILPOINT_NAMES",
    "SNAPSHOT_AFTER_RENAME_BEFORE_DIR_FSYNC",
    "SNAPSHOT_BEFORE_RENAME",
    "SNAPSHOT_MID_WRITE",
    "WAL_AFTER_APPEND_BEFORE_FSYNC",
    "WAL_AFTER_FSYNC",
    "WAL_FSYNC_ERROR",
    "arm",
    "arm_from_environment",
    "armed",
    "disarm_all",
    "fail_io",
    "hit",
]

ENV_VARIABLE = "PARAMSTORE_FAILPOINTS"

# Records are written to the segment file but not yet synced.
WAL_AFTER_APPEND_BEFORE_FSYNC = "wal.after_append_before_fsync"
# The segment file was just synced.
WAL_AFTER_FSYNC = "wal.after_fsync"
# Part of the snapshot's data is in its temporary file.
SNAPSHOT_MID_WRITE = "snapshot.mid_write"
# The temporary snapshot file is complete and synced, not yet renamed into place.
SNAPSHOT_BEFORE_RENAME = "snapshot.before_rename"
# The snapshot has its final name, the directory entry is not yet synced.
SNAPSHOT_AFTER_RENAME_BEFORE_DIR_FSYNC = "snapshot.after_rename_before_dir_fsync"
# Not a crash: the WAL's fsync raises OSError(EIO) instead of syncing (``fail_io``).
WAL_FSYNC_ERROR = "wal.fsync_error"

FAILPOINT_NAMES = frozenset(
    {
        WAL_AFTER_APPEND_BEFORE_FSYNC,
        WAL_AFTER_FSYNC,
        SNAPSHOT_MID_WRITE,
        SNAPSHOT_BEFORE_RENAME,
        SNAPSHOT_AFTER_RENAME_BEFORE_DIR_FSYNC,
        WAL_FSYNC_ERROR,
    }
)

# name -> hits still to pass before the crash (1: crash on the next hit).
_hits_left: dict[str, int] = {}


def arm(name: str, *, on_hit: int = 1) -> None:
    """Crash the process (for ``WAL_FSYNC_ERROR``: fail the fsync) on the ``on_hit``-th time
    ``name`` is reached from now on."""
    if name not in FAILPOINT_NAMES:
        raise ValueError(f"unknown failpoint {name!r}; known: {', '.join(sorted(FAILPOINT_NAMES))}")
    if on_hit < 1:
        raise ValueError(f"on_hit must be >= 1, got {on_hit}")
    _hits_left[name] = on_hit


def disarm_all() -> None:
    _hits_left.clear()


def armed() -> frozenset[str]:
    return frozenset(_hits_left)


def hit(name: str) -> None:
    """Called by the write path at the point ``name``; kills the process when it is armed."""
    if not _hits_left:  # the common case: one dict truth test
        return
    remaining = _hits_left.get(name)
    if remaining is None:
        return
    if remaining > 1:
        _hits_left[name] = remaining - 1
        return
    os.write(2, f"paramstore: failpoint {name} hit, killing process {os.getpid()}\n".encode())
    os.kill(os.getpid(), signal.SIGKILL)


def fail_io(name: str) -> None:
    """Called right before the I/O that failpoint ``name`` stands for: raises ``OSError(EIO)``
    from the armed hit on (it stays armed: every later attempt fails too)."""
    if not _hits_left:  # the common case: one dict truth test
        return
    remaining = _hits_left.get(name)
    if remaining is None:
        return
    if remaining > 1:
        _hits_left[name] = remaining - 1
        return
    raise OSError(errno.EIO, f"{os.strerror(errno.EIO)} (failpoint {name})")


def arm_from_environment(value: str | None) -> None:
    """Arm every item of a ``PARAMSTORE_FAILPOINTS`` value (``name`` or ``name@N``)."""
    for item in (value or "").split(","):
        item = item.strip()
        if not item:
            continue
        name, _, count = item.partition("@")
        try:
            on_hit = int(count) if count else 1
        except ValueError:
            raise ValueError(f"{ENV_VARIABLE}: bad hit count in {item!r}; expected name or name@N") from None
        arm(name, on_hit=on_hit)


arm_from_environment(os.environ.get(ENV_VARIABLE))
