"""Figure 8 of the Raft paper (dissertation Figure 3.7), step by step with 5 nodes.

A leader may not conclude that an entry of an earlier term is committed because a
majority stores it: a node with a newer last term can still be elected and overwrite it.
PreVote and CheckQuorum are off and nobody ticks, so every campaign is one the test starts
and every message goes where the test lets it go.

Terms here: S1 leads term 1 (a), S5 term 2 (b), S1 term 3 (c), S5 term 4 (d). The contested
slot is index 2 ("i"); index 1 holds S1's committed no-op of term 1.
"""

from __future__ import annotations

from consensus.messages import EntryKind, MessageType, Role
from tests.raft_harness import Cluster
from tests.raft_scenarios_util import (
    Holder,
    applied_state,
    assert_state_machine_safety,
    entry_ids,
    force_leader,
    log_entries,
)

MT = MessageType
I = 2  # the contested index  # noqa: E741


def _term_at(cluster: Cluster, node_id: int, index: int) -> int | None:
    return cluster.cores[node_id].log.term_at(index)


def _never_applied_anywhere(cluster: Cluster, data: bytes) -> bool:
    return all(e.data != data for n in cluster.records for e in applied_state(cluster, n).values())


def test_figure_8_old_term_entry_on_a_majority_is_not_committed_by_counting() -> None:
    cluster = Cluster(5, pre_vote=False, check_quorum=False, entries_per_append_max=1)

    # (a) S1 leads term 1; its entry X at index I reaches only S2.
    force_leader(cluster, 1)
    assert cluster.cores[1].term == 1
    cluster.tick(1, nodes={1})  # one heartbeat from S1 (only) spreads its commit index
    assert all(c.commit_index == 1 for c in cluster.cores.values())
    for other in (3, 4, 5):
        cluster.cut.add((1, other))
    assert cluster.cores[1].propose(b"X") == I
    cluster.deliver_all()
    assert [n for n in cluster.cores if _term_at(cluster, n, I) == 1] == [1, 2]
    assert cluster.cores[1].commit_index == 1

    # (b) S1 crashes; S5 wins term 2 with S3 and S4 (S2's log is ahead of S5's, so it refuses)
    # and appends entries of term 2 at I and I+1 that nobody else receives.
    cluster.crash(1)
    cluster.heal()
    cluster.drop_filter = lambda m: m.sender == 5 and m.type in (MT.APPEND, MT.HEARTBEAT)
    force_leader(cluster, 5)
    assert cluster.cores[5].term == 2
    cluster.cores[5].propose(b"Y")
    cluster.deliver_all()
    assert [(e.index, e.term, e.kind) for e in log_entries(cluster.cores[5])][1:] == [
        (I, 2, EntryKind.NOOP),
        (I + 1, 2, EntryKind.NORMAL),
    ]
    assert all(_term_at(cluster, n, I) in (None, 1) for n in (2, 3, 4))

    # (c) S5 crashes; S1 restarts and is elected (term 3) by S2, S3, S4. It appends its no-op
    # of term 3 at I+1, and replicates X (term 1) to S3 and S4, but the no-op to nobody.
    cluster.crash(5)
    cluster.drop_filter = None
    cluster.restart(1)
    holder = Holder(cluster, lambda m: m.sender == 1 and m.type == MT.APPEND).install()
    force_leader(cluster, 1)
    leader = cluster.cores[1]
    assert leader.term == 3 and leader.log.term_at(I + 1) == 3
    # Its first appends (prev = X, carrying the no-op): S2 would accept them, so they are
    # lost; S3 and S4 lack X and refuse them, and the leader backs off to send X alone.
    holder.discard(lambda m: m.recipient == 2)
    assert holder.release(lambda m: m.recipient in (3, 4) and m.index == I) == 2
    held_x = [m for m in holder.held if m.entries and m.entries[0].index == I]
    assert sorted(m.recipient for m in held_x) == [3, 4]
    assert all(len(m.entries) == 1 and m.entries[0].term == 1 for m in held_x)
    holder.release(lambda m: m in held_x)
    # What is held now would hand the no-op of term 3 to S3 and S4: it never arrives.
    assert all(any(e.term == 3 for e in m.entries) for m in holder.held)
    holder.discard()

    assert [n for n in cluster.cores if _term_at(cluster, n, I) == 1] == [1, 2, 3, 4]
    matches = sorted(leader.progress(n).match for n in (1, 3, 4))  # type: ignore[union-attr]
    assert matches == [I, I, I + 1]  # the leader KNOWS a majority (S1, S3, S4) holds X...
    assert leader.commit_index == 1  # ...yet X, of term 1, is not committed by counting
    assert all(c.commit_index == 1 for n, c in cluster.cores.items() if n != 5)
    assert _never_applied_anywhere(cluster, b"X")

    # (d) S1 crashes before its no-op spreads; S5 restarts and wins (term 4) with S2, S3, S4:
    # its last entry (term 2) is newer than theirs (term 1). It overwrites index I everywhere.
    cluster.crash(1)
    holder.discard()
    cluster.drop_filter = None
    cluster.restart(5)
    force_leader(cluster, 5)
    assert cluster.cores[5].term == 4
    cluster.propose(5, b"Z")
    for node_id in (2, 3, 4, 5):
        assert _term_at(cluster, node_id, I) == 2
        assert cluster.cores[node_id].commit_index == cluster.cores[5].log.last_index
    cluster.restart(1)
    cluster.tick_until(lambda: cluster.cores[1].commit_index == cluster.cores[5].commit_index, 30)

    assert cluster.leaders() == [5]
    reference = entry_ids(log_entries(cluster.cores[5]))
    assert all(entry_ids(log_entries(c)) == reference for c in cluster.cores.values())
    assert _never_applied_anywhere(cluster, b"X")
    assert all(e.data != b"X" for e in log_entries(cluster.cores[1]))
    for node_id in cluster.cores:
        data = [e.data for e in sorted(applied_state(cluster, node_id).values(), key=lambda e: e.index)]
        assert data == [b"", b"", b"Y", b"", b"Z"]
    assert_state_machine_safety(cluster)


def test_figure_8_an_old_term_entry_commits_once_an_entry_of_the_current_term_does() -> None:
    # The safe ending of (c): S1's no-op of term 3 reaches a majority, which commits X too;
    # from then on S5 can no longer win (S1, S2, S3 all hold a term-3 entry).
    cluster = Cluster(5, pre_vote=False, check_quorum=False, entries_per_append_max=1)
    force_leader(cluster, 1)
    cluster.cut |= {(1, 3), (1, 4), (1, 5)}
    cluster.propose(1, b"X")
    cluster.crash(1)
    cluster.heal()
    cluster.drop_filter = lambda m: m.sender == 5 and m.type in (MT.APPEND, MT.HEARTBEAT)
    force_leader(cluster, 5)
    cluster.crash(5)
    cluster.drop_filter = None
    cluster.restart(1)
    cluster.cut |= {(1, 4), (4, 1)}
    force_leader(cluster, 1)  # S2 and S3 vote for it; S4 cannot hear it
    leader = cluster.cores[1]
    assert leader.term == 3
    assert leader.commit_index == I + 1  # X and the no-op, committed together
    assert cluster.applied_data(1) == [b"X"]
    cluster.crash(1)
    cluster.heal()
    cluster.restart(5)
    for _ in range(3):
        cluster.cores[5].campaign()
        cluster.deliver_all()
    assert cluster.cores[5].role != Role.LEADER
    votes = [m for m in cluster.sent if m.type == MT.VOTE_RESPONSE and m.recipient == 5 and m.term >= 4]
    refusals: dict[int, bool] = {}
    for m in votes:
        refusals[m.sender] = refusals.get(m.sender, True) and m.reject
    assert refusals[2] and refusals[3]
    assert all(_term_at(cluster, n, I) == 1 for n in (2, 3))  # X stays where it is
