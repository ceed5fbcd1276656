"""Election scenarios: first election, re-election, no leader without quorum, PreVote,
CheckQuorum and vote stickiness."""

from __future__ import annotations

from consensus.messages import MessageType, Role
from tests.raft_harness import Cluster


def test_first_election_elects_exactly_one_leader_that_everyone_follows() -> None:
    cluster = Cluster(3)
    leader = cluster.elect()
    cluster.tick(3)
    terms = {c.term for c in cluster.cores.values()}
    assert len(terms) == 1
    assert all(c.leader_id == leader for c in cluster.cores.values())
    # The new leader's no-op of its term is committed everywhere.
    assert all(c.commit_index == 1 for c in cluster.cores.values())


def test_single_node_cluster_elects_itself_and_commits() -> None:
    cluster = Cluster(1)
    leader = cluster.elect()
    index = cluster.propose(leader, b"alone")
    assert cluster.cores[leader].commit_index == index
    assert cluster.applied_data(leader) == [b"alone"]


def test_reelection_after_leader_is_lost() -> None:
    cluster = Cluster(3)
    first = cluster.elect()
    old_term = cluster.cores[first].term
    cluster.crash(first)
    second = cluster.elect()
    assert second != first
    assert cluster.cores[second].term > old_term
    cluster.propose(second, b"after-failover")
    assert all(cluster.applied_data(i)[-1:] == [b"after-failover"] for i in cluster.live())


def test_no_leader_without_a_quorum_and_prevote_keeps_terms_stable() -> None:
    cluster = Cluster(3)
    leader = cluster.elect()
    term = cluster.cores[leader].term
    survivor = next(i for i in cluster.cores if i != leader)
    for node_id in cluster.cores:
        if node_id != survivor:
            cluster.crash(node_id)
    cluster.tick(200)
    assert cluster.leaders() == []
    # PreVote: the lone node never wins a pre-vote, so it never inflates its term.
    assert cluster.cores[survivor].term == term
    assert cluster.cores[survivor].role == Role.PRE_CANDIDATE


def test_rejoining_partitioned_node_does_not_disrupt_the_leader() -> None:
    cluster = Cluster(3)
    leader = cluster.elect()
    term = cluster.cores[leader].term
    outsider = next(i for i in cluster.cores if i != leader)
    cluster.isolate(outsider)
    cluster.tick(100)
    cluster.heal()
    cluster.tick(20)
    assert cluster.leaders() == [leader]
    assert cluster.cores[leader].term == term


def test_check_quorum_isolated_leader_steps_down() -> None:
    cluster = Cluster(3)
    leader = cluster.elect()
    cluster.isolate(leader)
    cluster.tick_until(lambda: cluster.cores[leader].role != Role.LEADER, max_ticks=60)
    others = [i for i in cluster.cores if i != leader]
    cluster.tick_until(lambda: any(cluster.cores[i].role == Role.LEADER for i in others))


def test_vote_requests_are_ignored_while_a_leader_is_heard() -> None:
    cluster = Cluster(3)
    leader = cluster.elect()
    follower = next(i for i in cluster.cores if i != leader)
    already_sent = len(cluster.sent)
    cluster.cores[follower].campaign()
    cluster.deliver_all()
    # The others still hear from the leader, so the pre-vote fails and nothing changes.
    assert cluster.leaders() == [leader]
    pre_votes = [
        m for m in cluster.sent[already_sent:] if m.type == MessageType.PRE_VOTE_RESPONSE and not m.reject
    ]
    assert pre_votes == []
