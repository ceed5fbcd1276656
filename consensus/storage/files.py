"""Small file-system primitives: write everything, sync a file or a directory, remove files."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

_sync_data = getattr(os, "fdatasync", os.fsync)
# Buffers per writev call: the kernel's limit (1024 on Linux), and never more than that.
_IOV_MAX = min(os.sysconf("SC_IOV_MAX"), 1024) if hasattr(os, "sysconf") else 16


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write every byte (``os.write`` may write less than asked)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def write_all_parts(fd: int, parts: Sequence[bytes | memoryview]) -> None:
    """Write every byte of ``parts``, in order, as if joined, without joining them: a WAL
    record of tens of MiB is its entries' own buffers, and one join would copy them all."""
    views = [memoryview(part) for part in parts if len(part)]
    at = 0
    while at < len(views):
        written = os.writev(fd, views[at : at + _IOV_MAX])
        if written <= 0:
            raise OSError(f"writev wrote {written} bytes of {sum(len(v) for v in views[at:])}")
        while written:  # skip the buffers written whole; cut the one written in part
            size = len(views[at])
            if written >= size:
                written -= size
                at += 1
            else:
                views[at] = views[at][written:]
                written = 0


def sync_file(fd: int) -> None:
    """Flush a file's data (and the metadata needed to read it back, such as its size)."""
    _sync_data(fd)


def sync_directory(path: Path) -> None:
    """Make creations, renames and removals of entries in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_files(paths: Iterable[Path], directory: Path, *, sync: bool) -> list[Path]:
    """Remove ``paths`` (all inside ``directory``) in order, syncing the directory after each
    one so that a power failure part-way leaves a suffix of them, never a gap."""
    removed = []
    for path in paths:
        path.unlink()
        if sync:
            sync_directory(directory)
        removed.append(path)
    return removed


def create_directory(path: Path, *, sync: bool) -> None:
    """Create ``path`` (and parents) if missing; sync the parent so the new entry is durable."""
    if path.is_dir():
        return
    path.mkdir(parents=True, exist_ok=True)
    if sync:
        sync_directory(path.parent)


def write_file_atomically(path: Path, data: bytes, *, sync: bool) -> None:
    """Replace ``path`` by a file holding ``data``: temp file, write, sync, rename, sync directory."""
    temp = path.with_name(path.name + ".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        write_all(fd, data)
        if sync:
            sync_file(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
    if sync:
        sync_directory(path.parent)
