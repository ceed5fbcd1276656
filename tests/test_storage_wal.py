"""The write-ahead log through ``NodeStorage``: round trips, segment rolling and compaction,
conflict truncation, torn-tail repair versus corruption, fsync policies, and crashes at the
WAL failpoints in a child process."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import pytest

from consensus.errors import InvalidRequestError
from consensus.messages import Entry, EntryKind, HardState, Ready
from consensus.storage import (
    FsyncPolicy,
    NodeStorage,
    RecordTooLargeError,
    StorageConfig,
    StorageCorruptionError,
    failpoints,
)
from consensus.storage import files as files_module
from consensus.storage import wal as wal_module
from consensus.storage.records import RECORD_HEADER_BYTES, RawRecord, RecordType, encode_record, scan_records
from consensus.storage.recycling import recycled_name, recycled_seq
from consensus.storage.segments import (
    SegmentHeader,
    encode_segment_header,
    parse_segment_name,
    record_seed,
    record_seed_of,
)
from tests.storage_util import both_write_modes, write_mode, writes_directly  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parent.parent
CLUSTER = "wal-tests"


def open_storage(path: Path, **config: object) -> NodeStorage:
    settings = {**write_mode(), **config}
    return NodeStorage.open(path, cluster_id=CLUSTER, node_id=1, config=StorageConfig(**settings))  # type: ignore[arg-type]


def make_entries(first: int, count: int, term: int = 1, size: int = 16) -> list[Entry]:
    return [
        Entry(term, index, EntryKind.NORMAL, f"t{term}-e{index}".encode().ljust(size, b"."))
        for index in range(first, first + count)
    ]


def append(storage: NodeStorage, entries: list[Entry], commit: int | None = None, term: int = 1) -> None:
    hard_state = None if commit is None else HardState(term=term, vote=1, commit=commit)
    storage.save_ready(Ready(entries=entries, hard_state=hard_state))


def records_of(path: Path) -> list[RawRecord]:
    return scan_records(path.read_bytes(), path, tail_may_be_torn=True, seed=record_seed_of(path)).records


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))


# ---- round trips ----------------------------------------------------------------------------


def test_big_and_small_entries_mixed_in_one_record_read_back_whole(tmp_path: Path) -> None:
    # Entries of 64 KiB and more travel as their own buffers (one writev, no join); the
    # small ones around them are joined: the record must read back the same either way.
    sizes = [10, 70_000, 3, 200_000, 0, 65_536, 65_535, 1]
    entries = [
        Entry(1, index, EntryKind.NORMAL, bytes([index % 251]) * size) for index, size in enumerate(sizes, 1)
    ]
    with open_storage(tmp_path) as storage:
        append(storage, entries, commit=len(entries))
    with open_storage(tmp_path) as storage:
        assert storage.restored_state().entries == tuple(entries)


def test_write_all_parts_finishes_what_short_writes_leave(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_writev = os.writev
    calls: list[int] = []

    def short_writev(fd: int, buffers: list[memoryview]) -> int:  # at most 7 bytes a call
        calls.append(len(buffers))
        budget = 7
        taken = []
        for buffer in buffers:
            taken.append(buffer[:budget])
            budget -= len(taken[-1])
            if not budget:
                break
        return real_writev(fd, taken)

    monkeypatch.setattr(os, "writev", short_writev)
    parts: list[bytes | memoryview] = [
        b"abc",
        b"",
        memoryview(b"defghijklmnop"),
        *[b"q"] * 2000,
        b"rstuvwxyz",
    ]
    path = tmp_path / "out"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        files_module.write_all_parts(fd, parts)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"".join(parts)
    assert max(calls) <= 1024


def test_fresh_directory_restores_an_empty_state(tmp_path: Path) -> None:
    with open_storage(tmp_path / "node") as storage:
        restored = storage.restored_state()
        assert restored.hard_state == HardState()
        assert restored.snapshot is None
        assert restored.entries == ()
        assert storage.last_index == 0


def test_entries_and_hard_state_survive_reopen(tmp_path: Path) -> None:
    first = make_entries(1, 10)
    second = [
        *make_entries(11, 3, term=2),
        Entry(2, 14, EntryKind.NOOP),
        Entry(2, 15, EntryKind.CONFIG, b"v=1;l="),
    ]
    with open_storage(tmp_path) as storage:
        append(storage, first, commit=4)
        append(storage, second, commit=12, term=2)
        storage.save_ready(Ready(hard_state=HardState(term=3, vote=2, commit=13)))
    with open_storage(tmp_path) as storage:
        restored = storage.restored_state()
        assert restored.entries == tuple(first + second)
        assert restored.hard_state == HardState(term=3, vote=2, commit=13)
        assert storage.recovery_notes == ()
        append(storage, make_entries(16, 2, term=3))
    with open_storage(tmp_path) as storage:
        assert [e.index for e in storage.restored_state().entries] == list(range(1, 18))


def test_a_ten_thousand_entry_batch_round_trips(tmp_path: Path) -> None:
    batch = make_entries(1, 10_000, size=256)
    with open_storage(tmp_path, segment_bytes_max=1024 * 1024) as storage:
        append(storage, batch, commit=10_000)
        assert len(storage.segment_paths()) == 3  # 2.7 MB of entries in 1 MiB segments
    with open_storage(tmp_path) as storage:
        assert storage.restored_state().entries == tuple(batch)


# ---- conflict truncation --------------------------------------------------------------------


def test_conflict_truncation_survives_reopen(tmp_path: Path) -> None:
    with open_storage(tmp_path) as storage:
        append(storage, make_entries(1, 10), commit=3)
        append(storage, make_entries(6, 2, term=2))  # replaces 6..10
        assert storage.last_index == 7
    with open_storage(tmp_path) as storage:
        assert storage.restored_state().entries == tuple(make_entries(1, 5) + make_entries(6, 2, term=2))
        append(storage, make_entries(8, 1, term=2))
    with open_storage(tmp_path) as storage:
        assert [e.term for e in storage.restored_state().entries] == [1] * 5 + [2] * 3


def test_truncation_reaching_back_into_an_earlier_segment(tmp_path: Path) -> None:
    with open_storage(tmp_path, segment_bytes_max=600) as storage:
        for first in range(1, 41, 4):
            append(storage, make_entries(first, 4))
        assert len(storage.segment_paths()) > 3
        append(storage, make_entries(5, 3, term=2))
    with open_storage(tmp_path, segment_bytes_max=600) as storage:
        assert storage.restored_state().entries == tuple(make_entries(1, 4) + make_entries(5, 3, term=2))


# ---- segments and compaction ----------------------------------------------------------------


def test_segments_roll_at_the_size_limit(tmp_path: Path) -> None:
    with open_storage(tmp_path, segment_bytes_max=1024) as storage:
        for first in range(1, 201, 5):
            append(storage, make_entries(first, 5), commit=first)
        paths = storage.segment_paths()
    assert len(paths) > 5
    assert all(path.stat().st_size <= 1024 for path in paths)
    with open_storage(tmp_path, segment_bytes_max=1024) as storage:
        assert [e.index for e in storage.restored_state().entries] == list(range(1, 201))


def test_compaction_removes_only_segments_covered_by_the_snapshot(tmp_path: Path) -> None:
    from consensus.messages import ConfState, Snapshot, SnapshotMeta

    with open_storage(tmp_path, segment_bytes_max=1024) as storage:
        for first in range(1, 201, 5):
            append(storage, make_entries(first, 5), commit=first + 4)
        before = storage.segment_paths()
        storage.save_snapshot(Snapshot(SnapshotMeta(120, 1, ConfState((1,))), b"app-state"))
        removed = storage.compact(120)
        after = storage.segment_paths()
        assert removed == len(before) - len(after) > 0
        assert after == before[removed:]
        # What is left still starts at or before 121: nothing after the snapshot was lost.
        assert after[0].name.split("-")[1] <= f"{121:020d}.wal"
        with pytest.raises(InvalidRequestError, match="snapshot is at 120"):
            storage.compact(121)
    for path in before[:removed]:
        assert not path.exists()
    with open_storage(tmp_path, segment_bytes_max=1024) as storage:
        restored = storage.restored_state()
        assert restored.snapshot is not None and restored.snapshot.meta.index == 120
        assert [e.index for e in restored.entries] == list(range(121, 201))


def _fill_and_compact(storage: NodeStorage, last: int, snapshot_at: int) -> None:
    from consensus.messages import ConfState, Snapshot, SnapshotMeta

    for first in range(storage.last_index + 1, last + 1, 5):
        append(storage, make_entries(first, 5), commit=first + 4)
    storage.save_snapshot(Snapshot(SnapshotMeta(snapshot_at, 1, ConfState((1,))), b"app-state"))
    storage.compact(snapshot_at)


def test_compacted_segments_are_reused_in_place(tmp_path: Path) -> None:
    with open_storage(tmp_path, segment_bytes_max=1024, recycled_segments_max=2) as storage:
        _fill_and_compact(storage, 200, 120)
        wal_dir = storage.segment_paths()[0].parent
        recycled = sorted(wal_dir.glob("recycled-*.wal"))
        assert len(recycled) == 2  # the pool's size: the other compacted segments are gone
        inodes = {path.stat().st_ino for path in recycled}
        for first in range(201, 261, 5):
            append(storage, make_entries(first, 5), commit=first + 4)
        new_segments = [p for p in storage.segment_paths() if p.stat().st_ino in inodes]
        assert len(new_segments) == 2  # written into the recycled files
        assert list(wal_dir.glob("recycled-*.wal")) == []
        # Only the last segment may have anything after its records: the others were cut.
        assert all(p.stat().st_size <= 1024 for p in storage.segment_paths()[:-1])
    with open_storage(tmp_path, segment_bytes_max=1024) as storage:
        assert [e.index for e in storage.restored_state().entries] == list(range(121, 261))
        assert storage.recovery_notes == ()  # a clean close leaves no stale tail to repair


def test_a_reused_segment_never_yields_records_of_its_previous_life(tmp_path: Path) -> None:
    if writes_directly():
        pytest.skip("direct writes zero the rest of their last block: the file's length tells nothing")
    data = tmp_path / "node"
    with open_storage(data, segment_bytes_max=4096) as storage:
        _fill_and_compact(storage, 400, 300)
        wal_dir = storage.segment_paths()[0].parent
        (reused,) = sorted(wal_dir.glob("recycled-*.wal"))[-1:]
        stale = reused.stat().st_size
        old_records = scan_records(
            reused.read_bytes(), reused, tail_may_be_torn=False, seed=recycled_seed(reused)
        )
        # Roll into the recycled file and write far less than its old content into it.
        for _ in range(1000):
            if any(p.stat().st_size == stale for p in storage.segment_paths()):
                break
            append(storage, make_entries(storage.last_index + 1, 5), commit=storage.last_index)
        active = storage.segment_paths()[-1]
        assert active.stat().st_size == stale  # the old length: old records after the new ones
        new_end = scan_records(
            active.read_bytes(), active, tail_may_be_torn=True, seed=record_seed_of(active)
        ).end_offset
        # The file was not zeroed: past the new records, whole records of its previous life
        # (under their own seed) are still there.
        assert any(r.offset >= new_end for r in old_records.records)
        written = storage.last_index
        # A crash now: copy the files as they are, with the active segment's stale tail.
        crashed = tmp_path / "crashed"
        shutil.copytree(data, crashed)
    with open_storage(crashed, segment_bytes_max=4096) as storage:
        assert [e.index for e in storage.restored_state().entries] == list(range(301, written + 1))
        assert storage.last_index == written
        assert any("no whole record after it" in note for note in storage.recovery_notes)


def recycled_seed(path: Path) -> int:
    return record_seed(recycled_seq(path))


def test_recycling_can_be_turned_off_and_the_pool_is_trimmed_at_open(tmp_path: Path) -> None:
    with open_storage(tmp_path, segment_bytes_max=1024, recycled_segments_max=2) as storage:
        _fill_and_compact(storage, 200, 120)
        wal_dir = storage.segment_paths()[0].parent
    assert len(list(wal_dir.glob("recycled-*.wal"))) == 2
    with open_storage(tmp_path, segment_bytes_max=1024, recycled_segments_max=0) as storage:
        assert list(wal_dir.glob("recycled-*.wal")) == []
        assert [e.index for e in storage.restored_state().entries] == list(range(121, 201))
    with pytest.raises(ValueError, match="recycled_segments_max must be >= 0"):
        StorageConfig(recycled_segments_max=-1)


def test_a_recycled_file_is_reused_only_for_a_later_seq(tmp_path: Path) -> None:
    """Its old records are seeded with its old seq: under an equal (or wrapped-equal) seq
    they would read as whole records of the new segment. Such a file is deleted instead."""
    marker = b"\xab" * 4096  # what the pool's files hold: a reused one would keep most of it
    with open_storage(tmp_path, segment_bytes_max=1024, recycled_segments_max=2) as storage:
        append(storage, make_entries(1, 3), commit=3)
        wal_dir = storage.segment_paths()[0].parent
        next_seq = parse_segment_name(storage.segment_paths()[-1].name)[0] + 1  # type: ignore[index]
        for seq in (next_seq, next_seq + (1 << 32)):
            (wal_dir / recycled_name(seq)).write_bytes(marker)
    with open_storage(tmp_path, segment_bytes_max=1024, recycled_segments_max=2) as storage:
        assert len(list(wal_dir.glob("recycled-*.wal"))) == 2
        for first in range(4, 60, 5):
            append(storage, make_entries(first, 5), commit=first + 4)
        assert len(storage.segment_paths()) > 2
        assert list(wal_dir.glob("recycled-*.wal")) == []
        assert not any(marker[:64] in p.read_bytes() for p in storage.segment_paths())
    with open_storage(tmp_path, segment_bytes_max=1024) as storage:
        assert [e.index for e in storage.restored_state().entries] == list(range(1, 64))


def test_a_segment_of_format_1_is_refused_by_its_version(tmp_path: Path) -> None:
    """Format 1 used zlib's CRC32, unseeded: its checksums fail under format 2, and the error
    says which format the file is."""
    with open_storage(tmp_path) as storage:
        append(storage, make_entries(1, 3), commit=3)
        (segment,) = storage.segment_paths()
    seq, first_index = parse_segment_name(segment.name)  # type: ignore[misc]
    payload = bytearray(encode_segment_header(SegmentHeader(seq, first_index)))
    payload[8:10] = (1).to_bytes(2, "little")  # the version, after the 8-byte magic
    head = struct.pack("<IBI", len(payload), RecordType.SEGMENT_HEADER, zlib.crc32(payload))
    segment.write_bytes(head + struct.pack("<I", zlib.crc32(head)) + payload)  # format 1's framing
    with pytest.raises(StorageCorruptionError, match="unsupported segment format version 1"):
        open_storage(tmp_path)


# ---- refusing bad appends -------------------------------------------------------------------


def test_invalid_appends_are_refused_and_leave_the_storage_usable(tmp_path: Path) -> None:
    with open_storage(tmp_path) as storage:
        append(storage, make_entries(1, 5), commit=3, term=2)
        cases = [
            (Ready(entries=make_entries(7, 1)), "gap"),
            (Ready(entries=make_entries(3, 1)), "committed"),
            (Ready(entries=[make_entries(6, 1)[0], make_entries(8, 1)[0]]), "consecutive"),
            (Ready(hard_state=HardState(term=2, vote=1, commit=6)), "beyond the last index"),
            (Ready(hard_state=HardState(term=1, vote=1, commit=3)), "term goes back"),
            (Ready(hard_state=HardState(term=2, vote=1, commit=2)), "commit goes back"),
        ]
        for ready, message in cases:
            with pytest.raises(InvalidRequestError, match=message):
                storage.save_ready(ready)
        append(storage, make_entries(6, 1), commit=6, term=2)
    with open_storage(tmp_path) as storage:
        assert storage.last_index == 6


def test_an_oversize_entry_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    with open_storage(tmp_path, record_bytes_max=4096) as storage:
        append(storage, make_entries(1, 1, size=4000))
        with pytest.raises(RecordTooLargeError, match=r"entry 2 needs \d+ bytes"):
            append(storage, make_entries(2, 1, size=5000))
        append(storage, make_entries(2, 3, size=3000))  # three records of one entry each
    with open_storage(tmp_path, record_bytes_max=4096) as storage:
        assert storage.last_index == 4


# ---- torn tails and corruption --------------------------------------------------------------


def test_torn_last_record_is_truncated_at_every_offset_and_appends_continue(tmp_path: Path) -> None:
    template = tmp_path / "template"
    with open_storage(template) as storage:
        append(storage, make_entries(1, 5), commit=2)
        (segment,) = storage.segment_paths()
        last_record_offset = segment.stat().st_size
        append(storage, make_entries(6, 2))
    whole = segment.read_bytes()
    relative = segment.relative_to(template)
    for cut in range(last_record_offset, len(whole)):
        node = tmp_path / f"cut{cut}"
        shutil.copytree(template, node)
        (node / relative).write_bytes(whole[:cut])
        with open_storage(node) as storage:
            assert [e.index for e in storage.restored_state().entries] == [1, 2, 3, 4, 5]
            if cut > last_record_offset:
                assert any("truncated" in note for note in storage.recovery_notes)
            assert (node / relative).stat().st_size == last_record_offset
            append(storage, make_entries(6, 1, term=2))
        with open_storage(node) as storage:
            assert storage.restored_state().entries[-1] == make_entries(6, 1, term=2)[0]
        shutil.rmtree(node)


@pytest.mark.parametrize("zero_bytes", [1, 12, 13, 4096])
def test_zero_filled_tail_is_truncated(tmp_path: Path, zero_bytes: int) -> None:
    with open_storage(tmp_path) as storage:
        append(storage, make_entries(1, 5), commit=5)
        (segment,) = storage.segment_paths()
    size = segment.stat().st_size
    with segment.open("ab") as file:
        file.write(b"\0" * zero_bytes)
    with open_storage(tmp_path) as storage:
        assert storage.last_index == 5
        assert segment.stat().st_size == size
        append(storage, make_entries(6, 1))
    with open_storage(tmp_path) as storage:
        assert storage.last_index == 6


def test_a_last_record_zeroed_after_its_first_bytes_is_a_torn_tail(tmp_path: Path) -> None:
    with open_storage(tmp_path) as storage:
        append(storage, make_entries(1, 5), commit=5)
        append(storage, make_entries(6, 5))
        (segment,) = storage.segment_paths()
    last = records_of(segment)[-1]
    data = bytearray(segment.read_bytes())
    data[last.offset + 20 :] = bytes(len(data) - last.offset - 20)  # the file system's zeros
    segment.write_bytes(bytes(data))
    with open_storage(tmp_path) as storage:
        assert storage.last_index == 5


@pytest.mark.parametrize("lost", ["header", "header and payload start"])
def test_an_append_in_a_reused_segment_that_lost_an_earlier_page_is_a_torn_tail(
    tmp_path: Path, lost: str
) -> None:
    """A reused segment still holds its previous life's records, so a power loss during an
    unsynced append can keep a later page of it and lose an earlier one: old bytes where its
    header belongs, then some of its bytes, then more old records. None of those is whole
    under this segment's seed, so it is a torn tail, not corruption."""
    with open_storage(tmp_path) as storage:
        append(storage, make_entries(1, 5), commit=5)
        append(storage, [Entry(1, 6, EntryKind.NORMAL, bytes(range(1, 251)) * 40)])
        (segment,) = storage.segment_paths()
    last = records_of(segment)[-1]
    data = bytearray(segment.read_bytes())
    old_seed = record_seed_of(segment) - 1
    old_life = b"".join(
        encode_record(RecordType.ENTRIES, bytes([i]) * 1000, seed=old_seed) for i in range(80)
    )
    cut = last.offset + (RECORD_HEADER_BYTES if lost == "header" else 4096)
    data[last.offset : cut] = old_life[: cut - last.offset]  # the page that did not reach the disk
    data += old_life  # the rest of the reused segment: its previous life's records
    segment.write_bytes(bytes(data))
    with open_storage(tmp_path) as storage:
        assert storage.last_index == 5
        assert any("no whole record after it" in note for note in storage.recovery_notes)
        append(storage, make_entries(6, 2))  # the log goes on from the repaired tail
    with open_storage(tmp_path) as storage:
        assert storage.last_index == 7


@pytest.mark.parametrize("where", ["payload", "header"])
def test_a_damaged_record_in_the_middle_raises_naming_file_and_offset(tmp_path: Path, where: str) -> None:
    with open_storage(tmp_path) as storage:
        for first in range(1, 16, 5):
            append(storage, make_entries(first, 5), commit=first)
        (segment,) = storage.segment_paths()
    entry_records = [r for r in records_of(segment) if r.type == RecordType.ENTRIES]
    damaged = entry_records[1]
    flip_byte(segment, damaged.payload_start + 30 if where == "payload" else damaged.offset + 2)
    with pytest.raises(StorageCorruptionError) as caught:
        open_storage(tmp_path)
    assert caught.value.path == segment
    assert caught.value.offset == damaged.offset
    assert str(segment) in str(caught.value) and f"byte offset {damaged.offset}" in str(caught.value)
    assert "valid data follows" in str(caught.value)
    assert f"a whole record at byte offset {damaged.payload_end}" in str(caught.value)
    # The refusal is stable: nothing was "repaired" on the way.
    with pytest.raises(StorageCorruptionError):
        open_storage(tmp_path)


def test_damage_at_the_end_of_a_segment_that_is_not_the_last_raises(tmp_path: Path) -> None:
    with open_storage(tmp_path, segment_bytes_max=600) as storage:
        for first in range(1, 61, 5):
            append(storage, make_entries(first, 5), commit=first)
        first_segment = storage.segment_paths()[0]
    last = records_of(first_segment)[-1]
    flip_byte(first_segment, last.payload_end - 1)
    with pytest.raises(StorageCorruptionError, match="not the last one") as caught:
        open_storage(tmp_path, segment_bytes_max=600)
    assert caught.value.path == first_segment and caught.value.offset == last.offset


def test_a_missing_segment_is_fatal(tmp_path: Path) -> None:
    with open_storage(tmp_path, segment_bytes_max=600) as storage:
        for first in range(1, 61, 5):
            append(storage, make_entries(first, 5))
        paths = storage.segment_paths()
    paths[1].unlink()
    with pytest.raises(StorageCorruptionError, match=r"sequence jumps from 1 \(\S+\) to 3"):
        open_storage(tmp_path)
    paths[0].unlink()  # now the log starts at index 31 with no snapshot to cover 1..30
    with pytest.raises(StorageCorruptionError, match="do not follow last index 0") as caught:
        open_storage(tmp_path)
    assert caught.value.path == paths[2]


def test_a_bad_segment_header_is_fatal(tmp_path: Path) -> None:
    with open_storage(tmp_path) as storage:
        append(storage, make_entries(1, 3))
        (segment,) = storage.segment_paths()
    flip_byte(segment, 20)  # inside the header record's payload (the magic)
    with pytest.raises(StorageCorruptionError) as caught:
        open_storage(tmp_path)
    assert caught.value.offset == 0


def test_a_last_segment_with_a_damaged_header_is_fatal_not_torn(tmp_path: Path) -> None:
    # Segments are created whole under a temporary name: a cut header is damage, not a crash.
    with open_storage(tmp_path, segment_bytes_max=600) as storage:
        for first in range(1, 31, 5):
            append(storage, make_entries(first, 5))
        last = storage.segment_paths()[-1]
    last.write_bytes(last.read_bytes()[:30])
    with pytest.raises(StorageCorruptionError, match="created whole") as caught:
        open_storage(tmp_path)
    assert caught.value.path == last and caught.value.offset == 0


def test_an_unfinished_new_segment_is_removed_at_open(tmp_path: Path) -> None:
    with open_storage(tmp_path) as storage:
        append(storage, make_entries(1, 3))
        (segment,) = storage.segment_paths()
    leftover = segment.with_name("0000000000000002-00000000000000000004.wal.tmp")
    leftover.write_bytes(b"partial")
    with open_storage(tmp_path) as storage:
        assert not leftover.exists()
        assert storage.last_index == 3
        assert storage.recovery_notes == (f"removed unfinished segment file {leftover}",)


# ---- fsync policies -------------------------------------------------------------------------


class SyncCounter:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = wal_module.sync_file

        def counting(fd: int) -> None:
            self.count += 1
            real(fd)

        monkeypatch.setattr(wal_module, "sync_file", counting)


def test_always_syncs_entries_term_and_vote_before_save_ready_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open_storage(tmp_path, fsync="always") as storage:
        counter = SyncCounter(monkeypatch)
        append(storage, make_entries(1, 3))
        assert counter.count == 1
        storage.save_ready(Ready(hard_state=HardState(term=2, vote=1, commit=0)))
        assert counter.count == 2
        assert not storage.needs_sync() and storage.sync_deadline() is None


def test_always_lets_a_commit_only_hard_state_ride_with_the_next_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Raft does not need the commit index durable, so moving it alone costs no fsync."""
    with open_storage(tmp_path, fsync="always") as storage:
        append(storage, make_entries(1, 3))
        term_and_vote = storage.hard_state
        counter = SyncCounter(monkeypatch)
        storage.save_ready(
            Ready(hard_state=HardState(term=term_and_vote.term, vote=term_and_vote.vote, commit=3))
        )
        assert counter.count == 0
        append(storage, make_entries(4, 1))
        assert counter.count == 1  # the entries' sync covers the commit write before it
    with open_storage(tmp_path, fsync="always") as storage:
        assert storage.hard_state.commit == 3


def test_deferred_sync_is_owed_to_the_caller_and_done_by_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open_storage(tmp_path, fsync="always") as storage:
        counter = SyncCounter(monkeypatch)
        owed = storage.save_ready(
            Ready(entries=make_entries(1, 2), hard_state=HardState(1, 1, 0)), defer_sync=True
        )
        assert owed and counter.count == 0
        storage.sync()
        assert counter.count == 1
        state = storage.hard_state
        commit_only = Ready(hard_state=HardState(state.term, state.vote, 2))
        assert not storage.save_ready(commit_only, defer_sync=True)


def test_never_does_not_sync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with open_storage(tmp_path, fsync="never") as storage:
        counter = SyncCounter(monkeypatch)
        append(storage, make_entries(1, 3), commit=3)
        assert counter.count == 0


def test_batch_syncs_once_per_interval_driven_by_the_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [100.0]
    config = StorageConfig(fsync=FsyncPolicy.BATCH, sync_interval_ms=10)
    storage = NodeStorage.open(tmp_path, cluster_id=CLUSTER, node_id=1, config=config, clock=lambda: now[0])
    counter = SyncCounter(monkeypatch)
    append(storage, make_entries(1, 1))
    now[0] += 0.004
    append(storage, make_entries(2, 1))
    assert counter.count == 0
    assert storage.sync_deadline() == pytest.approx(100.010)
    assert not storage.needs_sync()
    now[0] += 0.006
    assert storage.needs_sync()
    storage.sync()  # what the runtime does at the deadline
    assert counter.count == 1 and not storage.needs_sync() and storage.sync_deadline() is None
    append(storage, make_entries(3, 1))
    now[0] += 0.020
    append(storage, make_entries(4, 1))  # the interval has passed: this write syncs inline
    assert counter.count == 2 and storage.sync_deadline() is None
    append(storage, make_entries(5, 1))
    storage.close()  # syncs what is pending
    assert counter.count == 3


# ---- failpoints ------------------------------------------------------------------------------


def test_failpoint_names_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown failpoint"):
        failpoints.arm("wal.no_such_point")
    with pytest.raises(ValueError, match="bad hit count"):
        failpoints.arm_from_environment("wal.after_fsync@x")
    assert failpoints.armed() == frozenset()


_WAL_CHILD = textwrap.dedent(
    """
    import sys
    from consensus.messages import Entry, HardState, Ready
    from consensus.storage import NodeStorage, StorageConfig

    config = StorageConfig(fsync="always")
    storage = NodeStorage.open(sys.argv[1], cluster_id="wal-tests", node_id=1, config=config)
    last = storage.last_index
    for index in range(last + 1, last + 100):
        entry = Entry(1, index, data=b"payload-%d" % index)
        storage.save_ready(Ready(entries=[entry], hard_state=HardState(term=1, vote=1, commit=index)))
        print(index, flush=True)  # acknowledged: save_ready returned
    """
)


@pytest.mark.parametrize("failpoint", [failpoints.WAL_AFTER_APPEND_BEFORE_FSYNC, failpoints.WAL_AFTER_FSYNC])
def test_a_crash_at_a_wal_failpoint_keeps_every_acknowledged_write(tmp_path: Path, failpoint: str) -> None:
    with open_storage(tmp_path) as storage:
        append(storage, make_entries(1, 3), commit=3)
    env = {**os.environ, failpoints.ENV_VARIABLE: f"{failpoint}@5", "PYTHONPATH": str(REPO_ROOT)}
    child = subprocess.run(
        [sys.executable, "-c", _WAL_CHILD, str(tmp_path)], env=env, capture_output=True, timeout=60, text=True
    )
    assert child.returncode == -9, child.stderr
    assert f"failpoint {failpoint} hit" in child.stderr
    acknowledged = [int(line) for line in child.stdout.split()]
    assert acknowledged == [4, 5, 6, 7]
    with open_storage(tmp_path) as storage:
        restored = storage.restored_state()
        # Everything acknowledged is there; the write in flight may be too (a process crash
        # keeps the page cache), but nothing else.
        assert storage.last_index in (7, 8)
        assert restored.entries[3:7] == tuple(Entry(1, i, data=b"payload-%d" % i) for i in range(4, 8))
        assert restored.hard_state.commit >= 7
