"""The nemeses by name: what each acts on, what it takes, whether it needs restarts (and
whether it is a fault only under ``--fsync always``).

One table, read by the schedule (what a nemesis may be pointed at), the timeline loader
(what a scripted fault may say) and the attach mode (what it must refuse), so that the
three never disagree. What each nemesis does is in ``_nemesis.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from paramstore.chaos._targets import Kind

__all__ = [
    "CATALOGUE",
    "NEMESES",
    "SKEW_FACTOR_MAX",
    "SKEW_FACTOR_MIN",
    "NemesisSpec",
    "defaults_for",
    "needing_fsync_always",
    "without_restarts",
]

# The bounds of RaftAdmin.SetTickRate (consensus/tick_rate.py).
SKEW_FACTOR_MIN = 0.1
SKEW_FACTOR_MAX = 10.0

_ANY: frozenset[Kind] = frozenset({"group", "node", "leader"})
_GROUP: frozenset[Kind] = frozenset({"group", "leader"})


@dataclass(frozen=True)
class NemesisSpec:
    targets: frozenset[Kind]  # the target kinds a timeline may point it at
    restarts: bool = False  # kills processes that must be restarted when it ends
    params: frozenset[str] = frozenset()  # optional parameters of a scripted fault
    # Loses unsynced writes: a legitimate fault only where every acknowledged write was
    # synced first (``fsync=always``; ``batch`` acknowledges before syncing, by design).
    needs_fsync_always: bool = False


CATALOGUE: dict[str, NemesisSpec] = {
    "kill": NemesisSpec(_ANY, restarts=True),
    "pause": NemesisSpec(_ANY),
    "leader": NemesisSpec(_GROUP, restarts=True),
    "partition": NemesisSpec(_ANY),
    "isolate-leader": NemesisSpec(_GROUP),
    "links": NemesisSpec(_ANY),
    "bridge": NemesisSpec(_ANY),
    "majorities-ring": NemesisSpec(_GROUP),
    "skew": NemesisSpec(_ANY, params=frozenset({"factor"})),
    "move": NemesisSpec(frozenset({"group"})),  # a group: move shards off that store group
    "power-loss": NemesisSpec(_GROUP, restarts=True, needs_fsync_always=True),
    "fsync-fail": NemesisSpec(_ANY, restarts=True),
    "membership": NemesisSpec(frozenset({"group", "node"})),  # coordinator followers only
}

NEMESES = tuple(CATALOGUE)


def without_restarts() -> tuple[str, ...]:
    """The nemeses that never kill a process (the ones an attached run may use)."""
    return tuple(name for name, spec in CATALOGUE.items() if not spec.restarts)


def needing_fsync_always() -> tuple[str, ...]:
    """The nemeses that are faults only under ``fsync=always`` (refused under any other)."""
    return tuple(name for name, spec in CATALOGUE.items() if spec.needs_fsync_always)


def defaults_for(fsync: str) -> tuple[str, ...]:
    """The nemeses a local run under the ``fsync`` policy uses when none are named."""
    return tuple(n for n in NEMESES if fsync == "always" or not CATALOGUE[n].needs_fsync_always)
