"""Exceptions raised by the Raft core. Each leaves the core's state exactly as it was."""

from __future__ import annotations


class RaftError(Exception):
    """Base class of every error the consensus package raises on purpose."""


class InvalidMessageError(RaftError, ValueError):
    """A message that is malformed or impossible (negative index, gap in entries, unknown sender)."""


class InvalidRequestError(RaftError, ValueError):
    """A call from the application that cannot be honoured as asked (bad compact index, bad change)."""


class NotLeaderError(RaftError):
    """The request needs the leader; ``leader_id`` is the best known leader (0 if unknown)."""

    def __init__(self, leader_id: int, what: str = "request") -> None:
        hint = f"node {leader_id}" if leader_id else "unknown"
        super().__init__(f"{what} must go to the leader; this node is not it (leader: {hint})")
        self.leader_id = leader_id


class ProposalDroppedError(RaftError):
    """The leader cannot take the proposal now (leadership transfer, a pending config change,
    or the uncommitted-entries bound); retrying later may succeed."""


class ProposalTooLargeError(RaftError, ValueError):
    """A proposal bigger than the largest entry the log and the transport can carry. Refused
    before it is appended: an entry no replica can store or receive would stop the group."""
