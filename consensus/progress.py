"""What a leader knows about one follower's log: a small explicit state machine.

* PROBE: we do not know where the follower's log matches ours; send one append at a time
  and wait for its answer (or a heartbeat response) before sending another.
* REPLICATE: the follower is in step; stream appends optimistically, at most
  ``window_max`` messages in flight.
* SNAPSHOT: the entries it needs are compacted away; a snapshot is being sent in chunks.
"""

from __future__ import annotations

import enum
from collections import deque


class ProgressState(enum.IntEnum):
    PROBE = 1
    REPLICATE = 2
    SNAPSHOT = 3


class Progress:
    __slots__ = (
        "in_flight",
        "is_learner",
        "match",
        "next",
        "probe_sent",
        "recent_active",
        "silent_rounds",
        "snapshot_index",
        "snapshot_offset",
        "state",
        "window_max",
    )

    def __init__(self, next_index: int, window_max: int, is_learner: bool = False) -> None:
        self.match = 0
        self.next = next_index
        self.state = ProgressState.PROBE
        self.probe_sent = False
        self.window_max = window_max
        # Last index of each append message in flight (REPLICATE only), oldest first.
        self.in_flight: deque[int] = deque()
        self.is_learner = is_learner
        self.recent_active = False
        # Heartbeat rounds this follower answered, with appends outstanding, since it last
        # answered an append (see RaftCore._handle_heartbeat_response).
        self.silent_rounds = 0
        self.snapshot_index = 0
        self.snapshot_offset = 0

    def __repr__(self) -> str:
        return (
            f"Progress({self.state.name} match={self.match} next={self.next} "
            f"in_flight={len(self.in_flight)} learner={self.is_learner})"
        )

    def become_probe(self) -> None:
        if self.state == ProgressState.SNAPSHOT:
            self.next = max(self.match + 1, self.snapshot_index + 1)
        else:
            self.next = self.match + 1
        self.state = ProgressState.PROBE
        self.probe_sent = False
        self.in_flight.clear()
        self.silent_rounds = 0
        self.snapshot_index = 0
        self.snapshot_offset = 0

    def become_replicate(self) -> None:
        self.state = ProgressState.REPLICATE
        self.next = self.match + 1
        self.probe_sent = False
        self.in_flight.clear()

    def become_snapshot(self, snapshot_index: int) -> None:
        self.state = ProgressState.SNAPSHOT
        self.in_flight.clear()
        self.probe_sent = False
        self.snapshot_index = snapshot_index
        self.snapshot_offset = 0

    def is_paused(self) -> bool:
        if self.state == ProgressState.PROBE:
            return self.probe_sent
        if self.state == ProgressState.REPLICATE:
            return len(self.in_flight) >= self.window_max
        return True

    def sent_append(self, last_index: int) -> None:
        """Record that an append ending at ``last_index`` left for this follower."""
        if self.state == ProgressState.REPLICATE:
            if last_index >= self.next:
                self.next = last_index + 1
                self.in_flight.append(last_index)
        elif self.state == ProgressState.PROBE:
            self.probe_sent = True

    def maybe_update(self, index: int) -> bool:
        """The follower's log matches ours up to ``index``; False if that is old news."""
        updated = index > self.match
        if updated:
            self.match = index
            self.probe_sent = False
        self.next = max(self.next, index + 1)
        while self.in_flight and self.in_flight[0] <= index:
            self.in_flight.popleft()
        return updated

    def maybe_decrease(self, rejected: int, probe_hint: int) -> bool:
        """An append with previous index ``rejected`` was refused; back off. False if stale."""
        if self.state == ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, probe_hint + 1), self.match + 1)
        self.probe_sent = False
        return True
