"""Fault injection rules and the seeded decisions they make (pure: no clock, no I/O).

A ``FaultInjector`` holds the rules of one node. For every message crossing one of the
node's links it returns the *fate* of that message: a tuple of delays in seconds, one per
copy to deliver (``()`` = dropped, ``(0.0,)`` = untouched, two items = duplicated). The
transport applies the fate; the injector never sees a message's contents.

Decisions are drawn from one ``random.Random`` per (direction, peer) link, seeded from the
transport's seed, the node id, the direction and the peer id. So the fate of the n-th
message on a link depends only on the seed, the rules in force and n: it does not depend on
timing or on traffic on other links.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, field

from consensus.transport._errors import FaultRuleError

# The fate of a message no rule touches (shared; tuples are immutable).
UNTOUCHED: tuple[float, ...] = (0.0,)
DROPPED: tuple[float, ...] = ()


class FaultDirection(enum.IntEnum):
    """Which way a rule acts. Values are the wire values of ``raft.FaultDirection``."""

    OUTBOUND = 1
    INBOUND = 2
    BOTH = 3


@dataclass(frozen=True, slots=True)
class FaultRule:
    """What happens to messages on the links between this node and ``peers``.

    ``peers`` empty means every peer. A message that matches goes through every matching
    rule in the order they were added: ``partition`` drops it; otherwise it is dropped with
    ``drop_probability``, copied once more with ``duplicate_probability``, and each copy is
    held back by a delay drawn uniformly from [``delay_ms_min``, ``delay_ms_max``].
    Rules act on the sending side by default; ``direction`` INBOUND or BOTH makes them act
    on what this node receives too (a partition is usually wanted BOTH ways).
    """

    peers: frozenset[int] = field(default_factory=frozenset)
    direction: FaultDirection = FaultDirection.OUTBOUND
    drop_probability: float = 0.0
    duplicate_probability: float = 0.0
    delay_ms_min: float = 0.0
    delay_ms_max: float = 0.0
    partition: bool = False

    def validate(self, delay_ms_max_allowed: float) -> None:
        """Raise ``FaultRuleError`` naming the first field that is out of range."""
        for peer in self.peers:
            if not isinstance(peer, int) or peer <= 0:
                raise FaultRuleError(f"FaultRule.peers: node ids must be positive integers, got {peer!r}")
        if not isinstance(self.direction, FaultDirection):
            raise FaultRuleError(
                f"FaultRule.direction: expected OUTBOUND, INBOUND or BOTH, got {self.direction!r}"
            )
        for name in ("drop_probability", "duplicate_probability"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
                raise FaultRuleError(f"FaultRule.{name}: must be within [0, 1], got {value!r}")
        for name in ("delay_ms_min", "delay_ms_max"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0.0):
                raise FaultRuleError(f"FaultRule.{name}: must be a finite number >= 0, got {value!r}")
        if self.delay_ms_min > self.delay_ms_max:
            raise FaultRuleError(
                f"FaultRule: delay_ms_min ({self.delay_ms_min}) must be <= delay_ms_max ({self.delay_ms_max})"
            )
        if self.delay_ms_max > delay_ms_max_allowed:
            raise FaultRuleError(
                f"FaultRule.delay_ms_max: {self.delay_ms_max} exceeds the transport's limit of "
                f"{delay_ms_max_allowed} ms (TransportConfig.fault_delay_ms_max)"
            )

    def matches(self, direction: FaultDirection, peer_id: int) -> bool:
        if self.direction is not FaultDirection.BOTH and self.direction is not direction:
            return False
        return not self.peers or peer_id in self.peers


class FaultInjector:
    """The fault rules of one node, and the seeded decisions they make."""

    def __init__(self, node_id: int, seed: int, rules_max: int, delay_ms_max: float) -> None:
        if rules_max < 1:
            raise ValueError(f"rules_max must be >= 1, got {rules_max}")
        self.node_id = node_id
        self.seed = seed
        self._rules_max = rules_max
        self._delay_ms_max = delay_ms_max
        self._rules: dict[int, FaultRule] = {}  # insertion order = the order rules apply in
        self._next_rule_id = 1
        self._rngs: dict[tuple[FaultDirection, int], random.Random] = {}

    # ---- rules ----------------------------------------------------------------------------

    def add(self, rule: FaultRule) -> int:
        """Add ``rule`` after the existing ones; returns its id (ids are never reused)."""
        rule.validate(self._delay_ms_max)
        if len(self._rules) >= self._rules_max:
            raise FaultRuleError(
                f"already {len(self._rules)} fault rules (TransportConfig.fault_rules_max); clear some first"
            )
        rule_id = self._next_rule_id
        self._next_rule_id += 1
        self._rules[rule_id] = rule
        return rule_id

    def clear(self, rule_ids: Iterable[int] | None = None) -> int:
        """Remove the given rules (every rule if ``None``); returns how many were removed.

        Unknown ids are ignored, so clearing is idempotent.
        """
        if rule_ids is None:
            cleared = len(self._rules)
            self._rules.clear()
            return cleared
        cleared = 0
        for rule_id in set(rule_ids):
            if self._rules.pop(rule_id, None) is not None:
                cleared += 1
        return cleared

    def rules(self) -> list[tuple[int, FaultRule]]:
        """(id, rule) pairs in the order they apply."""
        return list(self._rules.items())

    @property
    def active(self) -> bool:
        return bool(self._rules)

    # ---- decisions ------------------------------------------------------------------------

    def fate(self, direction: FaultDirection, peer_id: int) -> tuple[float, ...]:
        """Delays in seconds, one per copy of the next message on this link; ``()`` = dropped."""
        if direction is FaultDirection.BOTH:
            raise ValueError("a message crosses a link one way: OUTBOUND or INBOUND")
        if not self._rules:
            return UNTOUCHED
        copies: list[float] = [0.0]
        rng: random.Random | None = None
        for rule in self._rules.values():
            if not rule.matches(direction, peer_id):
                continue
            if rule.partition:
                return DROPPED
            if rng is None:
                rng = self._rng(direction, peer_id)
            copies = _apply_rule(rule, copies, rng)
            if not copies:
                return DROPPED
        return tuple(copies)

    def _rng(self, direction: FaultDirection, peer_id: int) -> random.Random:
        key = (direction, peer_id)
        rng = self._rngs.get(key)
        if rng is None:
            # Seeding with a str hashes it with SHA-512: stable across runs and interpreters
            # (unlike hash()), and distinct links get unrelated streams.
            name = f"raft-transport-faults/{self.seed}/{self.node_id}/{direction.name}/{peer_id}"
            rng = random.Random(name)
            self._rngs[key] = rng
        return rng


def _apply_rule(rule: FaultRule, copies: list[float], rng: random.Random) -> list[float]:
    result: list[float] = []
    for delay_s in copies:
        if rule.drop_probability > 0.0 and rng.random() < rule.drop_probability:
            continue
        count = 2 if rule.duplicate_probability > 0.0 and rng.random() < rule.duplicate_probability else 1
        for _ in range(count):
            if rule.delay_ms_max > 0.0:
                result.append(delay_s + rng.uniform(rule.delay_ms_min, rule.delay_ms_max) / 1000.0)
            else:
                result.append(delay_s)
    return result
