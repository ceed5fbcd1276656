"""The sync journal (``PARAMSTORE_SYNC_JOURNAL``): every WAL fsync leaves one line with the
segment's synced size, unsynced writes leave none, reopening a WAL syncs what recovery read
back, and with the variable unset nothing is written anywhere."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from consensus.messages import Entry, EntryKind, HardState, Ready
from consensus.storage import NodeStorage, StorageConfig, sync_journal
from consensus.storage.sync_journal import JournalReader

REPO_ROOT = Path(__file__).resolve().parent.parent
CLUSTER = "journal-tests"


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "sync-journal"
    sync_journal.enable(path)
    try:
        yield path
    finally:
        sync_journal.disable()


def open_storage(path: Path, **config: object) -> NodeStorage:
    settings = StorageConfig(**{"fsync": "always", **config})  # type: ignore[arg-type]
    return NodeStorage.open(path, cluster_id=CLUSTER, node_id=1, config=settings)


def entries(first: int, count: int, size: int = 40) -> list[Entry]:
    return [Entry(1, i, EntryKind.NORMAL, b"e%d" % i + b"-" * size) for i in range(first, first + count)]


def save(storage: NodeStorage, batch: list[Entry], *, defer_sync: bool = False) -> bool:
    ready = Ready(entries=batch, hard_state=HardState(term=1, vote=1, commit=0))
    return storage.save_ready(ready, defer_sync=defer_sync)


def file_sizes(storage: NodeStorage) -> dict[str, int]:
    return {os.path.abspath(p): p.stat().st_size for p in storage.segment_paths()}


def test_every_sync_journals_the_segment_size_and_a_roll_journals_both(journal: Path, tmp_path: Path) -> None:
    with open_storage(tmp_path / "node", segment_bytes_max=600) as storage:
        for first in range(1, 40, 3):
            save(storage, entries(first, 3))
        assert len(storage.segment_paths()) >= 3  # it rolled
        assert JournalReader(journal).synced_sizes() == file_sizes(storage)
    lines = journal.read_text().splitlines()
    assert all(line.rsplit(" ", 1)[1].isdigit() and os.path.isabs(line.rsplit(" ", 1)[0]) for line in lines)


def test_an_unsynced_write_is_not_journaled_and_reopening_syncs_it(journal: Path, tmp_path: Path) -> None:
    with open_storage(tmp_path / "node") as storage:
        save(storage, entries(1, 2))
        synced = JournalReader(journal).synced_sizes()
        assert synced == file_sizes(storage)
        assert save(storage, entries(3, 2), defer_sync=True)  # owed, never done: a crash now
        assert JournalReader(journal).synced_sizes() == synced
        (path,) = storage.segment_paths()
        assert path.stat().st_size > synced[os.path.abspath(path)]
    # Recovery reads the unsynced records back (the page cache kept them): opening syncs them.
    with open_storage(tmp_path / "node") as storage:
        assert storage.last_index == 4
        assert JournalReader(journal).synced_sizes() == file_sizes(storage)


def test_the_reader_is_incremental_and_waits_for_a_whole_line(tmp_path: Path) -> None:
    path = tmp_path / "journal"
    reader = JournalReader(path)
    assert reader.synced_sizes() == {}  # no journal yet: nothing synced
    path.write_bytes(b"/a/one.wal 10\n/a/two.wal 20\n/a/one.wal 3")
    assert reader.synced_sizes() == {"/a/one.wal": 10, "/a/two.wal": 20}
    with path.open("ab") as file:
        file.write(b"0\n/a with space/x.wal 7\n")
    assert reader.synced_sizes() == {"/a/one.wal": 30, "/a/two.wal": 20, "/a with space/x.wal": 7}


_CHILD = textwrap.dedent(
    """
    import sys
    from consensus.messages import Entry, HardState, Ready
    from consensus.storage import NodeStorage, StorageConfig, sync_journal

    storage = NodeStorage.open(sys.argv[1], cluster_id="j", node_id=1, config=StorageConfig(fsync="always"))
    for index in range(1, 6):
        ready = Ready(entries=[Entry(1, index, data=b"x" * 50)], hard_state=HardState(1, 1, 0))
        storage.save_ready(ready)
    print(sync_journal.enabled(), *(p.stat().st_size for p in storage.segment_paths()))
    storage.close()
    """
)


@pytest.mark.parametrize("with_variable", [True, False])
def test_the_variable_is_read_at_import_and_without_it_no_file_is_written(
    tmp_path: Path, with_variable: bool
) -> None:
    env = {k: v for k, v in os.environ.items() if k != sync_journal.ENV_VARIABLE}
    env["PYTHONPATH"] = str(REPO_ROOT)
    journal = tmp_path / "sync-journal"
    if with_variable:
        env[sync_journal.ENV_VARIABLE] = str(journal)
    data_dir = tmp_path / "node"
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, str(data_dir)], env=env, capture_output=True, text=True, timeout=60
    )
    assert child.returncode == 0, child.stderr
    enabled, size = child.stdout.split()
    assert enabled == str(with_variable)
    if with_variable:
        (segment,) = (data_dir / "wal").iterdir()
        assert JournalReader(journal).synced_sizes() == {str(segment): int(size)}
    else:
        assert sorted(p.name for p in tmp_path.iterdir()) == ["node"]
