"""Snapshots: a follower behind the leader's compacted log catches up through a chunked
InstallSnapshot, a lost chunk is resent, and a node restarts from a snapshot plus entries."""

from __future__ import annotations

import random
from typing import Any

from consensus.config import RaftConfig
from consensus.core import RaftCore
from consensus.messages import (
    ConfState,
    Entry,
    EntryKind,
    HardState,
    Message,
    MessageType,
    RestoredState,
    Snapshot,
    SnapshotMeta,
)
from consensus.progress import ProgressState
from tests.raft_harness import Cluster
from tests.raft_scenarios_util import applied_normal_data, entry_ids, log_entries, sent_since

MT = MessageType
CHUNK = 256


def _lagging_follower_behind_a_snapshot(entries: int = 300, **config: Any) -> tuple[Cluster, int, int, bytes]:
    """A 3-node cluster whose leader compacted its log past everything ``lagging`` holds."""
    cluster = Cluster(3, snapshot_chunk_bytes_max=CHUNK, **config)
    leader = cluster.elect()
    cluster.tick(2)
    lagging = next(i for i in cluster.cores if i != leader)
    cluster.isolate(lagging)
    for k in range(entries):
        cluster.propose(leader, b"value-%03d" % k)
    core = cluster.cores[leader]
    assert core.applied_index == core.log.last_index
    state = b"|".join(applied_normal_data(cluster, leader))
    core.compact(core.applied_index, state)
    assert core.log.first_index == core.applied_index + 1
    return cluster, leader, lagging, state


def _chunks(messages: list[Message]) -> list[tuple[int, int, bool]]:
    return [(m.chunk_offset, len(m.chunk_data), m.chunk_last) for m in messages]


def test_far_behind_follower_catches_up_through_a_chunked_snapshot() -> None:
    cluster, leader, lagging, state = _lagging_follower_behind_a_snapshot()
    snap_index = cluster.cores[leader].log.snapshot_index
    mark = len(cluster.sent)
    cluster.heal()
    cluster.tick_until(lambda: cluster.cores[lagging].commit_index == cluster.cores[leader].commit_index, 20)

    snaps = sent_since(cluster, mark, MT.SNAPSHOT, leader, lagging)
    expected_chunks = -(-len(state) // CHUNK)
    assert expected_chunks >= 5
    assert _chunks(snaps) == [
        (k * CHUNK, min(CHUNK, len(state) - k * CHUNK), k == expected_chunks - 1)
        for k in range(expected_chunks)
    ]
    assert all(m.snapshot_size == len(state) for m in snaps)
    assert {m.snapshot_meta.index for m in snaps if m.snapshot_meta is not None} == {snap_index}
    # The follower's Ready handed the snapshot to its driver exactly once.
    record = cluster.records[lagging]
    assert record.snapshots_installed == 1
    assert record.disk.snapshot is not None and record.disk.snapshot.data == state
    follower = cluster.cores[lagging]
    assert follower.snapshot is not None and follower.snapshot.meta.index == snap_index
    assert follower.log.first_index == snap_index + 1
    assert entry_ids(log_entries(follower)) == entry_ids(log_entries(cluster.cores[leader]))

    cluster.propose(leader, b"after-snapshot")
    cluster.tick_until(lambda: follower.applied_index == cluster.cores[leader].applied_index, 5)
    assert applied_normal_data(cluster, lagging) == [b"after-snapshot"]
    assert cluster.cores[leader].progress(lagging).state == ProgressState.REPLICATE  # type: ignore[union-attr]


def test_after_installing_a_snapshot_the_follower_is_streamed_to_at_once() -> None:
    # Once the follower confirmed the snapshot and the probe that follows it, the leader
    # knows exactly where its log matches: it should replicate (not keep probing) and send
    # the next proposal immediately, not a heartbeat later.
    cluster, leader, lagging, _ = _lagging_follower_behind_a_snapshot()
    cluster.heal()
    cluster.tick_until(lambda: cluster.cores[lagging].commit_index == cluster.cores[leader].commit_index, 20)
    progress = cluster.cores[leader].progress(lagging)
    assert progress is not None
    assert progress.state == ProgressState.REPLICATE, progress
    mark = len(cluster.sent)
    cluster.propose(leader, b"after-snapshot")
    assert [m for m in sent_since(cluster, mark, MT.APPEND, leader, lagging) if m.entries]
    assert applied_normal_data(cluster, lagging) == [b"after-snapshot"]


def test_a_lost_snapshot_chunk_is_resent_and_the_snapshot_installs_once() -> None:
    cluster, leader, lagging, state = _lagging_follower_behind_a_snapshot()
    lost_offset = 2 * CHUNK
    lost: list[Message] = []

    def lose_third_chunk_once(msg: Message) -> bool:
        if msg.type == MT.SNAPSHOT and msg.chunk_offset == lost_offset and not lost:
            lost.append(msg)
            return True
        return False

    cluster.drop_filter = lose_third_chunk_once
    mark = len(cluster.sent)
    cluster.heal()
    cluster.tick_until(lambda: bool(lost), 10)
    # The transfer stalls at the gap: nothing is installed, the leader is still sending it.
    assert cluster.records[lagging].snapshots_installed == 0
    progress = cluster.cores[leader].progress(lagging)
    assert progress is not None and progress.state == ProgressState.SNAPSHOT
    cluster.tick_until(lambda: cluster.records[lagging].snapshots_installed == 1, 10)
    cluster.tick_until(lambda: cluster.cores[lagging].commit_index == cluster.cores[leader].commit_index, 10)

    offsets = [m.chunk_offset for m in sent_since(cluster, mark, MT.SNAPSHOT, leader, lagging)]
    assert offsets.count(lost_offset) >= 2
    assert offsets.count(0) == 1  # resumed at the gap, not restarted from scratch
    assert cluster.records[lagging].snapshots_installed == 1
    installed = cluster.records[lagging].disk.snapshot
    assert installed is not None and installed.data == state
    cluster.propose(leader, b"next")
    cluster.tick_until(lambda: applied_normal_data(cluster, lagging) == [b"next"], 5)


def test_restart_from_a_disk_holding_a_snapshot_and_later_entries() -> None:
    cluster, leader, lagging, _ = _lagging_follower_behind_a_snapshot(entries=120)
    cluster.heal()
    cluster.tick_until(lambda: cluster.records[lagging].snapshots_installed == 1, 20)
    for k in range(5):
        cluster.propose(leader, b"tail-%d" % k)
    cluster.tick(2)
    disk = cluster.records[lagging].disk
    assert disk.snapshot is not None and len(disk.entries) >= 5
    before = cluster.cores[lagging]
    term, vote, last, commit = before.term, before.vote, before.log.last_index, before.commit_index

    cluster.crash(lagging)
    restarted = cluster.restart(lagging)
    assert restarted.snapshot == disk.snapshot
    assert (restarted.term, restarted.vote) == (term, vote)
    assert restarted.log.snapshot_index == disk.snapshot.meta.index
    assert (restarted.log.last_index, restarted.commit_index) == (last, commit)
    assert restarted.applied_index == disk.snapshot.meta.index  # the driver restores the state, then replays
    assert entry_ids(log_entries(restarted)) == entry_ids(disk.entries)

    cluster.tick(2)
    assert restarted.applied_index == commit
    assert applied_normal_data(cluster, lagging)[-5:] == [b"tail-%d" % k for k in range(5)]
    cluster.propose(leader, b"after-restart")
    assert applied_normal_data(cluster, lagging)[-1] == b"after-restart"
    assert entry_ids(log_entries(restarted)) == entry_ids(log_entries(cluster.cores[leader]))


def test_restored_snapshot_config_and_overlapping_entries() -> None:
    # The snapshot's configuration (4 voters) wins over the initial one, and persisted
    # entries the snapshot already covers are ignored.
    snap_conf = ConfState((1, 2, 3, 4))
    snapshot = Snapshot(SnapshotMeta(index=10, term=2, conf=snap_conf), b"state@10")
    entries = tuple(Entry(2 if i <= 11 else 3, i, EntryKind.NORMAL, b"e%d" % i) for i in range(8, 14))
    restored = RestoredState(HardState(term=3, vote=1, commit=12), snapshot, entries)
    core = RaftCore(RaftConfig(node_id=2, initial_conf=ConfState((1, 2, 3))), restored, random.Random(0))
    assert core.conf == snap_conf
    assert (core.log.first_index, core.log.last_index, core.commit_index, core.applied_index) == (
        11,
        13,
        12,
        10,
    )
    assert core.log.term_at(10) == 2 and core.log.term_at(13) == 3
    assert (core.term, core.vote) == (3, 1)
    rd = core.ready()
    assert rd.snapshot is None and not rd.entries  # nothing to persist again
    assert [e.index for e in rd.committed_entries] == [11, 12]
    core.advance(rd)
