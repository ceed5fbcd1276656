"""``NodeStorage``: everything one Raft node keeps on disk, behind one small interface.

A data directory holds::

    IDENTITY   cluster id and node id, written at first start, checked at every start
    LOCK       flock'd while open
    wal/       write-ahead log segments (entries, hard states)
    snap/      snapshot files (the newest one or two)

Typical driving loop (steps 1-2 of the ``Ready`` contract are ``save_ready``)::

    storage = NodeStorage.open(path, cluster_id="prod-a", node_id=3, config=StorageConfig(fsync="batch"))
    core = RaftCore(raft_config, storage.restored_state(), rng)
    ...
    rd = core.ready()
    storage.save_ready(rd)           # snapshot, entries, hard state; synced per the policy
    send(rd.messages); apply(rd.committed_entries); core.advance(rd)
    ...
    if storage.needs_sync(): storage.sync()   # BATCH: at storage.sync_deadline()
    ...
    core.compact(index, data); storage.save_snapshot(core.snapshot); storage.compact(index)

Installing a leader's snapshot (``Ready.snapshot``) is made crash-atomic by ordering: a new
*reset* segment that starts the log after the snapshot is created first, then the snapshot
file is written, then the replaced segments are deleted. Recovery treats a reset segment
whose snapshot file is missing as an install that never happened, and removes it.

Any failure part-way through a write leaves the storage unusable (``StorageFailedError``)
until it is reopened: after a failed write or fsync, what is on disk is unknown, and
recovery is the code that knows how to find out. Not thread-safe: one driver calls it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from consensus.errors import InvalidRequestError
from consensus.messages import HardState, Ready, RestoredState, Snapshot, SnapshotMeta
from consensus.storage.config import StorageConfig
from consensus.storage.errors import (
    RecordTooLargeError,
    StorageClosedError,
    StorageCorruptionError,
    StorageFailedError,
)
from consensus.storage.files import create_directory
from consensus.storage.identity import ClusterIdentity, DirectoryLock, check_or_create_identity
from consensus.storage.snapshots import SnapshotStore
from consensus.storage.wal import WriteAheadLog

__all__ = ["NodeStorage"]

WAL_DIR_NAME = "wal"
SNAPSHOT_DIR_NAME = "snap"
_DEFAULT_CONFIG = StorageConfig()


class NodeStorage:
    """Durable hard state, log and snapshots of one Raft node. Create with ``open``."""

    def __init__(
        self,
        data_dir: Path,
        config: StorageConfig,
        lock: DirectoryLock,
        wal: WriteAheadLog,
        snapshots: SnapshotStore,
        restored: RestoredState,
        notes: list[str],
    ) -> None:
        self.data_dir = data_dir
        self.config = config
        self._lock = lock
        self._wal = wal
        self._snapshots = snapshots
        self._restored = restored
        self._snapshot_meta: SnapshotMeta | None = restored.snapshot.meta if restored.snapshot else None
        self._recovery_notes = tuple(notes)
        self._failure: str | None = None
        self._closed = False

    @classmethod
    def open(
        cls,
        data_dir: str | os.PathLike[str],
        *,
        cluster_id: str,
        node_id: int,
        config: StorageConfig = _DEFAULT_CONFIG,
        clock: Callable[[], float] = time.monotonic,
    ) -> NodeStorage:
        """Open (creating at first start) and recover ``data_dir`` for node ``node_id`` of
        cluster ``cluster_id``. ``clock`` (seconds) only times ``BATCH`` syncs."""
        path = Path(data_dir)
        identity = ClusterIdentity(cluster_id, node_id)
        create_directory(path, sync=config.syncs)
        lock = DirectoryLock(path)
        try:
            return cls._recover(path, identity, config, clock, lock)
        except BaseException:
            lock.release()
            raise

    @classmethod
    def _recover(
        cls,
        path: Path,
        identity: ClusterIdentity,
        config: StorageConfig,
        clock: Callable[[], float],
        lock: DirectoryLock,
    ) -> NodeStorage:
        wal_dir = path / WAL_DIR_NAME
        snapshot_dir = path / SNAPSHOT_DIR_NAME
        check_or_create_identity(path, identity, sync=config.syncs)
        create_directory(wal_dir, sync=config.syncs)
        create_directory(snapshot_dir, sync=config.syncs)
        snapshots = SnapshotStore(snapshot_dir, config)
        notes = snapshots.remove_temp_files()
        snapshot = snapshots.load_latest()
        wal, recovered = WriteAheadLog.open(wal_dir, config, clock, snapshot.meta if snapshot else None)
        try:
            restored = RestoredState(recovered.hard_state, snapshot, tuple(recovered.entries))
            _check_restored(restored, wal_dir)
            snapshots.prune()
        except BaseException:
            wal.close()
            raise
        return cls(path, config, lock, wal, snapshots, restored, notes + recovered.notes)

    # ---- what is on disk --------------------------------------------------------------

    def restored_state(self) -> RestoredState:
        """What ``open`` found: the input to ``RaftCore.__init__`` (not updated by later writes)."""
        return self._restored

    @property
    def recovery_notes(self) -> tuple[str, ...]:
        """Repairs ``open`` made (a torn tail truncated, an incomplete install undone...)."""
        return self._recovery_notes

    @property
    def snapshot_meta(self) -> SnapshotMeta | None:
        return self._snapshot_meta

    @property
    def last_index(self) -> int:
        return self._wal.last_index

    @property
    def hard_state(self) -> HardState:
        return self._wal.hard_state

    def segment_paths(self) -> list[Path]:
        return [segment.path for segment in self._wal.segments]

    def snapshot_paths(self) -> list[Path]:
        return self._snapshots.paths()

    # ---- writing ------------------------------------------------------------------------

    def save_ready(self, ready: Ready, *, defer_sync: bool = False) -> bool:
        """Steps 1-2 of the ``Ready`` contract: install ``ready.snapshot`` (dropping the whole
        log), persist ``ready.entries`` (replacing any persisted entries from the first one's
        index on), then ``ready.hard_state``; sync per the fsync policy before returning.

        With ``defer_sync`` a sync that ``ALWAYS`` owes is not done here: True says the
        caller must call ``sync()`` (from any one thread, with no other call in between)
        before it sends the ready's messages. A snapshot install always syncs at once."""
        self._check_usable()
        if ready.snapshot is not None:
            self._check_new_snapshot(ready.snapshot)
            with self._stop_on_failure("installing a snapshot"):
                self._install_snapshot(ready.snapshot, ready.hard_state)
                self._wal.append(ready.entries, ready.hard_state)
            return False
        if not ready.entries and ready.hard_state is None:
            return False
        with self._stop_on_failure("appending to the WAL", validation_is_clean=True):
            return self._wal.append(ready.entries, ready.hard_state, defer_sync=defer_sync)

    def _install_snapshot(self, snapshot: Snapshot, hard_state: HardState | None) -> None:
        self._wal.begin_reset(snapshot.meta, hard_state)
        self._snapshots.save(snapshot)
        self._snapshot_meta = snapshot.meta
        self._wal.drop_replaced_segments()
        self._snapshots.prune()

    def save_snapshot(self, snapshot: Snapshot) -> None:
        """Persist a snapshot the application took (of its state at ``snapshot.meta.index``,
        which must be in the log). The log is left as it is: see ``compact``."""
        self.begin_snapshot(snapshot)
        self.write_snapshot_file(snapshot)
        self.finish_snapshot(snapshot)

    # ``save_snapshot`` in three steps, so that the big write can run in another thread while
    # this one goes on writing the log: the middle step touches only the snapshot directory.

    def begin_snapshot(self, snapshot: Snapshot) -> None:
        """Check that ``snapshot`` can be saved now (newer than the saved one, in the log)."""
        self._check_usable()
        self._check_new_snapshot(snapshot)
        index = snapshot.meta.index
        if index > self._wal.last_index:
            raise InvalidRequestError(
                f"snapshot at index {index} is beyond the last persisted index {self._wal.last_index}"
            )

    def write_snapshot_file(self, snapshot: Snapshot) -> None:
        """Write the snapshot's file durably (any thread; one snapshot at a time)."""
        self._check_usable()
        with self._stop_on_failure("saving a snapshot"):
            self._snapshots.save(snapshot)

    def finish_snapshot(self, snapshot: Snapshot) -> bool:
        """Make the written snapshot the saved one. False (nothing changes) when the log moved
        past it meanwhile: a newer snapshot was installed, or the log was reset beyond it."""
        self._check_usable()
        index = snapshot.meta.index
        current = self._snapshot_meta.index if self._snapshot_meta is not None else 0
        if index <= current or not self._wal.base_index < index <= self._wal.last_index:
            return False
        with self._stop_on_failure("saving a snapshot"):
            self._snapshot_meta = snapshot.meta
            self._wal.note_snapshot(index)
            self._snapshots.prune()
        return True

    def compact(self, index: int) -> int:
        """Delete WAL segments holding only entries <= ``index`` (at most the snapshot's
        index). Returns how many segments were deleted."""
        self._check_usable()
        snapshot_index = self._snapshot_meta.index if self._snapshot_meta is not None else 0
        if index > snapshot_index:
            raise InvalidRequestError(f"cannot compact to {index}: the snapshot is at {snapshot_index}")
        with self._stop_on_failure("compacting the WAL"):
            return len(self._wal.compact(index))

    def _check_new_snapshot(self, snapshot: Snapshot) -> None:
        current = self._snapshot_meta.index if self._snapshot_meta is not None else 0
        if snapshot.meta.index <= current:
            raise InvalidRequestError(
                f"snapshot at index {snapshot.meta.index} is not newer than the saved one at {current}"
            )
        if len(snapshot.data) > self.config.snapshot_bytes_max:
            raise RecordTooLargeError(
                f"snapshot at index {snapshot.meta.index} is {len(snapshot.data)} bytes, more than "
                f"snapshot_bytes_max={self.config.snapshot_bytes_max}"
            )

    # ---- syncing ------------------------------------------------------------------------

    def needs_sync(self) -> bool:
        """``BATCH`` only: True once unsynced writes are ``sync_interval_ms`` old; call ``sync``."""
        return self._failure is None and not self._closed and self._wal.needs_sync()

    def sync_deadline(self) -> float | None:
        """``BATCH`` only: when (in ``clock`` seconds) ``sync`` is due; None if nothing is unsynced."""
        if self._failure is not None or self._closed:
            return None
        return self._wal.sync_deadline()

    def sync(self) -> None:
        """Make every write so far durable."""
        self._check_usable()
        with self._stop_on_failure("syncing the WAL"):
            self._wal.sync()

    # ---- lifecycle ----------------------------------------------------------------------

    def close(self) -> None:
        """Sync pending ``BATCH`` writes, close the files and release the directory lock."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._failure is None:
                self._wal.close()
        finally:
            self._lock.release()

    def __enter__(self) -> NodeStorage:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _check_usable(self) -> None:
        if self._closed:
            raise StorageClosedError(f"storage of {self.data_dir} is closed")
        if self._failure is not None:
            raise StorageFailedError(
                f"storage of {self.data_dir} failed earlier ({self._failure}); reopen it to recover"
            )

    @contextmanager
    def _stop_on_failure(self, what: str, *, validation_is_clean: bool = False) -> Iterator[None]:
        """Any exception inside marks the storage failed, except (when ``validation_is_clean``)
        the errors the WAL raises before writing anything."""
        try:
            yield
        except (InvalidRequestError, RecordTooLargeError):
            if not validation_is_clean:
                self._failure = f"{what} was refused part-way"
            raise
        except BaseException as exc:
            self._failure = f"{what} failed: {exc!r}"
            raise


def _check_restored(restored: RestoredState, wal_dir: Path) -> None:
    """The pair of the checks made when writing: what was written must read back consistent."""
    snapshot_index = restored.snapshot.meta.index if restored.snapshot is not None else 0
    last_index = restored.entries[-1].index if restored.entries else snapshot_index
    if restored.entries and restored.entries[0].index != snapshot_index + 1:
        raise AssertionError(
            f"recovered entries start at {restored.entries[0].index}, not after {snapshot_index}"
        )
    if restored.hard_state.commit > last_index:
        raise StorageCorruptionError(
            wal_dir,
            None,
            f"the hard state's commit index {restored.hard_state.commit} is beyond the last recovered "
            f"index {last_index}: entries that were committed are missing",
        )
