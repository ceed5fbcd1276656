"""``TickRate``: a node's Raft tick timer, sped up or slowed down on purpose.

Raft's timing rules (election timeouts, heartbeats, check-quorum) are counted in ticks, and
the driver turns ticks into wall time. A real node whose clock or scheduler runs fast or
slow ticks at another rate than its peers; fault tests reproduce that by scaling one
node's tick interval. The transport owns one ``TickRate`` (so the ``RaftAdmin`` service on
its port can change it: ``SetTickRate``) and the node's driver loop follows it.

The factor is ticks per configured interval: 4 ticks four times as often, 0.25 a quarter as
often, 1 (the start value) is the configured rate. It is bounded to [0.1, 10] because this
is a test hook, not a tuning knob: beyond that range a node either floods its peers with
elections or stops noticing a dead leader for minutes.
"""

from __future__ import annotations

import math
from collections.abc import Callable

__all__ = ["TICK_RATE_MAX", "TICK_RATE_MIN", "TickRate", "TickRateError"]

TICK_RATE_MIN = 0.1
TICK_RATE_MAX = 10.0


class TickRateError(ValueError):
    """A tick rate factor outside [TICK_RATE_MIN, TICK_RATE_MAX] (or not a number)."""


def check_factor(factor: float) -> float:
    """``factor`` as a float if it is a usable tick rate; ``TickRateError`` saying why not."""
    if isinstance(factor, bool) or not isinstance(factor, int | float) or not math.isfinite(factor):
        raise TickRateError(f"tick rate factor must be a finite number, got {factor!r}")
    if not TICK_RATE_MIN <= factor <= TICK_RATE_MAX:
        raise TickRateError(
            f"tick rate factor must be in [{TICK_RATE_MIN:g}, {TICK_RATE_MAX:g}] "
            f"(1 restores the configured rate), got {factor:g}"
        )
    return float(factor)


class TickRate:
    """The current factor, and the driver loops to wake when it changes.

    Not thread-safe: set and read it from the event loop the node runs on.
    """

    def __init__(self) -> None:
        self._factor = 1.0
        self._listeners: list[Callable[[float], None]] = []

    @property
    def factor(self) -> float:
        return self._factor

    @property
    def driven(self) -> bool:
        """Whether some tick timer follows this rate (a node is subscribed)."""
        return bool(self._listeners)

    def interval_s(self, base_interval_s: float) -> float:
        """The wall time of one tick at this rate, for a configured interval of ``base_interval_s``."""
        return base_interval_s / self._factor

    def set(self, factor: float) -> float:
        """Change the rate (``TickRateError`` if out of bounds); returns the previous factor."""
        factor = check_factor(factor)
        previous, self._factor = self._factor, factor
        if factor != previous:
            for listener in list(self._listeners):
                listener(factor)
        return previous

    def subscribe(self, listener: Callable[[float], None]) -> Callable[[], None]:
        """Call ``listener(new_factor)`` on every change; returns the unsubscribe function."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe
