"""Raft's safety properties, checked against a global record of everything ever seen.

The checker is told about every entry a node persists, every commit it learns, every entry
it applies, every leader it becomes and every vote it grants; it keeps the cluster-wide
history those facts must agree with, and raises ``InvariantViolation`` (named after the
property from the Raft paper, Figure 3, or after the driving contract) the moment one does
not. Per-event checks are incremental so that they can run after every single event.
"""

from __future__ import annotations

from typing import Protocol

from consensus.messages import Entry, HardState

ELECTION_SAFETY = "election_safety"
LOG_MATCHING = "log_matching"
LEADER_COMPLETENESS = "leader_completeness"
STATE_MACHINE_SAFETY = "state_machine_safety"
COMMITTED_ENTRY_LOST = "committed_entry_lost"
COMMIT_MONOTONIC = "commit_monotonic"
TERM_MONOTONIC = "term_monotonic"
DOUBLE_VOTE = "double_vote"
DURABLE_BEFORE_SEND = "durable_before_send"
LEADER_APPEND_ONLY = "leader_append_only"
PERSIST_CONTRACT = "persist_contract"
LINEARIZABLE_READ = "linearizable_read"
CORE_EXCEPTION = "core_exception"
LIVENESS = "liveness"


class InvariantViolation(Exception):
    """A property that must always hold did not. ``name`` is one of the constants above."""

    def __init__(self, name: str, detail: str) -> None:
        super().__init__(f"{name}: {detail}")
        self.name = name
        self.detail = detail


class LogView(Protocol):
    """The read-only part of a node's log the checker needs."""

    @property
    def snapshot_index(self) -> int: ...

    @property
    def last_index(self) -> int: ...

    def term_at(self, index: int) -> int | None: ...


class SafetyChecker:
    """The global history of one simulated cluster and the checks against it."""

    def __init__(self) -> None:
        self.leader_by_term: dict[int, int] = {}
        # Log Matching: (index, term) names exactly one entry, always preceded by one term.
        self._entry_by_slot: dict[tuple[int, int], tuple[Entry, int]] = {}
        # Every entry known to be committed (or applied), by index.
        self.committed: dict[int, Entry] = {}
        # Register fingerprint (count, digest) after applying index i, from whoever did first.
        self._state_at: dict[int, tuple[int, bytes]] = {}
        self._vote_by_voter_term: dict[tuple[int, int], int] = {}

    # ---- elections ------------------------------------------------------------------------

    def on_leader(self, node_id: int, term: int) -> bool:
        """Election Safety: at most one leader per term, over the whole history. True if new."""
        known = self.leader_by_term.get(term)
        if known is None:
            self.leader_by_term[term] = node_id
            return True
        if known != node_id:
            raise InvariantViolation(ELECTION_SAFETY, f"nodes {known} and {node_id} both led term {term}")
        return False

    def on_vote_granted(self, voter: int, term: int, candidate: int) -> None:
        known = self._vote_by_voter_term.setdefault((voter, term), candidate)
        if known != candidate:
            raise InvariantViolation(
                DOUBLE_VOTE, f"node {voter} granted its term-{term} vote to both {known} and {candidate}"
            )

    # ---- logs -----------------------------------------------------------------------------

    def on_entries(self, node_id: int, entries: list[Entry], prev_term: int | None) -> None:
        """Log Matching, checked as each entry enters a log: the pair (index, term) always names
        the same entry, preceded by the same term (so, inductively, the same whole prefix)."""
        for entry in entries:
            slot = (entry.index, entry.term)
            if prev_term is not None and prev_term > entry.term:
                raise InvariantViolation(
                    LOG_MATCHING, f"node {node_id}: entry {slot} follows a term-{prev_term} entry"
                )
            known = self._entry_by_slot.get(slot)
            if known is None:
                if prev_term is not None:
                    self._entry_by_slot[slot] = (entry, prev_term)
            else:
                known_entry, known_prev = known
                if known_entry != entry:
                    raise InvariantViolation(
                        LOG_MATCHING, f"node {node_id}: slot {slot} holds {entry}, elsewhere {known_entry}"
                    )
                if prev_term is not None and known_prev != prev_term:
                    raise InvariantViolation(
                        LOG_MATCHING,
                        f"node {node_id}: entry {slot} follows term {prev_term} here, "
                        f"term {known_prev} elsewhere",
                    )
            prev_term = entry.term

    # ---- commitment -----------------------------------------------------------------------

    @property
    def committed_max(self) -> int:
        return max(self.committed) if self.committed else 0

    def on_committed(self, node_id: int, entry: Entry) -> bool:
        """A node's log holds ``entry`` at or below its commit index. True if first seen."""
        known = self.committed.get(entry.index)
        if known is None:
            self.committed[entry.index] = entry
            return True
        if known != entry:
            raise InvariantViolation(
                COMMITTED_ENTRY_LOST,
                f"node {node_id} has {entry} committed at index {entry.index}; "
                f"{known} was committed there before",
            )
        return False

    def check_leader_completeness(self, node_id: int, term: int, log: LogView, lo: int, hi: int) -> None:
        """Leader Completeness: every entry committed at an index in [lo, hi] is in the log of
        the leader ``node_id`` of ``term`` (below its snapshot it is covered by the snapshot)."""
        lo = max(lo, log.snapshot_index + 1)
        for index in range(lo, hi + 1):
            committed = self.committed.get(index)
            if committed is None:
                continue
            have = log.term_at(index)
            if have != committed.term:
                raise InvariantViolation(
                    LEADER_COMPLETENESS,
                    f"leader {node_id} of term {term} has term {have} at index {index}, "
                    f"where an entry of term {committed.term} is committed (last index {log.last_index})",
                )

    # ---- applying -------------------------------------------------------------------------

    def on_apply(self, node_id: int, entry: Entry) -> bool:
        """State Machine Safety: the entry applied at an index is the same everywhere.
        True if nobody applied or saw this index committed before."""
        known = self.committed.get(entry.index)
        if known is None:
            self.committed[entry.index] = entry
            return True
        if known != entry:
            raise InvariantViolation(
                STATE_MACHINE_SAFETY,
                f"node {node_id} applies {entry} at index {entry.index}; committed is {known}",
            )
        return False

    def on_state(self, node_id: int, index: int, fingerprint: tuple[int, bytes], how: str) -> None:
        """The state machine image after index ``index`` agrees with every other node's."""
        known = self._state_at.setdefault(index, fingerprint)
        if known != fingerprint:
            raise InvariantViolation(
                STATE_MACHINE_SAFETY,
                f"node {node_id} {how}: state at index {index} has {fingerprint[0]} payloads "
                f"(digest {fingerprint[1].hex()[:12]}), others had {known[0]} (digest {known[1].hex()[:12]})",
            )

    # ---- persistence ----------------------------------------------------------------------

    @staticmethod
    def on_hard_state_persisted(node_id: int, old: HardState, new: HardState) -> None:
        """What is durable never goes back: term, commit; and one vote per term."""
        if new.term < old.term:
            raise InvariantViolation(
                TERM_MONOTONIC, f"node {node_id} persists term {new.term} over {old.term}"
            )
        if new.commit < old.commit:
            raise InvariantViolation(
                COMMIT_MONOTONIC, f"node {node_id} persists commit {new.commit} over {old.commit}"
            )
        if new.term == old.term and old.vote != 0 and new.vote != old.vote:
            raise InvariantViolation(
                DOUBLE_VOTE,
                f"node {node_id} changes its persisted term-{new.term} vote {old.vote} -> {new.vote}",
            )
