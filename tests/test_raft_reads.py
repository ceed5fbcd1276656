"""Linearizable reads: ReadIndex confirmed by a heartbeat round, deferral until a new leader
commits its no-op, stale leaders, followers, and opt-in lease reads."""

from __future__ import annotations

from typing import Any

import pytest

from consensus.config import RaftConfig
from consensus.errors import NotLeaderError
from consensus.messages import ConfState, MessageType, Role
from tests.raft_harness import Cluster
from tests.raft_scenarios_util import Holder, sent_since

MT = MessageType


def _stable_cluster(n: int = 3, **config: Any) -> tuple[Cluster, int]:
    cluster = Cluster(n, **config)
    leader = cluster.elect()
    cluster.tick(3)
    return cluster, leader


def _read_ids(cluster: Cluster, node_id: int) -> list[bytes]:
    return [r.request_id for r in cluster.records[node_id].read_states]


def test_read_index_waits_for_a_quorum_heartbeat_round_and_uses_the_commit_at_request_time() -> None:
    cluster, leader = _stable_cluster(3)
    core = cluster.cores[leader]
    holder = Holder(cluster, lambda m: m.type == MT.HEARTBEAT_RESPONSE).install()
    commit_at_request = core.commit_index
    mark = len(cluster.sent)
    core.read_index(b"r1")
    cluster.deliver_all()
    heartbeats = sent_since(cluster, mark, MT.HEARTBEAT, sender=leader)
    assert sorted(m.recipient for m in heartbeats) == [i for i in cluster.cores if i != leader]
    assert cluster.records[leader].read_states == []
    # Writes commit meanwhile; the read still answers with the index of its request time.
    cluster.propose(leader, b"later-write")
    assert core.commit_index == commit_at_request + 1
    assert cluster.records[leader].read_states == []
    assert len(holder.held) == 2
    holder.release(lambda m: m is holder.held[0])  # one follower + the leader: a quorum of 3
    assert [(r.request_id, r.index) for r in cluster.records[leader].read_states] == [
        (b"r1", commit_at_request)
    ]
    holder.release()
    assert len(cluster.records[leader].read_states) == 1  # answered once


def test_a_read_needs_a_majority_in_a_five_node_cluster() -> None:
    cluster, leader = _stable_cluster(5)
    holder = Holder(cluster, lambda m: m.type == MT.HEARTBEAT_RESPONSE).install()
    cluster.cores[leader].read_index(b"r")
    cluster.deliver_all()
    assert len(holder.held) == 4
    holder.release(lambda m: m is holder.held[0])
    assert cluster.records[leader].read_states == []  # 2 of 5 is not a quorum
    holder.release(lambda m: m is holder.held[0])
    assert _read_ids(cluster, leader) == [b"r"]


def test_a_new_leader_defers_reads_until_its_noop_commits() -> None:
    cluster, old = _stable_cluster(3)
    cluster.propose(old, b"w1")
    cluster.tick(2)
    holder = Holder(cluster, lambda m: m.type == MT.APPEND_RESPONSE).install()
    cluster.crash(old)
    new = cluster.elect()
    core = cluster.cores[new]
    noop_index = core.log.last_index
    assert core.commit_index < noop_index  # its no-op is not acknowledged yet
    core.read_index(b"early")
    cluster.tick(3)  # heartbeat rounds are answered, but the read must wait for the no-op
    assert cluster.records[new].read_states == []
    holder.release()
    cluster.drop_filter = None
    cluster.tick_until(lambda: bool(cluster.records[new].read_states), 5)
    assert [(r.request_id, r.index) for r in cluster.records[new].read_states] == [(b"early", noop_index)]


def test_an_isolated_stale_leader_never_completes_a_read() -> None:
    cluster, old = _stable_cluster(5)
    cluster.isolate(old)
    cluster.cores[old].read_index(b"stale")
    cluster.deliver_all()
    others = {i for i in cluster.cores if i != old}
    cluster.tick_until(lambda: any(cluster.cores[i].role == Role.LEADER for i in others), 100)
    new = next(i for i in others if cluster.cores[i].role == Role.LEADER)
    cluster.propose(new, b"write-the-stale-leader-cannot-see")
    cluster.tick(20)
    assert cluster.cores[old].role != Role.LEADER  # CheckQuorum
    cluster.heal()
    cluster.tick(10)
    assert cluster.records[old].read_states == []


def test_read_on_a_follower_raises_not_leader_with_a_hint() -> None:
    cluster, leader = _stable_cluster(3)
    follower = next(i for i in cluster.cores if i != leader)
    with pytest.raises(NotLeaderError) as info:
        cluster.cores[follower].read_index(b"r")
    assert info.value.leader_id == leader
    assert f"node {leader}" in str(info.value)
    fresh = Cluster(3)  # nobody has led yet: no hint
    with pytest.raises(NotLeaderError) as info:
        fresh.cores[1].read_index(b"r")
    assert info.value.leader_id == 0


def test_lease_read_is_served_without_a_round_trip_while_the_lease_holds() -> None:
    cluster, leader = _stable_cluster(3, lease_read=True)
    core = cluster.cores[leader]
    holder = Holder(cluster, lambda m: m.type in (MT.HEARTBEAT_RESPONSE, MT.APPEND_RESPONSE)).install()
    mark = len(cluster.sent)
    core.read_index(b"lease-0")
    cluster.process_ready(leader)
    assert _read_ids(cluster, leader) == [b"lease-0"]
    assert sent_since(cluster, mark) == []  # no heartbeat round was needed
    # Without acknowledgements the lease runs out after election timeout - drift ticks.
    window = core.config.election_timeout_ticks - core.config.lease_clock_drift_ticks
    served_at: list[int] = []
    for elapsed in range(1, window + 2):
        cluster.tick(1, nodes={leader})
        assert core.role == Role.LEADER
        before = len(cluster.records[leader].read_states)
        core.read_index(b"lease-%d" % elapsed)
        cluster.process_ready(leader)
        if len(cluster.records[leader].read_states) > before:
            served_at.append(elapsed)
    assert served_at == list(range(1, window)), served_at
    # The unserved reads fall back to ReadIndex and complete once a quorum answers.
    holder.release()
    cluster.drop_filter = None
    cluster.tick(1, nodes={leader})
    assert _read_ids(cluster, leader) == [b"lease-%d" % k for k in range(window + 2)]


def test_lease_read_without_check_quorum_is_rejected_by_the_config() -> None:
    with pytest.raises(ValueError, match="lease_read requires check_quorum"):
        RaftConfig(node_id=1, initial_conf=ConfState((1, 2, 3)), lease_read=True, check_quorum=False)
    RaftConfig(node_id=1, initial_conf=ConfState((1, 2, 3)), lease_read=True, check_quorum=True)
