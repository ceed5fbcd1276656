"""Leadership transfer (dissertation 3.10): to an up-to-date node, to a lagging node, while
proposals arrive, to a node that is down, and to a node that cannot lead."""

from __future__ import annotations

from typing import Any

import pytest

from consensus.errors import InvalidRequestError, NotLeaderError, ProposalDroppedError
from consensus.messages import Message, MessageType, Role
from tests.raft_harness import Cluster
from tests.raft_scenarios_util import Holder, applied_normal_data, entry_ids, log_entries, sent_since

MT = MessageType


def _stable_cluster(n: int = 3, **config: Any) -> tuple[Cluster, int]:
    cluster = Cluster(n, **config)
    leader = cluster.elect()
    cluster.tick(3)
    return cluster, leader


def test_transfer_to_an_up_to_date_follower_makes_it_leader_in_the_next_term_at_once() -> None:
    cluster, old = _stable_cluster(3)
    cluster.propose(old, b"before")
    cluster.tick(1)
    term = cluster.cores[old].term
    target = next(i for i in cluster.cores if i != old)
    mark = len(cluster.sent)
    cluster.cores[old].transfer_leadership(target)
    cluster.deliver_all()  # no tick: TIMEOUT_NOW, a forced campaign and its votes suffice
    assert [m.recipient for m in sent_since(cluster, mark, MT.TIMEOUT_NOW)] == [target]
    assert cluster.leaders() == [target]
    assert cluster.cores[target].term == term + 1
    assert cluster.cores[old].role == Role.FOLLOWER and cluster.cores[old].leader_id == target
    cluster.propose(target, b"after")
    assert all(applied_normal_data(cluster, i) == [b"before", b"after"] for i in cluster.cores)


def test_transfer_to_a_lagging_follower_catches_it_up_before_timeout_now() -> None:
    cluster, old = _stable_cluster(3)
    target = next(i for i in cluster.cores if i != old)
    cluster.isolate(target)
    for k in range(30):
        cluster.propose(old, b"w%d" % k)
    cluster.heal()
    leader_last = cluster.cores[old].log.last_index
    assert cluster.cores[target].log.last_index < leader_last
    target_last_at_timeout_now: list[int] = []

    def observe(msg: Message) -> bool:
        if msg.type == MT.TIMEOUT_NOW:
            target_last_at_timeout_now.append(cluster.cores[msg.recipient].log.last_index)
        return False

    cluster.drop_filter = observe
    cluster.cores[old].transfer_leadership(target)
    cluster.deliver_all()
    assert target_last_at_timeout_now == [leader_last]  # sent once, and only when caught up
    assert cluster.leaders() == [target]
    cluster.propose(target, b"new-leader")
    assert all(applied_normal_data(cluster, i)[-1] == b"new-leader" for i in cluster.cores)
    reference = entry_ids(log_entries(cluster.cores[target]))
    assert all(entry_ids(log_entries(c)) == reference for c in cluster.cores.values())


def test_proposals_are_dropped_while_a_transfer_is_under_way() -> None:
    cluster, old = _stable_cluster(3)
    target = next(i for i in cluster.cores if i != old)
    holder = Holder(cluster, lambda m: m.type == MT.TIMEOUT_NOW).install()  # keep it pending
    last = cluster.cores[old].log.last_index
    cluster.cores[old].transfer_leadership(target)
    cluster.deliver_all()
    assert len(holder.held) == 1
    assert cluster.cores[old].lead_transferee == target and cluster.leaders() == [old]
    with pytest.raises(ProposalDroppedError, match=f"transferred to node {target}"):
        cluster.cores[old].propose(b"x")
    with pytest.raises(ProposalDroppedError):
        cluster.cores[old].propose_batch([b"y", b"z"])
    assert cluster.cores[old].log.last_index == last
    cluster.cores[old].transfer_leadership(target)  # repeating the request is harmless
    cluster.deliver_all()
    holder.release()
    assert cluster.leaders() == [target]
    with pytest.raises(NotLeaderError) as info:
        cluster.cores[old].propose(b"x")
    assert info.value.leader_id == target


def test_a_lost_timeout_now_lets_the_transfer_abort_and_the_leader_resume() -> None:
    cluster, old = _stable_cluster(3)
    target = next(i for i in cluster.cores if i != old)
    holder = Holder(cluster, lambda m: m.type == MT.TIMEOUT_NOW).install()
    cluster.cores[old].transfer_leadership(target)
    cluster.deliver_all()
    holder.discard()
    cluster.tick_until(lambda: cluster.cores[old].lead_transferee == 0, 11)
    assert cluster.leaders() == [old]
    cluster.propose(old, b"resumed")
    assert all(applied_normal_data(cluster, i) == [b"resumed"] for i in cluster.cores)


def test_transfer_to_a_down_node_aborts_after_an_election_timeout() -> None:
    cluster, leader = _stable_cluster(3)
    target = next(i for i in cluster.cores if i != leader)
    cluster.crash(target)
    core = cluster.cores[leader]
    term = core.term
    core.transfer_leadership(target)
    timeout = core.config.election_timeout_ticks
    cluster.tick(timeout // 2)
    assert core.lead_transferee == target
    with pytest.raises(ProposalDroppedError):
        core.propose(b"too-early")
    cluster.tick_until(lambda: core.lead_transferee == 0, timeout // 2 + 1)
    assert cluster.leaders() == [leader] and core.term == term
    cluster.propose(leader, b"accepted-again")
    assert applied_normal_data(cluster, leader) == [b"accepted-again"]


def test_transfer_to_a_non_voter_or_unknown_node_is_invalid() -> None:
    cluster = Cluster(3, learners=(4,))
    leader = cluster.elect()
    cluster.tick(3)
    core = cluster.cores[leader]
    for bad in (4, 9):
        with pytest.raises(InvalidRequestError, match="not a voter"):
            core.transfer_leadership(bad)
    assert core.lead_transferee == 0
    core.transfer_leadership(leader)  # to itself: nothing to do
    assert core.lead_transferee == 0 and core.role == Role.LEADER
    follower = next(i for i in (1, 2, 3) if i != leader)
    with pytest.raises(NotLeaderError):
        cluster.cores[follower].transfer_leadership(leader)
    cluster.propose(leader, b"still-leading")
    assert applied_normal_data(cluster, 4) == [b"still-leading"]
