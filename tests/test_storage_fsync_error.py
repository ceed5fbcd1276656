"""A failing fsync (the ``wal.fsync_error`` failpoint, ``OSError(EIO)``): the storage fails
for good, nothing is journaled as synced, and a store or coordinator daemon fail-stops with
a line naming the fsync failure, whether it fails opening its WAL or while it runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from consensus.messages import Entry, HardState, Ready
from consensus.storage import (
    NodeStorage,
    StorageConfig,
    StorageFailedError,
    StorageSyncError,
    failpoints,
    sync_journal,
)
from consensus.storage.sync_journal import JournalReader
from paramstore.commands._up import free_ports
from tests.cluster_util import REPO_ROOT, wait_exit


@pytest.fixture(autouse=True)
def _disarm() -> Iterator[None]:
    yield
    failpoints.disarm_all()
    sync_journal.disable()


def open_storage(path: Path) -> NodeStorage:
    return NodeStorage.open(path, cluster_id="eio", node_id=1, config=StorageConfig(fsync="always"))


def write(storage: NodeStorage, index: int) -> None:
    storage.save_ready(Ready(entries=[Entry(1, index, data=b"d")], hard_state=HardState(1, 1, 0)))


def test_a_failed_fsync_fails_the_storage_for_good_and_is_not_journaled(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    sync_journal.enable(journal)
    storage = open_storage(tmp_path / "node")
    synced = JournalReader(journal).synced_sizes()
    failpoints.arm(failpoints.WAL_FSYNC_ERROR, on_hit=2)
    write(storage, 1)  # the first fsync still works
    failed = r"fsync of WAL segment .*\.wal failed: .*wal\.fsync_error"
    with pytest.raises(StorageSyncError, match=failed) as info:
        write(storage, 2)
    assert info.value.errno == 5  # EIO
    assert isinstance(info.value.__cause__, OSError)
    with pytest.raises(StorageFailedError, match=r"syncing|appending"):
        write(storage, 3)  # no retry after a failed fsync
    (segment,) = storage.segment_paths()
    assert JournalReader(journal).synced_sizes()[str(segment)] < segment.stat().st_size
    assert synced != JournalReader(journal).synced_sizes()  # entry 1's sync is there
    storage.close()


def test_it_stays_armed_and_an_existing_wal_fails_to_open(tmp_path: Path) -> None:
    with open_storage(tmp_path / "node") as storage:
        write(storage, 1)
    failpoints.arm(failpoints.WAL_FSYNC_ERROR)
    for _ in range(2):  # reopening syncs the recovered segment: it fails every time
        with pytest.raises(StorageSyncError, match="Input/output error"):
            open_storage(tmp_path / "node")
    failpoints.disarm_all()
    with open_storage(tmp_path / "node") as storage:  # the lock was released
        assert storage.last_index == 1


def _daemon(role: str, data_dir: Path, failpoint: str) -> subprocess.Popen[str]:
    (port,) = free_ports(1)
    address = f"127.0.0.1:{port}"
    group = ["--group", "1"] if role == "store" else []
    command = [
        sys.executable, "-m", "paramstore.cli", role, *group, "--id", "1", "--listen", address,
        "--peers", f"1={address}", "--data-dir", str(data_dir), "--fsync", "always",
    ]  # fmt: skip
    env = {**os.environ, failpoints.ENV_VARIABLE: failpoint}
    return subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


@pytest.mark.parametrize(
    ("role", "failpoint", "expected"),
    [
        # The first fsync, creating the WAL: the daemon never starts serving.
        ("store", "wal.fsync_error", r"paramstore store: fsync of WAL segment \S+ failed"),
        # The second, its vote for itself as the single-node group's leader: it was serving.
        ("coordinator", "wal.fsync_error@2", r"node 1: the Raft driver failed: fsync of WAL segment \S+"),
    ],
)
def test_a_daemon_whose_fsync_fails_exits_non_zero_naming_it(
    tmp_path: Path, role: str, failpoint: str, expected: str
) -> None:
    process = _daemon(role, tmp_path / role, failpoint)
    try:
        status = wait_exit(process, f"the {role} daemon to fail-stop")  # type: ignore[arg-type]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    output = process.stdout.read() if process.stdout else ""
    assert status != 0, output
    assert re.search(expected, output), output
