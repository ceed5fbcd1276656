"""``AppendFile``: direct writes put exactly the appended bytes before the logical end and
zeros after it, however the writes cut the blocks and the buffer; a file system that refuses
O_DIRECT gets buffered writes; a WAL written directly and never closed (a crash) recovers
every entry."""

from __future__ import annotations

import errno
import mmap
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consensus.messages import Entry, EntryKind, HardState, Ready
from consensus.storage import FsyncPolicy, NodeStorage, StorageConfig
from consensus.storage.append_file import BLOCK_BYTES, AppendFile, direct_buffer


def small_buffer(blocks: int) -> mmap.mmap:
    return mmap.mmap(-1, blocks * BLOCK_BYTES, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)


def direct_file(path: Path, offset: int, buffer: mmap.mmap) -> AppendFile:
    file = AppendFile(path, offset, buffer=buffer)
    if not file.is_direct:
        file.close()
        pytest.skip(f"the file system of {path.parent} refuses O_DIRECT")
    return file


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    preamble=st.integers(0, 3 * BLOCK_BYTES),
    writes=st.lists(st.lists(st.integers(0, 3 * BLOCK_BYTES + 7), max_size=4), min_size=1, max_size=6),
    reopen_after=st.integers(0, 6),
)
def test_direct_writes_leave_the_appended_bytes_then_zeros(
    tmp_path: Path, preamble: int, writes: list[list[int]], reopen_after: int
) -> None:
    path = tmp_path / "log"
    expected = bytearray(os.urandom(preamble))
    path.write_bytes(expected)
    buffer = small_buffer(2)  # writes of more than 2 blocks go as several
    file = direct_file(path, preamble, buffer)
    try:
        for n, sizes in enumerate(writes):
            if n == reopen_after:  # a reopened file goes on from its logical end
                file.close()
                file = direct_file(path, len(expected), buffer)
            parts = [os.urandom(size) for size in sizes]
            file.write_parts(parts)
            expected += b"".join(parts)
            data = path.read_bytes()
            assert data[: len(expected)] == expected
            assert data[len(expected) :] == bytes(len(data) - len(expected))
            assert len(data) % BLOCK_BYTES == 0 or len(data) == preamble
        file.truncate(len(expected))
        assert path.read_bytes() == expected
    finally:
        file.close()
        path.unlink()


def test_a_write_of_many_buffers_is_whole(tmp_path: Path) -> None:
    path = tmp_path / "log"
    path.write_bytes(b"head")
    payload = os.urandom(5 * BLOCK_BYTES + 123)
    file = direct_file(path, 4, small_buffer(1))
    try:
        file.write_parts([memoryview(payload)[:100], memoryview(payload)[100:]])
        file.truncate(4 + len(payload))
    finally:
        file.close()
    assert path.read_bytes() == b"head" + payload


def test_the_buffer_must_be_whole_blocks(tmp_path: Path) -> None:
    path = tmp_path / "log"
    path.touch()
    with pytest.raises(ValueError, match=f"whole blocks of {BLOCK_BYTES} bytes, got 100"):
        AppendFile(path, 0, buffer=mmap.mmap(-1, 100))


def test_truncate_only_at_the_logical_end(tmp_path: Path) -> None:
    path = tmp_path / "log"
    path.touch()
    file = AppendFile(path, 0, buffer=None)
    try:
        file.write_parts([b"abc"])
        with pytest.raises(AssertionError, match="the log ends at 3"):
            file.truncate(2)
    finally:
        file.close()


def test_a_file_system_refusing_direct_writes_gets_buffered_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Refusing file systems (tmpfs before Linux 6.6, some FUSE ones) answer EINVAL; this
    # host's all take O_DIRECT, so the refusal is injected.
    real_open = os.open

    def refusing_open(path: object, flags: int, *args: int) -> int:
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *args)  # type: ignore[arg-type]

    path = tmp_path / "log"
    path.write_bytes(b"x")
    monkeypatch.setattr(os, "open", refusing_open)
    file = AppendFile(path, 1, buffer=direct_buffer())
    try:
        assert not file.is_direct
        file.write_parts([b"yz"])
    finally:
        file.close()
    assert path.read_bytes() == b"xyz"


def test_a_directly_written_wal_that_was_never_closed_recovers_every_entry(tmp_path: Path) -> None:
    config = StorageConfig(fsync=FsyncPolicy.NEVER, direct_writes=True, segment_bytes_max=64 * 1024)
    data = tmp_path / "node"
    storage = NodeStorage.open(data, cluster_id="c", node_id=1, config=config)
    try:
        last = 0
        written: list[bytes] = []
        for n in range(40):  # rolls several segments; each write ends mid-block
            entries = [Entry(1, last + i, EntryKind.NORMAL, os.urandom(1000 + 97 * n)) for i in range(1, 4)]
            storage.save_ready(Ready(entries=entries, hard_state=HardState(1, 1, last)))
            written += [bytes(e.data) for e in entries]
            last += len(entries)
        active = storage.segment_paths()[-1]
        assert active.stat().st_size % BLOCK_BYTES == 0  # padded: the writes were direct
        crashed = tmp_path / "crashed"
        shutil.copytree(data, crashed)  # as a kill -9 leaves them: no close
    finally:
        storage.close()
    with NodeStorage.open(crashed, cluster_id="c", node_id=1, config=config) as recovered:
        assert recovered.last_index == last
        assert [bytes(e.data) for e in recovered.restored_state().entries] == written
        assert any("truncated" in note for note in recovered.recovery_notes), recovered.recovery_notes
