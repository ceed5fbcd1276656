"""``NodeStorage`` as a whole: identity and locking, failure handling, a model-based property
test of random ``save_ready`` histories across reopens, and a 3-node Raft cluster whose
nodes persist through it, crash and rejoin."""

from __future__ import annotations

import errno
import json
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consensus.config import RaftConfig
from consensus.core import RaftCore
from consensus.messages import (
    ConfState,
    Entry,
    EntryKind,
    HardState,
    Message,
    Ready,
    RestoredState,
    Role,
    Snapshot,
    SnapshotMeta,
)
from consensus.storage import (
    FsyncPolicy,
    NodeStorage,
    StorageClosedError,
    StorageConfig,
    StorageCorruptionError,
    StorageFailedError,
    StorageIdentityError,
    StorageLockedError,
)
from consensus.storage.append_file import AppendFile
from consensus.storage.records import RecordType, scan_records
from consensus.storage.segments import record_seed_of

CONF = ConfState((1, 2, 3))


def open_storage(path: Path, cluster_id: str = "c1", node_id: int = 1, **config: object) -> NodeStorage:
    return NodeStorage.open(
        path,
        cluster_id=cluster_id,
        node_id=node_id,
        config=StorageConfig(**config),  # type: ignore[arg-type]
    )


# ---- identity, locking, lifecycle ------------------------------------------------------------


def test_a_data_directory_of_another_cluster_or_node_is_refused(tmp_path: Path) -> None:
    with open_storage(tmp_path, "cluster-a", 1) as storage:
        storage.save_ready(Ready(entries=[Entry(1, 1)], hard_state=HardState(1, 1, 1)))
    with pytest.raises(
        StorageIdentityError, match="belongs to cluster 'cluster-a' node 1, not to cluster 'b'"
    ):
        open_storage(tmp_path, "b", 1)
    with pytest.raises(StorageIdentityError, match="not to cluster 'cluster-a' node 2"):
        open_storage(tmp_path, "cluster-a", 2)
    with open_storage(tmp_path, "cluster-a", 1) as storage:  # the refusals released the lock
        assert storage.last_index == 1


def test_data_without_an_identity_file_is_refused(tmp_path: Path) -> None:
    with open_storage(tmp_path) as storage:
        storage.save_ready(Ready(entries=[Entry(1, 1)]))
    (tmp_path / "IDENTITY").unlink()
    with pytest.raises(StorageIdentityError, match=r"no IDENTITY file but is not empty \((wal|snap)\)"):
        open_storage(tmp_path)


def test_a_directory_holding_other_files_is_not_taken_over(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("someone else's")
    with pytest.raises(StorageIdentityError, match=r"not empty \(notes.txt\)"):
        open_storage(tmp_path)
    assert not (tmp_path / "IDENTITY").exists()


def test_a_damaged_identity_file_is_corruption(tmp_path: Path) -> None:
    open_storage(tmp_path).close()
    (tmp_path / "IDENTITY").write_text('{"cluster_id": "c1", "node_id": ')
    with pytest.raises(StorageCorruptionError, match="unreadable identity file"):
        open_storage(tmp_path)


def test_identity_values_are_checked() -> None:
    with pytest.raises(ValueError, match="node_id must be a positive integer"):
        open_storage(Path(tempfile.gettempdir()) / "never-created", node_id=0)
    with pytest.raises(ValueError, match="cluster_id"):
        open_storage(Path(tempfile.gettempdir()) / "never-created", cluster_id="")


def test_a_data_directory_can_be_open_only_once(tmp_path: Path) -> None:
    storage = open_storage(tmp_path)
    with pytest.raises(StorageLockedError, match="already open"):
        open_storage(tmp_path)
    storage.close()
    storage.close()  # idempotent
    with pytest.raises(StorageClosedError):
        storage.save_ready(Ready(hard_state=HardState(1, 0, 0)))
    open_storage(tmp_path).close()


def test_config_is_validated_and_accepts_policy_names() -> None:
    assert StorageConfig(fsync="batch").fsync is FsyncPolicy.BATCH  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fsync must be one of"):
        StorageConfig(fsync="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="segment_bytes_max"):
        StorageConfig(segment_bytes_max=100)
    with pytest.raises(ValueError, match="snapshots_kept_max"):
        StorageConfig(snapshots_kept_max=0)


def test_a_failed_write_stops_the_storage_until_it_is_reopened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = open_storage(tmp_path)
    storage.save_ready(Ready(entries=[Entry(1, 1), Entry(1, 2)], hard_state=HardState(1, 1, 2)))

    def failing_write(self: AppendFile, parts: object) -> None:
        raise OSError(errno.EIO, "injected I/O error")

    monkeypatch.setattr(AppendFile, "write_parts", failing_write)
    with pytest.raises(OSError, match="injected"):
        storage.save_ready(Ready(entries=[Entry(1, 3)]))
    monkeypatch.undo()
    with pytest.raises(StorageFailedError, match="appending to the WAL failed"):
        storage.save_ready(Ready(entries=[Entry(1, 3)]))
    with pytest.raises(StorageFailedError):
        storage.sync()
    storage.close()
    with open_storage(tmp_path) as storage:
        assert storage.last_index == 2
        storage.save_ready(Ready(entries=[Entry(1, 3)]))


def test_a_commit_index_beyond_the_recovered_log_is_corruption(tmp_path: Path) -> None:
    with open_storage(tmp_path) as storage:
        storage.save_ready(Ready(entries=[Entry(1, i) for i in range(1, 6)], hard_state=HardState(1, 1, 5)))
        (segment,) = storage.segment_paths()
    # Lose the entries but keep the hard state after them: what a reordering disk could do.
    data = segment.read_bytes()
    records = scan_records(data, segment, tail_may_be_torn=False, seed=record_seed_of(segment)).records
    kept = b"".join(data[r.offset : r.payload_end] for r in records if r.type != RecordType.ENTRIES)
    segment.write_bytes(kept)
    with pytest.raises(StorageCorruptionError, match="commit index 5 is beyond the last recovered index 0"):
        open_storage(tmp_path)


# ---- model-based property test ----------------------------------------------------------------


@dataclass
class Model:
    """What a node's disk must hold, computed the simple way."""

    hard_state: HardState = HardState()
    snapshot: Snapshot | None = None
    entries: list[Entry] = field(default_factory=list)

    @property
    def base(self) -> int:
        return self.snapshot.meta.index if self.snapshot is not None else 0

    @property
    def last(self) -> int:
        return self.base + len(self.entries)

    def restored(self) -> RestoredState:
        return RestoredState(self.hard_state, self.snapshot, tuple(self.entries))


_append = st.tuples(
    st.just("append"), st.integers(0, 6), st.integers(1, 8), st.integers(0, 120), st.booleans()
)
_hard_state = st.tuples(st.just("hard_state"), st.integers(0, 1), st.integers(0, 3), st.floats(0, 1))
_install = st.tuples(st.just("install"), st.integers(0, 10), st.integers(0, 3))
_app_snapshot = st.tuples(st.just("app_snapshot"), st.floats(0, 1), st.booleans())
_compact = st.tuples(st.just("compact"), st.floats(0, 1))
_reopen = st.tuples(st.just("reopen"))
_operations = st.lists(
    st.one_of(_append, _append, _hard_state, _install, _app_snapshot, _compact, _reopen), max_size=40
)


def _run_operation(storage: NodeStorage, model: Model, op: tuple[object, ...], rng: random.Random) -> None:
    name = op[0]
    term = max(model.hard_state.term, 1)
    commit = model.hard_state.commit
    if name == "append":
        _, back, count, size, with_hard_state = op
        assert isinstance(back, int) and isinstance(count, int) and isinstance(size, int)
        first = max(model.base + 1, commit + 1, model.last + 1 - back)
        new = [Entry(term, i, EntryKind.NORMAL, rng.randbytes(size)) for i in range(first, first + count)]
        hard_state = None
        if with_hard_state:
            hard_state = HardState(term, model.hard_state.vote, rng.randint(commit, new[-1].index))
        storage.save_ready(Ready(entries=new, hard_state=hard_state))
        model.entries = model.entries[: first - model.base - 1] + new
        model.hard_state = hard_state or model.hard_state
    elif name == "hard_state":
        _, bump, vote, fraction = op
        assert isinstance(bump, int) and isinstance(vote, int) and isinstance(fraction, float)
        new_commit = commit + int(fraction * (max(model.last, model.base) - commit))
        model.hard_state = HardState(model.hard_state.term + bump, vote, new_commit)
        storage.save_ready(Ready(hard_state=model.hard_state))
    elif name == "install":
        _, ahead, count = op
        assert isinstance(ahead, int) and isinstance(count, int)
        index = max(model.base, commit) + 1 + ahead
        snapshot = Snapshot(SnapshotMeta(index, term + 1, CONF), rng.randbytes(rng.randint(0, 300)))
        new = [Entry(term + 1, i, EntryKind.NORMAL, b"i%d" % i) for i in range(index + 1, index + 1 + count)]
        hard_state = HardState(term + 1, 0, index)
        storage.save_ready(Ready(snapshot=snapshot, entries=new, hard_state=hard_state))
        model.snapshot, model.entries, model.hard_state = snapshot, new, hard_state
    elif name == "app_snapshot":
        _, fraction, then_compact = op
        assert isinstance(fraction, float)
        top = min(commit, model.last)
        if top <= model.base:
            return
        index = model.base + 1 + int(fraction * (top - model.base - 1))
        entry_term = model.entries[index - model.base - 1].term
        snapshot = Snapshot(SnapshotMeta(index, entry_term, CONF), b"app@%d" % index)
        storage.save_snapshot(snapshot)
        model.entries = model.entries[index - model.base :]
        model.snapshot = snapshot
        if then_compact:
            storage.compact(index)
    elif name == "compact":
        _, fraction = op
        assert isinstance(fraction, float)
        storage.compact(int(fraction * model.base))
    else:
        raise AssertionError(f"unknown operation {op}")
    assert storage.last_index == model.last
    assert storage.hard_state == model.hard_state


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    operations=_operations,
    segment_bytes_max=st.sampled_from([512, 900, 4096, 1 << 20]),
    seed=st.integers(0, 2**32),
)
def test_random_histories_restore_exactly_what_the_model_says(
    operations: list[tuple[object, ...]], segment_bytes_max: int, seed: int
) -> None:
    rng = random.Random(seed)
    config = StorageConfig(fsync=FsyncPolicy.NEVER, segment_bytes_max=segment_bytes_max)
    model = Model()
    with tempfile.TemporaryDirectory() as directory:
        storage = NodeStorage.open(directory, cluster_id="model", node_id=1, config=config)
        try:
            for op in operations:
                if op[0] == "reopen":
                    storage.close()
                    storage = NodeStorage.open(directory, cluster_id="model", node_id=1, config=config)
                    assert storage.restored_state() == model.restored()
                else:
                    _run_operation(storage, model, op, rng)
        finally:
            storage.close()
        with NodeStorage.open(directory, cluster_id="model", node_id=1, config=config) as storage:
            assert storage.restored_state() == model.restored()
            assert storage.recovery_notes == ()
            # Segments before the newest snapshot's index that compaction could drop are
            # the only ones allowed to linger; the rest of the WAL is what replay needs.
            assert len(storage.snapshot_paths()) <= config.snapshots_kept_max


# ---- a Raft cluster that persists through NodeStorage -----------------------------------------


def _encode_state(values: list[bytes]) -> bytes:
    return json.dumps([v.hex() for v in values]).encode()


def _decode_state(data: bytes) -> list[bytes]:
    return [bytes.fromhex(v) for v in json.loads(data)]


class DurableNode:
    """A RaftCore, its NodeStorage, and an application whose state is the list of applied values."""

    def __init__(self, node_id: int, data_dir: Path, seed: int) -> None:
        config = StorageConfig(fsync=FsyncPolicy.NEVER, segment_bytes_max=2048)
        self.storage = NodeStorage.open(data_dir, cluster_id="e2e", node_id=node_id, config=config)
        restored = self.storage.restored_state()
        self.values = _decode_state(restored.snapshot.data) if restored.snapshot is not None else []
        raft_config = RaftConfig(node_id=node_id, initial_conf=CONF)
        self.core = RaftCore(raft_config, restored, random.Random(seed))

    def process_ready(self, outbox: list[Message]) -> None:
        while self.core.has_ready():
            rd = self.core.ready()
            self.storage.save_ready(rd)
            if rd.snapshot is not None:
                self.values = _decode_state(rd.snapshot.data)
            outbox.extend(rd.messages)
            self.values.extend(e.data for e in rd.committed_entries if e.kind == EntryKind.NORMAL)
            self.core.advance(rd)

    def take_snapshot(self) -> None:
        index = self.core.applied_index
        self.core.compact(index, _encode_state(self.values))
        snapshot = self.core.snapshot
        assert snapshot is not None
        self.storage.save_snapshot(snapshot)
        self.storage.compact(index)


class DurableCluster:
    def __init__(self, root: Path, size: int = 3) -> None:
        self.root = root
        self.restarts = 0
        self.nodes = {
            node_id: DurableNode(node_id, root / f"n{node_id}", node_id) for node_id in range(1, size + 1)
        }
        self.down: set[int] = set()
        self.queue: list[Message] = []

    def deliver_all(self) -> None:
        for _ in range(1000):
            for node_id in sorted(self.nodes):
                if node_id not in self.down:
                    self.nodes[node_id].process_ready(self.queue)
            if not self.queue:
                return
            batch, self.queue = self.queue, []
            for msg in batch:
                if msg.recipient not in self.down and msg.sender not in self.down:
                    self.nodes[msg.recipient].core.step(msg)
        raise AssertionError("network did not go quiet")

    def tick_until(self, done: object, ticks_max: int = 500) -> None:
        assert callable(done)
        for _ in range(ticks_max):
            if done():
                return
            for node_id in sorted(self.nodes):
                if node_id not in self.down:
                    self.nodes[node_id].core.tick()
            self.deliver_all()
        raise AssertionError("condition not reached")

    def leader(self) -> int:
        def one_leader() -> bool:
            return len(self._leaders()) == 1

        self.tick_until(one_leader)
        return self._leaders()[0]

    def _leaders(self) -> list[int]:
        return [i for i, n in self.nodes.items() if i not in self.down and n.core.role == Role.LEADER]

    def propose(self, values: list[bytes]) -> None:
        for value in values:
            self.nodes[self.leader()].core.propose(value)
            self.deliver_all()

    def crash(self, node_id: int) -> None:
        self.nodes[node_id].storage.close()
        self.down.add(node_id)
        self.queue = [m for m in self.queue if node_id not in (m.sender, m.recipient)]

    def restart(self, node_id: int) -> DurableNode:
        self.restarts += 1
        node = DurableNode(node_id, self.root / f"n{node_id}", 100 * self.restarts + node_id)
        self.nodes[node_id] = node
        self.down.discard(node_id)
        return node

    def converged(self, expected: list[bytes]) -> bool:
        return all(self.nodes[i].values == expected for i in self.nodes if i not in self.down)


def test_a_cluster_persisting_through_node_storage_survives_crashes_and_rejoins(tmp_path: Path) -> None:
    cluster = DurableCluster(tmp_path)
    expected = [b"v%d" % i for i in range(20)]
    cluster.propose(expected)
    assert cluster.converged(expected)

    # A follower crashes; the others move on and compact their logs past where it stopped.
    leader = cluster.leader()
    follower = next(i for i in cluster.nodes if i != leader)
    last_before_crash = cluster.nodes[follower].core.log.last_index
    cluster.crash(follower)
    more = [b"w%d" % i for i in range(30)]
    cluster.propose(more)
    expected += more
    for node_id in cluster.nodes:
        if node_id not in cluster.down:
            cluster.nodes[node_id].take_snapshot()
            assert len(cluster.nodes[node_id].storage.segment_paths()) <= 2

    # It restarts from its own disk with its log, then needs the leader's snapshot.
    node = cluster.restart(follower)
    assert node.core.log.last_index == last_before_crash
    assert node.storage.restored_state().hard_state.term >= 1
    cluster.tick_until(lambda: cluster.converged(expected))
    installed = node.storage.snapshot_meta
    assert installed is not None and installed.index > last_before_crash

    # Crash it again: now it restores from the installed snapshot plus the log after it.
    cluster.propose([b"x0", b"x1"])
    expected += [b"x0", b"x1"]
    cluster.crash(follower)
    node = cluster.restart(follower)
    restored = node.storage.restored_state()
    assert restored.snapshot is not None and restored.snapshot.meta == installed
    assert node.values == _decode_state(restored.snapshot.data)
    cluster.tick_until(lambda: cluster.converged(expected))

    # The leader crashes; a new one is elected; the old one rejoins with its log.
    old_leader = cluster.leader()
    cluster.crash(old_leader)
    new_leader = cluster.leader()
    assert new_leader != old_leader
    cluster.propose([b"y0", b"y1", b"y2"])
    expected += [b"y0", b"y1", b"y2"]
    cluster.restart(old_leader)
    cluster.tick_until(lambda: cluster.converged(expected))
    assert len(expected) == 55
    for node_id in cluster.nodes:
        cluster.nodes[node_id].storage.close()
