"""The file a WAL appends to: buffered writes, or direct writes (``O_DIRECT``) from one
reused, aligned buffer.

Why direct writes: a buffered write copies into page-cache pages, and on this kind of
host (a microVM whose memory the hypervisor maps lazily) the fresh pages that a log of big
entries churns through are expensive. Measured here, writing 3 MiB records: 0.5-2.1 ms
of CPU per MB buffered, against 0.11-0.16 ms per MB through ``O_DIRECT`` with the copy
into the aligned buffer included. Store nodes, whose entries are MiBs of gradients, write
this way; coordinators, whose entries are small, keep buffered writes (a direct write
waits for the device, a buffered one for a memory copy).

Direct writes must start at a block boundary and be whole blocks long. The writer keeps
the log's last partial block in memory and writes it again, in front of the new bytes,
with zeros after them up to the block's end: the file's bytes before the logical end are
exactly what was appended, and after it come zeros, which recovery reads as a zero-filled
tail (only the last segment ever has one; ``truncate`` cuts it off when a segment is
sealed or the log closed). Rewriting the partial block puts the same bytes where they
were, so a write torn part-way leaves every earlier record as it was.

A file system that refuses ``O_DIRECT`` (tmpfs, say) gets buffered writes instead.
"""

from __future__ import annotations

import errno
import mmap
import os
from collections.abc import Sequence
from pathlib import Path

from consensus.storage.files import write_all_parts

__all__ = ["BLOCK_BYTES", "DIRECT_BUFFER_BYTES", "AppendFile", "direct_buffer"]

#: Alignment of direct writes: offsets, lengths and the buffer's address (4 KiB covers
#: devices with 512-byte and 4 KiB logical blocks).
BLOCK_BYTES = 4096
#: The aligned buffer: a longer write goes as several of this size. A WAL has one, reused
#: by every segment for every write, so that its pages stay mapped.
DIRECT_BUFFER_BYTES = 8 * 1024 * 1024


def direct_buffer() -> mmap.mmap:
    """A private anonymous mapping (page-aligned) of ``DIRECT_BUFFER_BYTES`` for direct writes."""
    return mmap.mmap(-1, DIRECT_BUFFER_BYTES, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)


class AppendFile:
    """``path`` opened for appending at ``offset`` (not O_APPEND: a reused file goes on past
    its logical end). A ``buffer`` (from ``direct_buffer``, owned by the caller, used by one
    open file at a time) asks for direct writes; ``is_direct`` says if they were granted."""

    def __init__(self, path: Path, offset: int, *, buffer: mmap.mmap | None) -> None:
        self.path = path
        self._offset = offset
        self._buffer: mmap.mmap | None = None
        self._tail = b""  # the bytes of the last partial block (direct writes only)
        self._fd = -1
        if buffer is not None:
            if not len(buffer) or len(buffer) % BLOCK_BYTES:
                raise ValueError(
                    f"a direct-write buffer is whole blocks of {BLOCK_BYTES} bytes, got {len(buffer)}"
                )
            try:
                self._fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC | os.O_DIRECT)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
            else:
                try:
                    self._tail = _read_tail(path, offset)
                except BaseException:
                    os.close(self._fd)
                    raise
                self._buffer = buffer
        if self._fd < 0:
            self._fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            os.lseek(self._fd, offset, os.SEEK_SET)

    @property
    def is_direct(self) -> bool:
        return self._buffer is not None

    def fileno(self) -> int:
        return self._fd

    def write_parts(self, parts: Sequence[bytes | memoryview]) -> None:
        """Append ``parts`` as if joined."""
        if not any(len(part) for part in parts):
            return
        if self._buffer is None:
            write_all_parts(self._fd, parts)
            self._offset += sum(len(part) for part in parts)
            return
        buffer = self._buffer
        capacity = len(buffer)
        start = self._offset - len(self._tail)  # a block boundary
        filled = len(self._tail)
        buffer[:filled] = self._tail
        for part in parts:
            view = memoryview(part).cast("B")
            while view:
                n = min(len(view), capacity - filled)
                buffer[filled : filled + n] = view[:n]
                filled += n
                view = view[n:]
                if filled == capacity:
                    self._pwrite(capacity, start)
                    start += capacity
                    filled = 0
        tail_bytes = filled % BLOCK_BYTES
        whole = filled - tail_bytes
        self._tail = bytes(buffer[whole:filled])
        if tail_bytes:
            buffer[filled : whole + BLOCK_BYTES] = bytes(whole + BLOCK_BYTES - filled)
            self._pwrite(whole + BLOCK_BYTES, start)
        elif whole:
            self._pwrite(whole, start)
        self._offset = start + filled

    def _pwrite(self, length: int, at: int) -> None:
        assert self._buffer is not None
        view = memoryview(self._buffer)[:length]
        try:
            while view:
                written = os.pwrite(self._fd, view, at)
                if written <= 0 or written % BLOCK_BYTES:
                    raise OSError(f"{self.path}: direct pwrite wrote {written} of {len(view)} bytes")
                view = view[written:]
                at += written
        finally:
            view.release()

    def size_on_disk(self) -> int:
        return os.fstat(self._fd).st_size

    def truncate(self, size: int) -> None:
        """Cut the file at ``size``, its logical end (the writer's state does not change)."""
        if size != self._offset:
            raise AssertionError(f"{self.path}: truncate at {size}, but the log ends at {self._offset}")
        os.ftruncate(self._fd, size)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._buffer = None


def _read_tail(path: Path, offset: int) -> bytes:
    """The bytes of ``path`` from the block boundary before ``offset`` up to it."""
    start = offset - offset % BLOCK_BYTES
    with open(path, "rb") as file:
        file.seek(start)
        tail = file.read(offset - start)
    if len(tail) != offset - start:
        raise OSError(f"{path}: {len(tail)} bytes before offset {offset}, expected {offset - start}")
    return tail
