"""Single-server membership changes and learners (dissertation 4.1-4.2): learners replicate
but never vote, promotion waits for catch-up, one change at a time, removals (the leader's
included), changes across crashes, and the "commit an entry of your term first" rule."""

from __future__ import annotations

from typing import Any

import pytest

from consensus.errors import InvalidRequestError, ProposalDroppedError
from consensus.messages import ConfChange, ConfChangeType, ConfState, MessageType, Role
from tests.raft_harness import Cluster
from tests.raft_scenarios_util import (
    Holder,
    applied_normal_data,
    entry_ids,
    log_entries,
    sent_since,
)

MT = MessageType
CC = ConfChangeType
ELECTION_MESSAGES = (MT.PRE_VOTE, MT.VOTE, MT.PRE_VOTE_RESPONSE, MT.VOTE_RESPONSE)


def _stable_cluster(n: int = 3, **config: Any) -> tuple[Cluster, int]:
    cluster = Cluster(n, **config)
    leader = cluster.elect()
    cluster.tick(3)
    return cluster, leader


def _change(cluster: Cluster, leader: int, kind: ConfChangeType, node_id: int) -> int:
    index = cluster.cores[leader].propose_conf_change(ConfChange(kind, node_id))
    cluster.deliver_all()
    return index


def _add_learner(cluster: Cluster, leader: int, node_id: int) -> None:
    conf = cluster.cores[leader].conf
    cluster.add_node(node_id, ConfState(conf.voters, (*conf.learners, node_id)))
    _change(cluster, leader, CC.ADD_LEARNER, node_id)


def _caught_up(cluster: Cluster, node_id: int, leader: int) -> bool:
    return cluster.cores[node_id].commit_index == cluster.cores[leader].commit_index


def test_a_learner_receives_the_log_but_never_votes_campaigns_or_counts() -> None:
    cluster, leader = _stable_cluster(3)
    for k in range(10):
        cluster.propose(leader, b"v%d" % k)
    _add_learner(cluster, leader, 4)
    cluster.tick_until(lambda: _caught_up(cluster, 4, leader), 10)
    assert all(c.conf == ConfState((1, 2, 3), (4,)) for c in cluster.cores.values())
    assert entry_ids(log_entries(cluster.cores[4])) == entry_ids(log_entries(cluster.cores[leader]))
    assert applied_normal_data(cluster, 4) == [b"v%d" % k for k in range(10)]

    mark = len(cluster.sent)
    cluster.isolate(4)  # it hears no leader for a long time, yet never campaigns
    cluster.tick(60)
    cluster.heal()
    cluster.crash(leader)  # an election among the voters involves no learner
    voters = {1, 2, 3} - {leader}
    cluster.tick_until(lambda: any(cluster.cores[i].role == Role.LEADER for i in voters), 100)
    election = [m for m in sent_since(cluster, mark) if m.type in ELECTION_MESSAGES]
    assert election and all(4 not in (m.sender, m.recipient) for m in election)
    assert cluster.cores[4].role == Role.FOLLOWER

    # The learner's acknowledgement does not make a quorum.
    new = next(i for i in voters if cluster.cores[i].role == Role.LEADER)
    cluster.crash(next(i for i in voters if i != new))
    before = cluster.cores[new].commit_index
    index = cluster.cores[new].propose(b"needs-a-voter")
    cluster.deliver_all()
    assert cluster.cores[4].log.last_index == index
    assert cluster.cores[new].commit_index == before


def test_promoting_a_lagging_learner_is_refused_until_it_catches_up() -> None:
    cluster, leader = _stable_cluster(3, learner_catchup_entries_max=5)
    cluster.add_node(4, ConfState((1, 2, 3), (4,)))
    cluster.isolate(4)
    _change(cluster, leader, CC.ADD_LEARNER, 4)
    for k in range(50):
        cluster.propose(leader, b"v%d" % k)
    with pytest.raises(ProposalDroppedError, match=r"learner 4 is \d+ entries behind"):
        cluster.cores[leader].propose_conf_change(ConfChange(CC.PROMOTE_LEARNER, 4))
    assert cluster.cores[leader].conf == ConfState((1, 2, 3), (4,))
    cluster.heal()
    cluster.tick_until(lambda: _caught_up(cluster, 4, leader), 20)
    _change(cluster, leader, CC.PROMOTE_LEARNER, 4)
    cluster.tick(2)
    assert all(c.conf == ConfState((1, 2, 3, 4)) for c in cluster.cores.values())
    # Four voters: a quorum is now three, so the leader plus one follower cannot commit.
    cluster.crash(next(i for i in (1, 2, 3) if i != leader))
    cluster.crash(4)
    before = cluster.cores[leader].commit_index
    cluster.cores[leader].propose(b"two-of-four")
    cluster.deliver_all()
    assert cluster.cores[leader].commit_index == before


def test_a_second_change_is_refused_while_one_is_pending() -> None:
    cluster, leader = _stable_cluster(3)
    holder = Holder(cluster, lambda m: m.type == MT.APPEND_RESPONSE).install()
    _add_learner(cluster, leader, 4)
    with pytest.raises(ProposalDroppedError, match="one change may be pending"):
        cluster.cores[leader].propose_conf_change(ConfChange(CC.REMOVE_NODE, 3 if leader != 3 else 2))
    assert cluster.cores[leader].conf == ConfState((1, 2, 3), (4,))
    holder.release()
    cluster.drop_filter = None
    cluster.tick_until(lambda: _caught_up(cluster, 4, leader), 10)
    _add_learner(cluster, leader, 5)
    cluster.tick(2)
    assert all(c.conf == ConfState((1, 2, 3), (4, 5)) for c in cluster.cores.values())


def test_removing_a_follower_leaves_a_working_cluster_it_cannot_disrupt() -> None:
    cluster, leader = _stable_cluster(3)
    removed = next(i for i in cluster.cores if i != leader)
    _change(cluster, leader, CC.REMOVE_NODE, removed)
    cluster.tick(2)
    rest = [i for i in cluster.cores if i != removed]
    assert all(cluster.cores[i].conf.voters == tuple(sorted(rest)) for i in rest)
    term = cluster.cores[leader].term
    mark = len(cluster.sent)
    cluster.tick(100)  # the removed node may time out and pre-vote: nobody listens
    assert cluster.leaders() == [leader] and cluster.cores[leader].term == term
    assert sent_since(cluster, mark, sender=leader, recipient=removed) == []
    cluster.propose(leader, b"two-voters")
    assert all(applied_normal_data(cluster, i) == [b"two-voters"] for i in rest)


def test_a_removed_leader_leads_until_the_change_commits_then_steps_down() -> None:
    cluster, leader = _stable_cluster(3)
    rest = sorted(i for i in cluster.cores if i != leader)
    holder = Holder(cluster, lambda m: m.type == MT.APPEND_RESPONSE).install()
    _change(cluster, leader, CC.REMOVE_NODE, leader)
    core = cluster.cores[leader]
    assert core.conf.voters == tuple(rest)
    cluster.tick(3)
    assert core.role == Role.LEADER  # still leading (and replicating) while uncommitted
    core.propose(b"during-removal")
    cluster.deliver_all()
    holder.release()
    cluster.drop_filter = None
    assert cluster.leaders() == []  # it stepped down once the change committed
    mark = len(cluster.sent)
    cluster.tick_until(lambda: any(cluster.cores[i].role == Role.LEADER for i in rest), 100)
    new = next(i for i in rest if cluster.cores[i].role == Role.LEADER)
    cluster.propose(new, b"after-removal")
    for i in rest:
        assert applied_normal_data(cluster, i) == [b"during-removal", b"after-removal"]
    cluster.tick(50)
    assert [m for m in sent_since(cluster, mark, sender=leader) if m.type in ELECTION_MESSAGES] == []
    assert cluster.leaders() == [new]


def test_configuration_survives_crashes_and_restarts_from_the_log() -> None:
    cluster, leader = _stable_cluster(3)
    _add_learner(cluster, leader, 4)
    cluster.tick_until(lambda: _caught_up(cluster, 4, leader), 10)
    _change(cluster, leader, CC.PROMOTE_LEARNER, 4)
    cluster.tick(2)
    four = ConfState((1, 2, 3, 4))
    for node_id in (*(i for i in (1, 2, 3) if i != leader), 4):
        cluster.crash(node_id)
        restarted = cluster.restart(node_id)
        assert restarted.conf == four  # initial conf was 3 voters (or 4 as learner): the log wins
        cluster.tick(3)
    assert cluster.leaders() == [leader]
    # Two of four voters down: the other two cannot elect anyone (three-vote quorum).
    cluster.crash(leader)
    down = next(i for i in (1, 2, 3, 4) if i != leader)
    cluster.crash(down)
    cluster.tick(100)
    assert cluster.leaders() == []
    cluster.restart(down)
    new = cluster.elect(200)
    cluster.propose(new, b"three-of-four")
    cluster.restart(leader)
    cluster.tick_until(lambda: all(_caught_up(cluster, i, new) for i in cluster.cores), 30)
    assert all(applied_normal_data(cluster, i)[-1] == b"three-of-four" for i in cluster.cores)


def test_an_uncommitted_change_is_rolled_back_when_its_entry_is_overwritten() -> None:
    cluster, leader = _stable_cluster(5)
    victim = next(i for i in cluster.cores if i != leader)
    five = ConfState((1, 2, 3, 4, 5))
    cluster.drop_filter = lambda m: m.sender == leader and m.type == MT.APPEND
    _change(cluster, leader, CC.REMOVE_NODE, victim)
    assert cluster.cores[leader].conf.voters == tuple(i for i in five.voters if i != victim)
    cluster.crash(leader)
    cluster.drop_filter = None
    new = cluster.elect(200)
    cluster.propose(new, b"new-term")
    assert cluster.cores[new].conf == five
    # Restarted, the old leader rebuilds its config from its log (the change is there)...
    restarted = cluster.restart(leader)
    assert restarted.conf.voters == tuple(i for i in five.voters if i != victim)
    # ...until the new leader overwrites that entry: the change is undone.
    cluster.tick_until(lambda: _caught_up(cluster, leader, new), 30)
    assert all(c.conf == five for c in cluster.cores.values())
    assert entry_ids(log_entries(restarted)) == entry_ids(log_entries(cluster.cores[new]))
    cluster.crash(leader)
    assert cluster.restart(leader).conf == five


def test_a_new_leader_cannot_change_the_config_before_committing_in_its_term() -> None:
    cluster, old = _stable_cluster(3)
    holder = Holder(cluster, lambda m: m.type == MT.APPEND_RESPONSE).install()
    cluster.crash(old)
    new = cluster.elect()
    core = cluster.cores[new]
    assert core.commit_index < core.log.last_index  # its no-op is not committed yet
    cluster.add_node(4, ConfState((1, 2, 3), (4,)))
    with pytest.raises(ProposalDroppedError, match="its term"):
        core.propose_conf_change(ConfChange(CC.ADD_LEARNER, 4))
    assert core.conf == ConfState((1, 2, 3))
    holder.release()
    cluster.drop_filter = None
    assert core.log.term_at(core.commit_index) == core.term
    _change(cluster, new, CC.ADD_LEARNER, 4)
    assert core.conf == ConfState((1, 2, 3), (4,))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (ConfChange(CC.ADD_LEARNER, 2), "already a member"),
        (ConfChange(CC.ADD_VOTER, 2), "already a voter"),
        (ConfChange(CC.PROMOTE_LEARNER, 2), "not a learner"),
        (ConfChange(CC.REMOVE_NODE, 9), "not a member"),
        (ConfChange(CC.ADD_LEARNER, 0), "must be positive"),
    ],
)
def test_impossible_changes_are_invalid_requests(change: ConfChange, message: str) -> None:
    cluster, leader = _stable_cluster(3)
    last = cluster.cores[leader].log.last_index
    with pytest.raises(InvalidRequestError, match=message):
        cluster.cores[leader].propose_conf_change(change)
    assert cluster.cores[leader].log.last_index == last


def test_removing_the_last_voter_is_invalid() -> None:
    cluster, leader = _stable_cluster(1)
    with pytest.raises(InvalidRequestError, match="no voters"):
        cluster.cores[leader].propose_conf_change(ConfChange(CC.REMOVE_NODE, leader))
