"""Snapshot files: round trips, pruning, checksums, and crash atomicity at each snapshot
failpoint (in a child process), both for the application's snapshots and for installing a
leader's snapshot through ``save_ready``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from consensus.errors import InvalidRequestError
from consensus.messages import ConfState, Entry, EntryKind, HardState, Ready, Snapshot, SnapshotMeta
from consensus.storage import (
    NodeStorage,
    RecordTooLargeError,
    StorageConfig,
    StorageCorruptionError,
    failpoints,
)
from consensus.storage.snapshots import SnapshotStore
from tests.storage_util import both_write_modes, write_mode  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parent.parent
CLUSTER = "snapshot-tests"
CONF = ConfState((1, 2, 3))


def open_storage(path: Path, **config: object) -> NodeStorage:
    settings = {**write_mode(), **config}
    return NodeStorage.open(path, cluster_id=CLUSTER, node_id=1, config=StorageConfig(**settings))  # type: ignore[arg-type]


def make_entries(first: int, count: int, term: int = 1) -> list[Entry]:
    return [
        Entry(term, index, EntryKind.NORMAL, b"entry-%d" % index) for index in range(first, first + count)
    ]


def snapshot_at(index: int, term: int = 1, size: int = 64) -> Snapshot:
    data = (b"state-at-%d;" % index) * (size // 12 + 1)
    return Snapshot(SnapshotMeta(index, term, CONF), data[:size])


def with_log(path: Path, last_index: int = 30) -> None:
    with open_storage(path) as storage:
        storage.save_ready(Ready(entries=make_entries(1, last_index), hard_state=HardState(1, 1, last_index)))


def test_application_snapshot_survives_reopen_with_the_entries_after_it(tmp_path: Path) -> None:
    with_log(tmp_path)
    with open_storage(tmp_path) as storage:
        storage.save_snapshot(snapshot_at(12, size=3 * 1024 * 1024))
        assert storage.snapshot_meta == SnapshotMeta(12, 1, CONF)
    with open_storage(tmp_path) as storage:
        restored = storage.restored_state()
        assert restored.snapshot == snapshot_at(12, size=3 * 1024 * 1024)
        assert restored.entries == tuple(make_entries(13, 18))
        assert restored.hard_state == HardState(1, 1, 30)


def test_snapshots_must_move_forward_and_stay_within_the_log(tmp_path: Path) -> None:
    with_log(tmp_path)
    with open_storage(tmp_path, snapshot_bytes_max=1000) as storage:
        storage.save_snapshot(snapshot_at(10))
        with pytest.raises(InvalidRequestError, match="not newer"):
            storage.save_snapshot(snapshot_at(10))
        with pytest.raises(InvalidRequestError, match="beyond the last persisted index 30"):
            storage.save_snapshot(snapshot_at(31))
        with pytest.raises(RecordTooLargeError, match="snapshot_bytes_max=1000"):
            storage.save_snapshot(snapshot_at(20, size=1001))
        with pytest.raises(InvalidRequestError, match="in the snapshot"):
            storage.save_ready(Ready(entries=make_entries(10, 1, term=2)))
        storage.save_snapshot(snapshot_at(20))


def test_only_the_newest_snapshots_are_kept(tmp_path: Path) -> None:
    with_log(tmp_path)
    with open_storage(tmp_path, snapshots_kept_max=2) as storage:
        for index in (5, 10, 15, 20):
            storage.save_snapshot(snapshot_at(index))
        assert [p.name[:20] for p in storage.snapshot_paths()] == [f"{15:020d}", f"{20:020d}"]
    with open_storage(tmp_path, snapshots_kept_max=1) as storage:  # pruned at open too
        assert len(storage.snapshot_paths()) == 1
        assert storage.snapshot_meta is not None and storage.snapshot_meta.index == 20


@pytest.mark.parametrize("where", ["data", "meta", "checksum", "truncated", "magic"])
def test_a_damaged_snapshot_file_is_refused(tmp_path: Path, where: str) -> None:
    with_log(tmp_path)
    with open_storage(tmp_path) as storage:
        storage.save_snapshot(snapshot_at(10, size=1000))
        (path,) = storage.snapshot_paths()
    data = bytearray(path.read_bytes())
    if where == "truncated":
        del data[-100:]
    else:
        offset = {"data": 500, "meta": 26, "checksum": len(data) - 2, "magic": 0}[where]
        data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(StorageCorruptionError) as caught:
        open_storage(tmp_path)
    assert caught.value.path == path
    assert str(path) in str(caught.value)
    if where in ("data", "meta", "checksum"):
        assert "checksum mismatch" in str(caught.value)


def test_pruned_snapshot_files_are_written_over_in_place(tmp_path: Path) -> None:
    with_log(tmp_path)
    with open_storage(tmp_path, snapshots_kept_max=1) as storage:
        storage.save_snapshot(snapshot_at(5, size=2 << 20))
        storage.save_snapshot(snapshot_at(10, size=100))
        (recycled,) = list(tmp_path.rglob("recycled-*.snapshot"))  # the pool holds one
        inode = recycled.stat().st_ino
        storage.save_snapshot(snapshot_at(15, size=1000))  # shorter than the file it reuses
        (latest,) = storage.snapshot_paths()
        assert latest.stat().st_ino == inode and not recycled.exists()
        assert SnapshotStore(latest.parent, StorageConfig()).load(latest) == snapshot_at(15, size=1000)
        storage.save_snapshot(snapshot_at(20, size=3 << 20))  # longer than the file it reuses
    with open_storage(tmp_path) as storage:
        assert storage.restored_state().snapshot == snapshot_at(20, size=3 << 20)
    with open_storage(tmp_path, snapshots_kept_max=1, recycled_snapshots_max=0) as storage:
        assert list(tmp_path.rglob("recycled-*.snapshot")) == []  # the pool trimmed at open
        storage.save_snapshot(snapshot_at(25))
        assert list(tmp_path.rglob("recycled-*.snapshot")) == []
    with open_storage(tmp_path) as storage:
        assert storage.restored_state().snapshot == snapshot_at(25)
    with pytest.raises(ValueError, match="recycled_snapshots_max must be >= 0"):
        StorageConfig(recycled_snapshots_max=-1)


def test_leftover_temporary_files_are_removed_at_open(tmp_path: Path) -> None:
    with_log(tmp_path)
    with open_storage(tmp_path) as storage:
        storage.save_snapshot(snapshot_at(10))
        (path,) = storage.snapshot_paths()
    leftover = path.with_name(f"{20:020d}-{1:020d}.snap.tmp")
    leftover.write_bytes(b"half a snapshot")
    with open_storage(tmp_path) as storage:
        assert not leftover.exists()
        assert storage.restored_state().snapshot == snapshot_at(10)
        assert any("unfinished snapshot" in note for note in storage.recovery_notes)


def test_a_snapshot_written_in_steps_counts_once_finished_unless_overtaken(tmp_path: Path) -> None:
    # The runtime writes its snapshots' files in a thread (``write_snapshot_file``) while the
    # log goes on; meanwhile a leader's snapshot may be installed: the older one then counts
    # for nothing, and the installed one stays.
    with_log(tmp_path)
    with open_storage(tmp_path) as storage:
        own = snapshot_at(12)
        storage.begin_snapshot(own)
        storage.write_snapshot_file(own)
        assert storage.snapshot_meta is None  # written, not yet the saved one
        assert storage.finish_snapshot(own)
        assert storage.snapshot_meta == own.meta
        later = snapshot_at(20)
        storage.begin_snapshot(later)
        storage.write_snapshot_file(later)
        installed = snapshot_at(50, term=4)
        storage.save_ready(Ready(snapshot=installed, hard_state=HardState(4, 0, 50)))
        assert not storage.finish_snapshot(later)
        assert storage.snapshot_meta == installed.meta
    with open_storage(tmp_path) as storage:
        assert storage.restored_state().snapshot == installed


def test_installing_a_leaders_snapshot_replaces_the_whole_log(tmp_path: Path) -> None:
    with_log(tmp_path)
    installed = snapshot_at(50, term=4)
    with open_storage(tmp_path, segment_bytes_max=600) as storage:
        old_segments = storage.segment_paths()
        storage.save_ready(
            Ready(snapshot=installed, entries=make_entries(51, 2, term=4), hard_state=HardState(4, 0, 50))
        )
        assert all(not path.exists() for path in old_segments)
        assert storage.last_index == 52
    with open_storage(tmp_path) as storage:
        restored = storage.restored_state()
        assert restored.snapshot == installed
        assert restored.entries == tuple(make_entries(51, 2, term=4))
        assert restored.hard_state == HardState(4, 0, 50)


def test_an_installed_snapshot_below_the_old_log_end_drops_the_conflicting_tail(tmp_path: Path) -> None:
    with open_storage(tmp_path) as storage:
        storage.save_ready(Ready(entries=make_entries(1, 30), hard_state=HardState(1, 1, 5)))
        # The leader's log differs from index 20 on: its snapshot at 20 (term 3) replaces ours.
        storage.save_ready(Ready(snapshot=snapshot_at(20, term=3), hard_state=HardState(3, 0, 20)))
    with open_storage(tmp_path) as storage:
        assert storage.restored_state().entries == ()
        assert storage.last_index == 20
        storage.save_ready(Ready(entries=make_entries(21, 1, term=3)))
    with open_storage(tmp_path) as storage:
        assert storage.restored_state().entries == tuple(make_entries(21, 1, term=3))


# ---- crash atomicity ------------------------------------------------------------------------

_SNAPSHOT_CHILD = textwrap.dedent(
    """
    import sys
    from consensus.messages import ConfState, Entry, HardState, Ready, Snapshot, SnapshotMeta
    from consensus.storage import NodeStorage, StorageConfig

    path, mode = sys.argv[1], sys.argv[2]
    config = StorageConfig(fsync="always")
    storage = NodeStorage.open(path, cluster_id="snapshot-tests", node_id=1, config=config)
    conf = ConfState((1, 2, 3))
    if mode == "application":
        storage.save_snapshot(Snapshot(SnapshotMeta(20, 1, conf), b"new-state" * 100_000))
    else:
        ready = Ready(
            snapshot=Snapshot(SnapshotMeta(50, 4, conf), b"leader-state" * 100_000),
            entries=[Entry(4, 51, data=b"after-install")],
            hard_state=HardState(4, 0, 51),
        )
        storage.save_ready(ready)
    print("returned", flush=True)
    """
)

_SNAPSHOT_FAILPOINTS = [
    failpoints.SNAPSHOT_MID_WRITE,
    failpoints.SNAPSHOT_BEFORE_RENAME,
    failpoints.SNAPSHOT_AFTER_RENAME_BEFORE_DIR_FSYNC,
]


@pytest.mark.parametrize("recycled", [False, True], ids=["new-file", "recycled-file"])
@pytest.mark.parametrize("mode", ["application", "install"])
@pytest.mark.parametrize("failpoint", _SNAPSHOT_FAILPOINTS)
def test_a_crash_at_a_snapshot_failpoint_leaves_the_old_or_the_new_state(
    tmp_path: Path, failpoint: str, mode: str, recycled: bool
) -> None:
    old_snapshot = snapshot_at(10)
    with open_storage(tmp_path) as storage:
        storage.save_ready(Ready(entries=make_entries(1, 30), hard_state=HardState(1, 1, 30)))
        if recycled:  # a pruned file, longer than the new snapshot, for the child to write over
            storage.save_snapshot(snapshot_at(5, size=3 << 20))
            storage.save_snapshot(snapshot_at(8))
        storage.save_snapshot(old_snapshot)
        old_segments = storage.segment_paths()
    assert len(list(tmp_path.rglob("recycled-*.snapshot"))) == int(recycled)
    env = {**os.environ, failpoints.ENV_VARIABLE: failpoint, "PYTHONPATH": str(REPO_ROOT)}
    child = subprocess.run(
        [sys.executable, "-c", _SNAPSHOT_CHILD, str(tmp_path), mode],
        env=env,
        capture_output=True,
        timeout=60,
        text=True,
    )
    assert child.returncode == -9, child.stderr
    assert "returned" not in child.stdout

    with open_storage(tmp_path) as storage:
        restored = storage.restored_state()
        assert restored.snapshot is not None
        new_is_durable = failpoint == failpoints.SNAPSHOT_AFTER_RENAME_BEFORE_DIR_FSYNC
        if not new_is_durable:
            # The old state, whole: snapshot, log and hard state as before the attempt.
            assert restored.snapshot == old_snapshot
            assert restored.entries == tuple(make_entries(11, 20))
            assert restored.hard_state == HardState(1, 1, 30)
            assert storage.segment_paths()[: len(old_segments)] == old_segments
        elif mode == "application":
            assert restored.snapshot == Snapshot(SnapshotMeta(20, 1, CONF), b"new-state" * 100_000)
            assert restored.entries == tuple(make_entries(21, 10))
        else:
            # Installed, but the crash came before the entries after it were written.
            assert restored.snapshot == Snapshot(SnapshotMeta(50, 4, CONF), b"leader-state" * 100_000)
            assert restored.entries == ()
            assert restored.hard_state == HardState(4, 0, 50)  # the term of the install
        assert not list(tmp_path.rglob("*.tmp"))
        # Either way the node goes on.
        next_index = storage.last_index + 1
        storage.save_ready(Ready(entries=make_entries(next_index, 1, term=5)))
    with open_storage(tmp_path) as storage:
        assert storage.last_index == next_index
