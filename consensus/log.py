"""The in-memory Raft log of one node: a compacted prefix (the snapshot) plus entries.

It also remembers how far the driver has persisted (``stable_index``), how far the
cluster has committed and how far the application has been handed entries to apply, so
the core can build ``Ready`` batches. It does no I/O.
"""

from __future__ import annotations

from consensus.errors import InvalidRequestError
from consensus.messages import Entry, SnapshotMeta


class RaftLog:
    """Entries ``snapshot_index + 1 .. last_index``; ``_entries[k].index == snapshot_index + 1 + k``."""

    __slots__ = (
        "_entries",
        "applied_index",
        "commit_index",
        "snapshot_index",
        "snapshot_term",
        "stable_index",
        "unstable_from",
    )

    def __init__(self, snapshot_index: int = 0, snapshot_term: int = 0) -> None:
        self._entries: list[Entry] = []
        self.snapshot_index = snapshot_index
        self.snapshot_term = snapshot_term
        self.commit_index = snapshot_index
        self.applied_index = snapshot_index
        # Entries up to ``stable_index`` are on the driver's disk; entries from
        # ``unstable_from`` on still have to be handed out for persistence.
        self.stable_index = snapshot_index
        self.unstable_from = snapshot_index + 1

    # ---- reading -------------------------------------------------------------------

    @property
    def first_index(self) -> int:
        return self.snapshot_index + 1

    @property
    def last_index(self) -> int:
        return self.snapshot_index + len(self._entries)

    @property
    def last_term(self) -> int:
        return self._entries[-1].term if self._entries else self.snapshot_term

    def term_at(self, index: int) -> int | None:
        """Term of the entry at ``index``; None when compacted away or beyond the end."""
        if index == self.snapshot_index:
            return self.snapshot_term
        offset = index - self.snapshot_index - 1
        if offset < 0 or offset >= len(self._entries):
            return None
        return self._entries[offset].term

    def entry_at(self, index: int) -> Entry:
        offset = index - self.snapshot_index - 1
        if offset < 0 or offset >= len(self._entries):
            raise IndexError(f"index {index} outside log [{self.first_index}, {self.last_index}]")
        return self._entries[offset]

    def slice(self, lo: int, hi: int) -> list[Entry]:
        """Entries with ``lo <= index < hi`` (both clamped to what the log holds)."""
        base = self.snapshot_index + 1
        return self._entries[max(lo - base, 0) : max(hi - base, 0)]

    def matches(self, index: int, term: int) -> bool:
        return self.term_at(index) == term

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Raft's election restriction: is a log ending at (last_index, last_term) at least ours?"""
        mine = self.last_term
        return last_term > mine or (last_term == mine and last_index >= self.last_index)

    def find_conflict(self, entries: tuple[Entry, ...] | list[Entry]) -> int:
        """Index of the first entry that is new or whose term differs from ours (0 if none)."""
        for entry in entries:
            if self.term_at(entry.index) != entry.term:
                return entry.index
        return 0

    def conflict_hint(self, index: int, term: int) -> int:
        """Largest index <= ``index`` whose term is <= ``term``: where a leader should probe
        next so that a whole divergent term is skipped in one round trip."""
        index = min(index, self.last_index)
        while index > self.snapshot_index:
            entry_term = self.term_at(index)
            if entry_term is not None and entry_term <= term:
                return index
            index -= 1
        return self.snapshot_index

    # ---- writing -------------------------------------------------------------------

    def append(self, entries: list[Entry] | tuple[Entry, ...]) -> None:
        """Append entries that directly follow ``last_index``, truncating nothing."""
        if not entries:
            return
        if entries[0].index != self.last_index + 1:
            raise AssertionError(f"append at {entries[0].index} does not follow last index {self.last_index}")
        self._entries.extend(entries)

    def truncate_and_append(self, entries: list[Entry] | tuple[Entry, ...]) -> None:
        """Replace everything from ``entries[0].index`` on (a follower resolving a conflict)."""
        first = entries[0].index
        if first <= self.commit_index:
            raise AssertionError(f"truncating at {first} would drop committed index {self.commit_index}")
        if first > self.last_index + 1:
            raise AssertionError(f"append at {first} leaves a gap after {self.last_index}")
        del self._entries[first - self.snapshot_index - 1 :]
        self._entries.extend(entries)
        if first < self.unstable_from:
            self.unstable_from = first
        if self.stable_index >= first:
            self.stable_index = first - 1

    def commit_to(self, index: int) -> bool:
        if index <= self.commit_index:
            return False
        if index > self.last_index:
            raise AssertionError(f"commit {index} beyond last index {self.last_index}")
        self.commit_index = index
        return True

    def unstable_entries(self) -> list[Entry]:
        return self.slice(self.unstable_from, self.last_index + 1)

    def mark_stable(self, last_persisted: int) -> None:
        if last_persisted > self.last_index:
            raise AssertionError(f"persisted {last_persisted} beyond last index {self.last_index}")
        self.stable_index = max(self.stable_index, last_persisted)
        self.unstable_from = max(self.unstable_from, last_persisted + 1)

    def compact(self, index: int) -> None:
        """Drop entries up to ``index``, which the application has captured in a snapshot."""
        if index <= self.snapshot_index:
            raise InvalidRequestError(
                f"compact index {index} is not after snapshot index {self.snapshot_index}"
            )
        if index > self.applied_index:
            raise InvalidRequestError(f"compact index {index} is beyond applied index {self.applied_index}")
        term = self.term_at(index)
        assert term is not None
        del self._entries[: index - self.snapshot_index]
        self.snapshot_index = index
        self.snapshot_term = term

    def restore(self, meta: SnapshotMeta) -> None:
        """Replace the whole log by a snapshot received from the leader."""
        self._entries = []
        self.snapshot_index = meta.index
        self.snapshot_term = meta.term
        self.commit_index = meta.index
        self.applied_index = meta.index
        self.stable_index = meta.index
        self.unstable_from = meta.index + 1
