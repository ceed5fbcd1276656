"""Snapshot files: one file per snapshot, written atomically and checked when loaded.

A snapshot is written to a temporary file, synced, renamed to its final name
``<index>-<term>.snap`` and its directory synced, so a crash leaves either the complete new
file or none (a leftover ``.tmp`` is removed at the next open). Older snapshots are removed
only after a new one is durable, keeping the newest ``snapshots_kept_max``.

Pruned files are not all deleted: up to ``recycled_snapshots_max`` of them are renamed
``recycled-<index>.snapshot`` and the next snapshot is written into one in place (renamed
to the temporary name first, overwritten from its start, cut to its new length, synced,
renamed). Why: a store's state is tens of MiB, and on this kind of VM writing into a new
file costs a fault per page while writing over a file's cached pages runs at memory speed
(the WAL's segments are recycled for the same reason, see ``recycling.py``). The atomicity
is the same as for a new file: until the final rename the file is a ``.tmp``, never a
snapshot.

Layout (little-endian)::

    magic "PSSNAPSH" | format_version u16 | flags u16 | meta_length u32 | data_length u64
    meta   (consensus.codec SnapshotMeta: index, term, membership)
    data   (the application's state machine image)
    crc32c u32 of everything before it (CRC32C, as the WAL's records)

The newest file is the snapshot: if it is damaged, loading raises ``StorageCorruptionError``
rather than silently falling back to an older state.
"""

from __future__ import annotations

import os
import re
import struct
import threading
from pathlib import Path

from crc32c import crc32c

from consensus import codec
from consensus.errors import InvalidMessageError
from consensus.messages import Snapshot
from consensus.storage import failpoints
from consensus.storage.append_file import AppendFile, direct_buffer
from consensus.storage.config import StorageConfig
from consensus.storage.errors import RecordTooLargeError, StorageCorruptionError
from consensus.storage.files import remove_files, sync_directory, sync_file
from proto import raft_pb2

__all__ = ["SNAPSHOT_FORMAT_VERSION", "SnapshotStore"]

SNAPSHOT_MAGIC = b"PSSNAPSH"
SNAPSHOT_FORMAT_VERSION = 2  # 2: CRC32C instead of zlib's CRC32
_HEADER = struct.Struct("<8sHHIQ")
_TRAILER = struct.Struct("<I")
_META_BYTES_MAX = 1024 * 1024
_NAME = re.compile(r"^(\d{20})-(\d{20})\.snap$")
_RECYCLED = re.compile(r"^recycled-(\d{20})\.snapshot$")


def snapshot_name(index: int, term: int) -> str:
    return f"{index:020d}-{term:020d}.snap"


class SnapshotStore:
    """The snapshot files of one node, in ``directory``."""

    def __init__(self, directory: Path, config: StorageConfig) -> None:
        self.directory = directory
        self._config = config
        # Taken by ``save`` (in a writer thread) and filled by ``prune`` (on the driver).
        self._recycled_lock = threading.Lock()
        self._recycled = sorted(p for p in directory.iterdir() if _RECYCLED.match(p.name))
        surplus = len(self._recycled) - config.recycled_snapshots_max
        if surplus > 0:
            remove_files(self._recycled[:surplus], directory, sync=config.syncs)
            del self._recycled[:surplus]

    def remove_temp_files(self) -> list[str]:
        temps = sorted(self.directory.glob("*.tmp"))
        remove_files(temps, self.directory, sync=self._config.syncs)
        return [f"removed unfinished snapshot file {path}" for path in temps]

    def paths(self) -> list[Path]:
        """Snapshot files, oldest (lowest index) first."""
        named = []
        for path in self.directory.iterdir():
            match = _NAME.match(path.name)
            if match is not None:
                named.append((int(match.group(1)), int(match.group(2)), path))
        named.sort()
        return [path for _, _, path in named]

    def load_latest(self) -> Snapshot | None:
        paths = self.paths()
        return self.load(paths[-1]) if paths else None

    def load(self, path: Path) -> Snapshot:
        data = path.read_bytes()
        size = len(data)
        if size < _HEADER.size + _TRAILER.size:
            raise StorageCorruptionError(path, 0, f"snapshot file of {size} bytes is shorter than a header")
        magic, version, _flags, meta_length, data_length = _HEADER.unpack_from(data, 0)
        if magic != SNAPSHOT_MAGIC:
            raise StorageCorruptionError(path, 0, f"bad snapshot magic {magic!r}, not {SNAPSHOT_MAGIC!r}")
        if version != SNAPSHOT_FORMAT_VERSION:
            raise StorageCorruptionError(path, 0, f"unsupported snapshot format version {version}")
        expected_size = _HEADER.size + meta_length + data_length + _TRAILER.size
        if meta_length > _META_BYTES_MAX or expected_size != size:
            raise StorageCorruptionError(
                path, 0, f"header says {meta_length} meta + {data_length} data bytes; the file has {size}"
            )
        crc_offset = size - _TRAILER.size
        (stored_crc,) = _TRAILER.unpack_from(data, crc_offset)
        actual_crc = crc32c(memoryview(data)[:crc_offset])
        if actual_crc != stored_crc:
            raise StorageCorruptionError(
                path,
                crc_offset,
                f"snapshot checksum mismatch: stored {stored_crc:#010x}, computed {actual_crc:#010x}",
            )
        meta_end = _HEADER.size + meta_length
        try:
            meta_proto = raft_pb2.SnapshotMeta.FromString(data[_HEADER.size : meta_end])
            meta = codec.snapshot_meta_from_proto(meta_proto)
        except (InvalidMessageError, ValueError) as exc:
            raise StorageCorruptionError(path, _HEADER.size, f"bad snapshot metadata: {exc}") from None
        if path.name != snapshot_name(meta.index, meta.term):
            raise StorageCorruptionError(
                path,
                _HEADER.size,
                f"metadata says index {meta.index}, term {meta.term}; its file name disagrees",
            )
        return Snapshot(meta, data[meta_end:crc_offset])

    def save(self, snapshot: Snapshot) -> Path:
        """Write ``snapshot`` durably (per the fsync policy) and atomically; returns its path."""
        meta = snapshot.meta
        if len(snapshot.data) > self._config.snapshot_bytes_max:
            raise RecordTooLargeError(
                f"snapshot at index {meta.index} is {len(snapshot.data)} bytes, more than "
                f"snapshot_bytes_max={self._config.snapshot_bytes_max}"
            )
        meta_bytes = codec.snapshot_meta_to_proto(meta).SerializeToString()
        header = _HEADER.pack(SNAPSHOT_MAGIC, SNAPSHOT_FORMAT_VERSION, 0, len(meta_bytes), len(snapshot.data))
        path = self.directory / snapshot_name(meta.index, meta.term)
        temp = path.with_name(path.name + ".tmp")
        sync = self._config.syncs
        with self._recycled_lock:
            recycled = self._recycled.pop() if self._recycled else None
        if recycled is not None:
            os.rename(recycled, temp)  # a .tmp from here: a crash leaves it to be removed
        else:
            os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644))
        # A buffer of its own: saves run in a writer thread, beside the WAL's writes.
        buffer = direct_buffer() if self._config.direct_writes else None
        file = AppendFile(temp, 0, buffer=buffer)
        try:
            view = memoryview(snapshot.data)
            half = len(view) // 2
            crc = crc32c(view[:half], crc32c(meta_bytes, crc32c(header)))
            file.write_parts([header + meta_bytes, view[:half]])
            failpoints.hit(failpoints.SNAPSHOT_MID_WRITE)
            crc = crc32c(view[half:], crc)
            file.write_parts([view[half:], _TRAILER.pack(crc)])
            size = len(header) + len(meta_bytes) + len(view) + _TRAILER.size
            if file.size_on_disk() > size:  # a recycled file's old bytes, or a direct write's padding
                file.truncate(size)
            if sync:
                sync_file(file.fileno())
        finally:
            file.close()
            if buffer is not None:
                buffer.close()
        failpoints.hit(failpoints.SNAPSHOT_BEFORE_RENAME)
        os.rename(temp, path)
        failpoints.hit(failpoints.SNAPSHOT_AFTER_RENAME_BEFORE_DIR_FSYNC)
        if sync:
            sync_directory(self.directory)
        return path

    def prune(self) -> list[Path]:
        """Remove all but the newest ``snapshots_kept_max`` snapshot files; the newest of the
        removed ones are kept to be written over (up to ``recycled_snapshots_max``)."""
        doomed = self.paths()[: -self._config.snapshots_kept_max]
        with self._recycled_lock:
            keep = min(len(doomed), max(0, self._config.recycled_snapshots_max - len(self._recycled)))
            removed = remove_files(doomed[: len(doomed) - keep], self.directory, sync=self._config.syncs)
            for path in doomed[len(doomed) - keep :]:
                match = _NAME.match(path.name)
                assert match is not None  # paths() lists snapshot names only
                target = self.directory / f"recycled-{match.group(1)}.snapshot"
                os.rename(path, target)
                self._recycled.append(target)
                removed.append(path)
            if keep and self._config.syncs:
                sync_directory(self.directory)
        return removed
