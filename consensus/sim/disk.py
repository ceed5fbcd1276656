"""A simulated disk: what a node persisted, and nothing else, survives a crash.

The driver writes through it in the order the ``Ready`` contract gives (snapshot, entries,
hard state). A crash "mid-Ready" simply means these writes never happen: it models a write
that was not synced yet when the power went. The disk also checks the shape of what it is
given (no gaps, no regressions), because a driver or core that violated the persistence
contract would lose data only on some later restart, far from the cause.
"""

from __future__ import annotations

import itertools

from consensus.messages import Entry, HardState, RestoredState, Snapshot


class PersistContractError(Exception):
    """What the core asked to persist cannot be right (a gap, a regression)."""


class SimDisk:
    """The durable state of one node: hard state, latest snapshot, log after the snapshot."""

    __slots__ = ("entries", "hard_state", "snapshot", "writes")

    def __init__(self) -> None:
        self.hard_state = HardState()
        self.snapshot: Snapshot | None = None
        # Contiguous entries, all after the snapshot's index.
        self.entries: list[Entry] = []
        self.writes = 0

    @property
    def snapshot_index(self) -> int:
        return self.snapshot.meta.index if self.snapshot is not None else 0

    @property
    def last_index(self) -> int:
        return self.entries[-1].index if self.entries else self.snapshot_index

    def term_at(self, index: int) -> int | None:
        if self.snapshot is not None and index == self.snapshot.meta.index:
            return self.snapshot.meta.term
        if index == 0:
            return 0
        if not self.entries:
            return None
        offset = index - self.entries[0].index
        if 0 <= offset < len(self.entries):
            return self.entries[offset].term
        return None

    def install_snapshot(self, snapshot: Snapshot) -> None:
        """A snapshot received from the leader replaces the whole persisted log."""
        if snapshot.meta.index <= self.snapshot_index:
            raise PersistContractError(
                f"installing snapshot at {snapshot.meta.index} over a persisted one at {self.snapshot_index}"
            )
        self.snapshot = snapshot
        self.entries = []
        self.writes += 1

    def compact(self, snapshot: Snapshot) -> None:
        """The application captured its own state: keep the log after the snapshot only."""
        self.snapshot = snapshot
        index = snapshot.meta.index
        if self.entries:
            del self.entries[: max(0, index - self.entries[0].index + 1)]
        self.writes += 1

    def append(self, entries: list[Entry]) -> None:
        """Entries replace every persisted entry at or after ``entries[0].index``."""
        if not entries:
            return
        first = entries[0].index
        if first <= self.snapshot_index:
            raise PersistContractError(
                f"entry {first} rewrites the persisted snapshot at {self.snapshot_index}"
            )
        if first > self.last_index + 1:
            raise PersistContractError(f"entry {first} leaves a gap after persisted index {self.last_index}")
        for previous, entry in itertools.pairwise(entries):
            if entry.index != previous.index + 1:
                raise PersistContractError(f"entries to persist jump from {previous.index} to {entry.index}")
        if self.entries:
            del self.entries[first - self.entries[0].index :]
        self.entries.extend(entries)
        self.writes += 1

    def set_hard_state(self, hard_state: HardState) -> None:
        self.hard_state = hard_state
        self.writes += 1

    def restored(self) -> RestoredState:
        return RestoredState(self.hard_state, self.snapshot, tuple(self.entries))
