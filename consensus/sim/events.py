"""Discrete events in simulated time.

The whole simulation is one priority queue keyed by ``(time_ms, seq)``: the time says when
an event happens, the sequence number (taken from one counter) breaks ties in the order the
events were scheduled. Nothing is ever compared beyond that key, so the order of events is
a pure function of the seed and never of object identity, hashing or the wall clock.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from consensus.messages import Message


@dataclass(frozen=True, slots=True)
class Deliver:
    """A message arrives at its recipient (if the network and the recipient still allow it)."""

    message: Message


@dataclass(frozen=True, slots=True)
class Tick:
    """One tick of a node's logical clock; stale once the node has crashed since scheduling."""

    node_id: int
    incarnation: int


@dataclass(frozen=True, slots=True)
class Restart:
    """A crashed node comes back with what its disk held."""

    node_id: int
    incarnation: int


@dataclass(frozen=True, slots=True)
class Shutdown:
    """A node that left the cluster (or never made it in) is switched off for good."""

    node_id: int


@dataclass(frozen=True, slots=True)
class Heal:
    """End of one network fault: ``generation`` says which one, so a newer fault survives."""

    generation: int


@dataclass(frozen=True, slots=True)
class LinkRepair:
    """A flaky link (extra loss on one direction) works normally again."""

    sender: int
    recipient: int


@dataclass(frozen=True, slots=True)
class Timer:
    """A workload or fault generator wakes up (``kind`` names which)."""

    kind: str


Event = Deliver | Tick | Restart | Shutdown | Heal | LinkRepair | Timer


class EventQueue:
    """A bounded min-heap of events ordered by ``(time_ms, seq)``."""

    def __init__(self, events_max: int = 1_000_000) -> None:
        self._heap: list[tuple[int, int, Event]] = []
        self._seq = 0
        self._events_max = events_max

    def push(self, time_ms: int, event: Event) -> None:
        if len(self._heap) >= self._events_max:
            raise OverflowError(f"more than {self._events_max} events pending: a generator runs away")
        self._seq += 1
        heapq.heappush(self._heap, (time_ms, self._seq, event))

    def pop(self) -> tuple[int, Event]:
        time_ms, _, event = heapq.heappop(self._heap)
        return time_ms, event

    def peek_time_ms(self) -> int | None:
        return self._heap[0][0] if self._heap else None

    def __len__(self) -> int:
        return len(self._heap)
