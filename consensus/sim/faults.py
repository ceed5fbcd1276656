"""Fault mixes: how hostile a schedule's world is.

``none``, ``light`` and ``heavy`` are fixed presets. ``all`` is *swarm testing*: every
schedule draws its own mix from its seed, switching each kind of fault on or off and picking
its intensity, because a bug that needs, say, lots of duplication but few crashes is found
faster by many different narrow mixes than by one broad one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

PARTITION_KINDS = ("symmetric", "asymmetric", "bridge", "isolate")
FAULT_MIX_NAMES = ("none", "light", "heavy", "all")


@dataclass(frozen=True, slots=True)
class FaultMix:
    """Rates and ranges of every fault the simulator can inject.

    Probabilities named ``*_probability`` are per message (network), per ``Ready`` (mid-Ready
    crash) or per wake-up of the fault generator, which wakes every ``fault_interval_ms``.
    """

    name: str
    delay_min_ms: int = 1
    delay_max_ms: int = 5
    drop_probability: float = 0.0
    duplicate_probability: float = 0.0
    # Per-node tick interval deviates from the nominal by up to this much (clock skew).
    clock_skew_ms_max: int = 0
    fault_interval_ms: int = 50
    crash_probability: float = 0.0
    crash_mid_ready_probability: float = 0.0
    restart_delay_ms_max: int = 400
    partition_probability: float = 0.0
    partition_kinds: tuple[str, ...] = PARTITION_KINDS
    partition_duration_ms_max: int = 600
    flaky_link_probability: float = 0.0
    flaky_link_drop_probability: float = 0.5

    def __post_init__(self) -> None:
        if not 1 <= self.delay_min_ms <= self.delay_max_ms:
            raise ValueError(f"{self.name}: need 1 <= delay_min_ms <= delay_max_ms")
        for kind in self.partition_kinds:
            if kind not in PARTITION_KINDS:
                raise ValueError(f"{self.name}: unknown partition kind {kind!r}; known: {PARTITION_KINDS}")

    @property
    def injects_faults(self) -> bool:
        return bool(
            self.drop_probability
            or self.duplicate_probability
            or self.crash_probability
            or self.crash_mid_ready_probability
            or self.partition_probability
            or self.flaky_link_probability
        )


NO_FAULTS = FaultMix("none")

LIGHT = FaultMix(
    "light",
    delay_min_ms=1,
    delay_max_ms=10,
    drop_probability=0.02,
    duplicate_probability=0.01,
    clock_skew_ms_max=1,
    crash_probability=0.05,
    partition_probability=0.05,
    partition_kinds=("symmetric", "isolate"),
    partition_duration_ms_max=800,
)

HEAVY = FaultMix(
    "heavy",
    delay_min_ms=1,
    delay_max_ms=30,
    drop_probability=0.10,
    duplicate_probability=0.05,
    clock_skew_ms_max=1,
    crash_probability=0.15,
    crash_mid_ready_probability=0.004,
    restart_delay_ms_max=600,
    partition_probability=0.15,
    partition_duration_ms_max=1500,
    flaky_link_probability=0.10,
)

_PRESETS = {mix.name: mix for mix in (NO_FAULTS, LIGHT, HEAVY)}


def _maybe(rng: random.Random, value: float) -> float:
    """``value`` scaled by a random factor, or 0 (the fault switched off) a third of the time."""
    return 0.0 if rng.random() < 1 / 3 else value * rng.uniform(0.2, 1.5)


def swarm_mix(rng: random.Random) -> FaultMix:
    """A random mix for one schedule of the ``all`` setting."""
    delay_min_ms = rng.randint(1, 3)
    kinds = tuple(k for k in PARTITION_KINDS if rng.random() < 0.7) or ("symmetric",)
    return FaultMix(
        "all",
        delay_min_ms=delay_min_ms,
        delay_max_ms=rng.choice((delay_min_ms + 2, 10, 30, 60)),
        drop_probability=_maybe(rng, 0.12),
        duplicate_probability=_maybe(rng, 0.08),
        clock_skew_ms_max=rng.randint(0, 1),
        fault_interval_ms=rng.choice((25, 50, 100)),
        crash_probability=_maybe(rng, 0.15),
        crash_mid_ready_probability=_maybe(rng, 0.005),
        restart_delay_ms_max=rng.choice((100, 400, 1200)),
        partition_probability=_maybe(rng, 0.2),
        partition_kinds=kinds,
        partition_duration_ms_max=rng.choice((300, 800, 2000)),
        flaky_link_probability=_maybe(rng, 0.1),
        flaky_link_drop_probability=rng.uniform(0.2, 0.9),
    )


def resolve_mix(mix: FaultMix | str, rng: random.Random) -> FaultMix:
    """A preset by name, a swarm draw for ``all``, or the given mix itself."""
    if isinstance(mix, FaultMix):
        return mix
    if mix == "all":
        return swarm_mix(rng)
    try:
        return _PRESETS[mix]
    except KeyError:
        raise ValueError(f"unknown fault mix {mix!r}; choose one of {FAULT_MIX_NAMES}") from None
