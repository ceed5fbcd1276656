"""A seeded, faulty network in simulated time.

Every message is an independent datagram: it may be dropped, duplicated or delayed by a
random amount (so messages overtake each other: reordering falls out of the delays). On top
of that, links can be cut: a partition is a set of blocked *directed* links, which models
the symmetric split, the one-way (asymmetric) failure, the "bridge" where two halves share
one node, and an isolated node with one mechanism. A cut is checked both when a message is
sent and when it arrives, so a partition also swallows what was already in flight.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from consensus.messages import Message

Link = tuple[int, int]  # (sender, recipient)


@dataclass(slots=True)
class NetworkStats:
    sent: int = 0
    dropped: int = 0
    duplicated: int = 0
    blocked: int = 0


class SimNetwork:
    """Decides the fate of each message; the caller schedules the deliveries it returns."""

    def __init__(
        self,
        rng: random.Random,
        *,
        delay_min_ms: int,
        delay_max_ms: int,
        drop_probability: float = 0.0,
        duplicate_probability: float = 0.0,
    ) -> None:
        if not 1 <= delay_min_ms <= delay_max_ms:
            raise ValueError(f"need 1 <= delay_min_ms <= delay_max_ms, got {delay_min_ms}, {delay_max_ms}")
        self._rng = rng
        self.delay_min_ms = delay_min_ms
        self.delay_max_ms = delay_max_ms
        self.drop_probability = drop_probability
        self.duplicate_probability = duplicate_probability
        # Extra loss on single directed links ("flaky cable"), on top of the global rate.
        self.link_drop_probability: dict[Link, float] = {}
        self._blocked: set[Link] = set()
        self.partition_description = ""
        self.stats = NetworkStats()

    # ---- the fate of one message ---------------------------------------------------------

    def send(self, message: Message) -> list[int]:
        """Delays (ms from now) of the copies of ``message`` that will arrive: 0, 1 or 2."""
        self.stats.sent += 1
        link = (message.sender, message.recipient)
        if link in self._blocked:
            self.stats.blocked += 1
            return []
        drop = self.drop_probability + self.link_drop_probability.get(link, 0.0)
        if drop > 0.0 and self._rng.random() < drop:
            self.stats.dropped += 1
            return []
        delays = [self._rng.randint(self.delay_min_ms, self.delay_max_ms)]
        if self.duplicate_probability > 0.0 and self._rng.random() < self.duplicate_probability:
            self.stats.duplicated += 1
            delays.append(self._rng.randint(self.delay_min_ms, self.delay_max_ms))
        return delays

    def can_deliver(self, message: Message) -> bool:
        """A cut made while the message was in flight still stops it."""
        if (message.sender, message.recipient) in self._blocked:
            self.stats.blocked += 1
            return False
        return True

    # ---- partitions ----------------------------------------------------------------------

    @property
    def partitioned(self) -> bool:
        return bool(self._blocked)

    def block(self, senders: Iterable[int], recipients: Iterable[int]) -> None:
        """Cut every link from a sender to a recipient (one direction only)."""
        recipient_list = list(recipients)
        for sender in senders:
            for recipient in recipient_list:
                if sender != recipient:
                    self._blocked.add((sender, recipient))

    def partition_symmetric(self, side_a: Sequence[int], side_b: Sequence[int]) -> None:
        self.block(side_a, side_b)
        self.block(side_b, side_a)
        self.partition_description = f"split {sorted(side_a)} | {sorted(side_b)}"

    def partition_asymmetric(self, senders: Sequence[int], deaf: Sequence[int]) -> None:
        """``deaf`` can still send to ``senders`` but hears nothing back from them."""
        self.block(senders, deaf)
        self.partition_description = f"one-way {sorted(senders)} -/-> {sorted(deaf)}"

    def partition_bridge(self, side_a: Sequence[int], side_b: Sequence[int], bridge: int) -> None:
        """Two halves that cannot talk to each other, both still connected to ``bridge``."""
        self.block(side_a, side_b)
        self.block(side_b, side_a)
        self.partition_description = f"bridge {sorted(side_a)} <{bridge}> {sorted(side_b)}"

    def isolate(self, node_id: int, others: Sequence[int]) -> None:
        self.block([node_id], others)
        self.block(others, [node_id])
        self.partition_description = f"isolate {node_id}"

    def heal(self) -> None:
        self._blocked.clear()
        self.partition_description = ""

    def heal_everything(self) -> None:
        """No cuts, no loss, no duplication: what the liveness check runs on."""
        self.heal()
        self.link_drop_probability.clear()
        self.drop_probability = 0.0
        self.duplicate_probability = 0.0
