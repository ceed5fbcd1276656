"""The sync journal: a test-only record of how much of each WAL segment file is durable.

Off by default. When the environment variable ``PARAMSTORE_SYNC_JOURNAL`` names a file at
the time this module is first imported (or after ``enable``), every successful fsync of a
WAL segment appends one line to it::

    <segment file absolute path> <synced size in bytes>

The last line for a path is what a power failure would leave of that file. This is how
``paramstore chaos`` simulates a power loss (its ``power-loss`` nemesis): it kills a node
and cuts each of its segments back to the journal's size, throwing away what the node wrote
but never synced. A process crash alone cannot show that loss: the page cache survives it.

Each line is one ``os.write`` on an ``O_APPEND`` descriptor: no buffer a kill -9 could lose
(the journal lives in the page cache too, which is all the simulation needs), and the lines
of several processes sharing one journal never interleave. With the variable unset the cost
is one check per fsync.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ENV_VARIABLE", "JournalReader", "disable", "enable", "enabled", "record"]

ENV_VARIABLE = "PARAMSTORE_SYNC_JOURNAL"

_fd: int | None = None


def enable(path: str | os.PathLike[str]) -> None:
    """Journal every later sync to ``path`` (created if missing, appended to otherwise)."""
    global _fd
    disable()
    try:
        _fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise OSError(exc.errno, f"sync journal {os.fspath(path)!r}: cannot open: {exc.strerror}") from None


def disable() -> None:
    global _fd
    if _fd is not None:
        os.close(_fd)
        _fd = None


def enabled() -> bool:
    return _fd is not None


def record(path: Path, size: int) -> None:
    """Called after a successful fsync of segment ``path``: its first ``size`` bytes are durable."""
    if _fd is None:  # the common case: journaling is off
        return
    os.write(_fd, f"{os.path.abspath(path)} {size}\n".encode())


class JournalReader:
    """The synced size of every segment a journal names, read incrementally: each call reads
    only what was appended since the last one (a long run's journal is never read twice)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._sizes: dict[str, int] = {}

    def synced_sizes(self) -> dict[str, int]:
        """Absolute segment path -> the size its last journaled sync covered."""
        try:
            with self.path.open("rb") as journal:
                journal.seek(self._offset)
                data = journal.read()
        except FileNotFoundError:  # nothing synced yet
            return dict(self._sizes)
        # A line is written whole, but one being written right now may not be complete yet.
        complete = data[: data.rfind(b"\n") + 1]
        self._offset += len(complete)
        for line in complete.decode(errors="replace").splitlines():
            path, _, size = line.rpartition(" ")
            if path and size.isdigit():
                self._sizes[path] = int(size)
        return dict(self._sizes)


def _enable_from_environment(value: str | None) -> None:
    if value:
        enable(value)


_enable_from_environment(os.environ.get(ENV_VARIABLE))
