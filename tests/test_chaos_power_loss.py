"""The power-loss model (``paramstore/chaos/_power_loss.py``) on real WAL files: every synced
entry survives, unsynced ones go (whole or as a torn tail), and recovery always opens what
is left, also when nothing was ever synced (the planted ``drop-fsync`` bug)."""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from consensus.messages import Entry, EntryKind, HardState, Ready
from consensus.storage import NodeStorage, StorageConfig, sync_journal
from consensus.storage.records import RecordType, encode_record
from consensus.storage.segments import record_seed_of
from consensus.storage.sync_journal import JournalReader
from paramstore.chaos._power_loss import describe_cuts, lose_unsynced_writes


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "sync-journal"
    sync_journal.enable(path)
    try:
        yield path
    finally:
        sync_journal.disable()


def open_storage(path: Path, segment_bytes_max: int = 64 << 20) -> NodeStorage:
    config = StorageConfig(fsync="always", segment_bytes_max=segment_bytes_max)
    return NodeStorage.open(path, cluster_id="power", node_id=1, config=config)


def entry(index: int) -> Entry:
    return Entry(1, index, EntryKind.NORMAL, bytes([index % 251]) * 90)


def write(storage: NodeStorage, first: int, count: int, *, synced: bool, commit: int = 0) -> None:
    ready = Ready(entries=[entry(i) for i in range(first, first + count)], hard_state=HardState(1, 1, commit))
    storage.save_ready(ready, defer_sync=not synced)  # the owed sync is never done: unsynced


def test_synced_entries_survive_and_what_is_left_always_opens(journal: Path, tmp_path: Path) -> None:
    node = tmp_path / "node"
    with open_storage(node) as storage:
        write(storage, 1, 20, synced=True)
        for first in range(21, 41, 4):
            write(storage, first, 4, synced=False, commit=20)
        storage.save_ready(Ready(hard_state=HardState(1, 1, 30)))  # commit only: never synced
    synced = JournalReader(journal).synced_sizes()
    seen: set[str] = set()
    for seed in range(40):
        copy = tmp_path / f"copy-{seed}"
        shutil.copytree(node, copy)
        copied = {str(copy / Path(p).relative_to(node)): size for p, size in synced.items()}
        cuts = lose_unsynced_writes(copy / "wal", copied, random.Random(seed))
        (cut,) = cuts
        assert cut.lost > 0 and not cut.removed
        seen.add("torn" if cut.damage else "cut")
        seen.update(w for w in ("zeroed", "garbage") if w in cut.damage)
        with open_storage(copy) as storage:
            restored = storage.restored_state().entries
            assert restored[:20] == tuple(entry(i) for i in range(1, 21)), seed
            assert restored == tuple(entry(i) for i in range(1, len(restored) + 1)), seed
            if not cut.damage:
                assert len(restored) == 20 and not storage.recovery_notes
        assert "truncated" in describe_cuts(cuts)
    assert seen == {"cut", "torn", "zeroed", "garbage"}


def test_a_log_never_synced_keeps_its_first_segment_preamble_and_opens_empty(tmp_path: Path) -> None:
    node = tmp_path / "node"
    with open_storage(node, segment_bytes_max=600) as storage:
        for first in range(1, 31, 3):
            write(storage, first, 3, synced=True)  # synced, but no journal: as with drop-fsync
        segments = storage.segment_paths()
    assert len(segments) >= 3
    cuts = lose_unsynced_writes(node / "wal", {}, random.Random(2))
    assert [c.removed for c in cuts] == [False] + [True] * (len(segments) - 1)
    assert [p.name for p in (node / "wal").iterdir()] == [segments[0].name]
    with open_storage(node, segment_bytes_max=600) as storage:
        restored = storage.restored_state().entries
        assert restored == tuple(entry(i) for i in range(1, len(restored) + 1))
    text = describe_cuts(cuts)
    assert text.startswith(f"truncated {sum(c.lost for c in cuts)} unsynced bytes") and "removed" in text


def test_a_fully_synced_log_loses_nothing(journal: Path, tmp_path: Path) -> None:
    with open_storage(tmp_path / "node") as storage:
        write(storage, 1, 5, synced=True)
    synced = JournalReader(journal).synced_sizes()
    assert synced and all(os.path.getsize(p) == size for p, size in synced.items())
    assert lose_unsynced_writes(tmp_path / "node" / "wal", synced, random.Random(1)) == []
    assert describe_cuts([]) == "truncated 0 unsynced bytes (everything was synced)"


@pytest.mark.parametrize("unsynced_entries", [0, 8])
def test_a_reused_segment_keeps_its_length_and_its_old_records_are_never_torn(
    journal: Path, tmp_path: Path, unsynced_entries: int
) -> None:
    """A reused segment holds records of its previous life past what the node wrote (whole
    under the old seq's checksum seed, durable from then). A power loss keeps the file's
    length, tears only what was written after the last sync, and reverts the rest to
    stand-ins of older bytes; whatever the seed, recovery opens the log with every synced
    entry."""
    node = tmp_path / "node"
    with open_storage(node) as storage:
        write(storage, 1, 10, synced=True)
        if unsynced_entries:
            write(storage, 11, unsynced_entries, synced=False, commit=10)
        (segment,) = storage.segment_paths()
    old_seed = record_seed_of(segment) + 7  # an earlier life's seq, as a recycled file has
    with segment.open("ab") as file:  # the rest of a reused segment: its old records
        for index in range(40):
            file.write(encode_record(RecordType.ENTRIES, bytes([index]) * 4000, seed=old_seed))
    length = segment.stat().st_size
    synced = JournalReader(journal).synced_sizes()
    torn = 0
    for seed in range(30):
        copy = tmp_path / f"copy-{seed}"
        shutil.copytree(node, copy)
        copied = {str(copy / Path(p).relative_to(node)): size for p, size in synced.items()}
        cuts = lose_unsynced_writes(copy / "wal", copied, random.Random(seed))
        assert len(cuts) == (1 if unsynced_entries else 0)
        if cuts:
            torn += bool(cuts[0].damage)
            assert cuts[0].reverted and "reused" in describe_cuts(cuts)
        assert (copy / "wal" / segment.name).stat().st_size == length  # a power loss keeps it
        with open_storage(copy) as storage:
            restored = storage.restored_state().entries
        assert restored[:10] == tuple(entry(i) for i in range(1, 11)), seed
        assert restored == tuple(entry(i) for i in range(1, len(restored) + 1)), seed
    assert (torn > 0) == bool(unsynced_entries)  # only written bytes are torn
