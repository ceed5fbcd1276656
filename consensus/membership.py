"""Membership arithmetic of the Raft core: what a single-step change makes of a
configuration, and which configuration held at a log index.

A configuration takes effect as soon as its CONFIG entry is in the log (dissertation 4.1),
so the core keeps a history of (index, configuration) pairs: the one of its snapshot first,
then one per CONFIG entry after it. These functions read that history; the core owns it.
"""

from __future__ import annotations

from collections.abc import Sequence

from consensus.errors import InvalidRequestError, ProposalDroppedError
from consensus.messages import ConfChange, ConfChangeType, ConfState

__all__ = ["changed_conf", "conf_at", "known_peers"]

ConfHistory = Sequence[tuple[int, ConfState]]


def changed_conf(conf: ConfState, change: ConfChange, learner_lag: int, learner_lag_max: int) -> ConfState:
    """``conf`` after ``change``. ``learner_lag``: how many entries the leader's log is ahead
    of the changed node's; a learner is promoted only within ``learner_lag_max`` of it.
    Raises ``InvalidRequestError`` for a change that makes no sense for ``conf``, and
    ``ProposalDroppedError`` for a promotion that must wait for the learner to catch up."""
    node = change.node_id
    if node <= 0:
        raise InvalidRequestError(f"node id must be positive, got {node}")
    voters, learners = list(conf.voters), list(conf.learners)
    kind = change.change
    if kind == ConfChangeType.ADD_LEARNER:
        if node in conf.members:
            raise InvalidRequestError(f"node {node} is already a member of {conf}")
        learners.append(node)
    elif kind == ConfChangeType.ADD_VOTER:
        if node in conf.voters:
            raise InvalidRequestError(f"node {node} is already a voter of {conf}")
        if node in learners:
            learners.remove(node)
        voters.append(node)
    elif kind == ConfChangeType.PROMOTE_LEARNER:
        if node not in conf.learners:
            raise InvalidRequestError(f"node {node} is not a learner of {conf}")
        if learner_lag > learner_lag_max:
            raise ProposalDroppedError(
                f"learner {node} is {learner_lag} entries behind (at most {learner_lag_max} allowed "
                "before promotion)"
            )
        learners.remove(node)
        voters.append(node)
    elif kind == ConfChangeType.REMOVE_NODE:
        if node not in conf.members:
            raise InvalidRequestError(f"node {node} is not a member of {conf}")
        if node in voters:
            voters.remove(node)
        else:
            learners.remove(node)
        if not voters:
            raise InvalidRequestError(f"removing node {node} would leave no voters")
    else:
        raise InvalidRequestError(f"unknown configuration change {kind!r}")
    return ConfState(tuple(voters), tuple(learners))


def conf_at(history: ConfHistory, index: int) -> ConfState:
    """The configuration in effect at log ``index`` (the latest one at or before it)."""
    conf = history[0][1]
    for conf_index, candidate in history:
        if conf_index > index:
            break
        conf = candidate
    return conf


def known_peers(initial: ConfState, history: ConfHistory, node_id: int) -> frozenset[int]:
    """Every node that the initial configuration or any held one names, ``node_id`` aside:
    the senders whose messages are accepted."""
    known: set[int] = set(initial.members)
    for _, conf in history:
        known |= conf.members
    known.discard(node_id)
    return frozenset(known)
