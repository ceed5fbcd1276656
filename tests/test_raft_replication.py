"""Log replication: batching, the bounded pipeline, fast back-off by term, progress states,
a lossy network with leader churn, and a partitioned stale leader."""

from __future__ import annotations

from typing import Any

from consensus.messages import EntryKind, MessageType, Role
from consensus.progress import ProgressState
from tests.raft_harness import Cluster
from tests.raft_scenarios_util import (
    Holder,
    RandomDrop,
    applied_normal_data,
    applied_state,
    assert_state_machine_safety,
    entry_ids,
    log_entries,
    sent_since,
)

MT = MessageType


def _stable_cluster(n: int = 3, **config: Any) -> tuple[Cluster, int]:
    cluster = Cluster(n, **config)
    leader = cluster.elect()
    cluster.tick(2)
    return cluster, leader


def _state(cluster: Cluster, leader: int, follower: int) -> ProgressState:
    progress = cluster.cores[leader].progress(follower)
    assert progress is not None
    return progress.state


def _assert_logs_equal(cluster: Cluster) -> None:
    nodes = cluster.live()
    reference = entry_ids(log_entries(cluster.cores[nodes[0]]))
    for node_id in nodes[1:]:
        assert entry_ids(log_entries(cluster.cores[node_id])) == reference, f"node {node_id} diverges"


def test_a_proposed_batch_travels_in_one_append_per_follower() -> None:
    cluster, leader = _stable_cluster()
    mark = len(cluster.sent)
    last = cluster.cores[leader].propose_batch([b"item-%d" % k for k in range(50)])
    cluster.deliver_all()
    carrying = sent_since(cluster, mark, MT.APPEND, sender=leader)
    carrying = [m for m in carrying if m.entries]
    assert sorted(m.recipient for m in carrying) == [i for i in cluster.cores if i != leader]
    assert all(len(m.entries) == 50 and m.entries[-1].index == last for m in carrying)
    assert all(cluster.cores[i].commit_index == last for i in cluster.cores)


def test_a_lagging_follower_is_caught_up_in_full_batches_bounded_by_count_and_bytes() -> None:
    cluster, leader = _stable_cluster(entries_per_append_max=16, append_bytes_max=100)
    lagging = next(i for i in cluster.cores if i != leader)
    cluster.isolate(lagging)
    for k in range(60):
        cluster.propose(leader, b"%04d" % k)  # 4 bytes each: the count bound (16) binds
    for _ in range(10):
        cluster.propose(leader, b"x" * 40)  # 40 bytes each: the byte bound (100) binds
    cluster.heal()
    mark = len(cluster.sent)
    last = cluster.cores[leader].log.last_index
    cluster.tick_until(lambda: cluster.cores[lagging].commit_index == last, max_ticks=30)
    appends = [m for m in sent_since(cluster, mark, MT.APPEND, leader, lagging) if m.entries]
    sizes = [len(m.entries) for m in appends]
    assert max(sizes) == 16
    assert all(sum(len(e.data) for e in m.entries) <= 100 or len(m.entries) == 1 for m in appends)
    # 60 small entries need 4 appends of 16 (rounding aside); 10 big ones need 5 of 2.
    assert len(appends) <= 4 + 5 + 2, sizes
    _assert_logs_equal(cluster)


def test_pipeline_to_a_silent_follower_is_bounded_by_appends_in_flight_max() -> None:
    cluster, leader = _stable_cluster(appends_in_flight_max=3, entries_per_append_max=1)
    slow = next(i for i in cluster.cores if i != leader)
    assert cluster.cores[leader].progress(slow).state == ProgressState.REPLICATE  # type: ignore[union-attr]
    holder = Holder(cluster, lambda m: m.recipient == slow).install()
    mark = len(cluster.sent)
    for k in range(10):
        cluster.propose(leader, b"p%d" % k)
    to_slow = [m for m in sent_since(cluster, mark, MT.APPEND, leader, slow) if m.entries]
    assert len(to_slow) == 3, [m.entries for m in to_slow]
    progress = cluster.cores[leader].progress(slow)
    assert progress is not None and progress.is_paused()
    # The other follower is a quorum with the leader: everything commits without `slow`.
    assert cluster.cores[leader].commit_index == cluster.cores[leader].log.last_index
    holder.release()
    holder.release()
    cluster.drop_filter = None
    cluster.tick_until(lambda: cluster.cores[slow].commit_index == cluster.cores[leader].commit_index, 20)
    _assert_logs_equal(cluster)
    assert applied_normal_data(cluster, slow) == [b"p%d" % k for k in range(10)]


def test_fast_back_off_repairs_a_long_divergent_tail_in_few_round_trips() -> None:
    cluster, old_leader = _stable_cluster(5)
    cluster.propose(old_leader, b"common")
    # The old leader, cut off, accepts 150 entries of its term that will never commit.
    cluster.isolate(old_leader)
    for k in range(150):
        cluster.cores[old_leader].propose(b"lost-%d" % k)
        cluster.deliver_all()
    others = {i for i in cluster.cores if i != old_leader}
    cluster.tick_until(lambda: any(cluster.cores[i].role == Role.LEADER for i in others))
    second = next(i for i in others if cluster.cores[i].role == Role.LEADER)
    for k in range(100):
        cluster.propose(second, b"kept-%d" % k)
    # A third leader starts probing the old leader right after its own (long) log, where the
    # old leader holds a different term: a per-entry back-off would walk back ~100 entries.
    cluster.crash(second)
    others.discard(second)
    cluster.tick_until(lambda: any(cluster.cores[i].role == Role.LEADER for i in others))
    third = next(i for i in others if cluster.cores[i].role == Role.LEADER)
    assert cluster.cores[old_leader].log.last_index > cluster.cores[third].log.last_index
    mark = len(cluster.sent)
    cluster.heal()
    last = cluster.cores[third].log.last_index
    cluster.tick_until(lambda: cluster.cores[old_leader].commit_index == last, max_ticks=30)
    rejections = [m for m in sent_since(cluster, mark, MT.APPEND_RESPONSE, sender=old_leader) if m.reject]
    assert 1 <= len(rejections) <= 3, len(rejections)
    _assert_logs_equal(cluster)
    applied = applied_normal_data(cluster, old_leader)
    assert applied == [b"common"] + [b"kept-%d" % k for k in range(100)]


def test_progress_goes_probe_then_replicate_and_back_to_probe_after_silence() -> None:
    cluster = Cluster(3)
    holder = Holder(cluster, lambda m: m.type == MT.APPEND_RESPONSE).install()
    leader = cluster.elect()
    core = cluster.cores[leader]
    followers = [i for i in cluster.cores if i != leader]
    for f in followers:  # a new leader does not know where the followers' logs match
        pr = core.progress(f)
        assert pr is not None and pr.state == ProgressState.PROBE and pr.is_paused()
    holder.release()
    for f in followers:
        pr = core.progress(f)
        assert pr is not None and pr.state == ProgressState.REPLICATE and pr.match == core.log.last_index
    # A follower whose appends go unanswered for an election timeout is probed again.
    silent = followers[0]
    holder.predicate = lambda m: m.type == MT.APPEND_RESPONSE and m.sender == silent
    cluster.isolate(silent)
    for k in range(5):
        cluster.propose(leader, b"e%d" % k)
    assert core.progress(silent).state == ProgressState.REPLICATE  # type: ignore[union-attr]
    cluster.heal()
    # Heartbeats get through, appends do not get answered. For fewer than an election
    # timeout's worth of heartbeat rounds the leader goes on streaming (the answers may only
    # be late, behind the fsync of a big entry); then it stops and probes.
    rounds, every = core.config.lost_append_rounds, core.config.heartbeat_interval_ticks
    assert rounds == -(-core.config.election_timeout_ticks // every) and rounds > 1
    cluster.tick((rounds - 1) * every)
    assert _state(cluster, leader, silent) == ProgressState.REPLICATE
    cluster.tick_until(lambda: core.progress(silent).state == ProgressState.PROBE, 2 * every)  # type: ignore[union-attr]
    mark = len(cluster.sent)
    cluster.tick(3)
    probes = sent_since(cluster, mark, MT.APPEND, leader, silent)
    assert 1 <= len(probes) <= 3  # one append per heartbeat round at most while probing
    assert all(m.index == probes[0].index for m in probes)
    assert _state(cluster, leader, silent) == ProgressState.PROBE
    holder.release()
    assert _state(cluster, leader, silent) == ProgressState.REPLICATE
    assert core.progress(silent).match == core.log.last_index  # type: ignore[union-attr]


def test_lossy_network_with_leader_churn_keeps_acknowledged_writes_exactly_once() -> None:
    cluster = Cluster(5, seed=7)
    drop = RandomDrop(0.25, seed=11)
    cluster.drop_filter = drop
    proposed: list[bytes] = []
    acknowledged: set[bytes] = set()
    leaders_seen: set[tuple[int, int]] = set()
    restore_at: dict[int, int] = {}
    counter = 0
    for tick in range(600):
        cluster.tick()
        for node_id, due in list(restore_at.items()):
            if tick >= due:
                del restore_at[node_id]
                if node_id in cluster.down:
                    cluster.restart(node_id)
                else:
                    cluster.heal()
        leaders = cluster.leaders()
        for leader in leaders:
            leaders_seen.add((leader, cluster.cores[leader].term))
        if leaders and tick % 2 == 0:
            leader = leaders[-1]
            value = b"w%d" % counter
            counter += 1
            cluster.cores[leader].propose(value)
            proposed.append(value)
        if tick % 60 == 30 and leaders and not restore_at:
            victim = leaders[-1]
            if tick % 120 == 30:
                cluster.crash(victim)
            else:
                cluster.isolate(victim)
            restore_at[victim] = tick + 25
        for node_id in cluster.live():  # a write is acknowledged once its leader applied it
            core = cluster.cores[node_id]
            if core.role == Role.LEADER:
                acknowledged.update(e.data for e in applied_state(cluster, node_id).values() if e.data)
        assert_state_machine_safety(cluster)
    cluster.drop_filter = None
    cluster.heal()
    for node_id in list(cluster.down):
        cluster.restart(node_id)
    leader = cluster.elect(max_ticks=100)
    cluster.propose(leader, b"final")
    last = cluster.cores[leader].log.last_index
    cluster.tick_until(lambda: all(cluster.cores[i].applied_index == last for i in cluster.cores), 100)

    assert drop.dropped > 500 and len({term for _, term in leaders_seen}) >= 4
    sequences = {i: sorted(applied_state(cluster, i).items()) for i in cluster.cores}
    assert all(seq == sequences[1] for seq in sequences.values())
    final = applied_normal_data(cluster, 1)
    assert len(final) == len(set(final)), "a proposal was applied twice"
    assert len(acknowledged) > 100
    assert acknowledged <= set(final)
    assert set(final) <= set(proposed) | {b"final"}
    assert_state_machine_safety(cluster)


def test_partitioned_stale_leader_cannot_commit_steps_down_and_is_overwritten() -> None:
    cluster, old = _stable_cluster(5)
    buddy = next(i for i in cluster.cores if i != old)
    majority = {i for i in cluster.cores if i not in (old, buddy)}
    cluster.partition({old, buddy}, majority)
    commit_before = cluster.cores[old].commit_index
    for k in range(3):
        cluster.propose(old, b"stale-%d" % k)
    assert cluster.cores[buddy].log.last_index == cluster.cores[old].log.last_index  # replicated...
    assert cluster.cores[old].commit_index == commit_before  # ...but 2 of 5 is no quorum
    cluster.tick_until(lambda: cluster.cores[old].role != Role.LEADER, max_ticks=25)  # CheckQuorum
    assert cluster.cores[old].commit_index == commit_before
    cluster.tick_until(lambda: any(cluster.cores[i].role == Role.LEADER for i in majority), 100)
    new = next(i for i in majority if cluster.cores[i].role == Role.LEADER)
    cluster.propose(new, b"fresh")
    cluster.heal()
    last = cluster.cores[new].log.last_index
    cluster.tick_until(lambda: all(cluster.cores[i].applied_index == last for i in cluster.cores), 50)
    assert cluster.leaders() == [new]
    _assert_logs_equal(cluster)
    for node_id in cluster.cores:
        assert not any(e.data.startswith(b"stale") for e in log_entries(cluster.cores[node_id]))
        assert applied_normal_data(cluster, node_id) == [b"fresh"]
        assert all(
            e.kind != EntryKind.NORMAL or e.data == b"fresh" for e in applied_state(cluster, node_id).values()
        )


def test_a_commit_is_broadcast_at_once_by_default() -> None:
    cluster, leader = _stable_cluster()
    mark = len(cluster.sent)
    last = cluster.cores[leader].propose_batch([b"x"])
    cluster.deliver_all()
    empty = [m for m in sent_since(cluster, mark, MT.APPEND, sender=leader) if not m.entries]
    assert sorted(m.recipient for m in empty) == [i for i in cluster.cores if i != leader]
    assert all(m.commit == last for m in empty)
    assert all(cluster.cores[i].commit_index == last for i in cluster.cores)


def test_without_commit_broadcast_followers_learn_the_commit_from_the_next_message() -> None:
    cluster, leader = _stable_cluster(broadcast_commit=False)
    followers = [i for i in cluster.cores if i != leader]
    mark = len(cluster.sent)
    first = cluster.cores[leader].propose_batch([b"first"])
    cluster.deliver_all()
    assert cluster.cores[leader].commit_index == first
    # Only the entry's own appends went out: no empty append per commit.
    appends = sent_since(cluster, mark, MT.APPEND, sender=leader)
    assert len(appends) == len(followers) and all(m.entries for m in appends)
    assert all(cluster.cores[i].commit_index < first for i in followers)
    # The next append carries the commit index...
    second = cluster.cores[leader].propose_batch([b"second"])
    cluster.deliver_all()
    assert all(cluster.cores[i].commit_index >= first for i in followers)
    assert all(cluster.cores[i].commit_index < second for i in followers)
    # ... and so does the next heartbeat, at most heartbeat_interval_ticks later.
    cluster.tick(1)
    cluster.deliver_all()
    assert all(cluster.cores[i].commit_index == second for i in cluster.cores)
    assert applied_normal_data(cluster, followers[0]) == applied_normal_data(cluster, leader)
