"""Scripted fault timelines (``paramstore chaos --timeline FILE.toml``).

A timeline replaces the seeded random schedule with faults at chosen times, so that a
scenario (a bridge while the leader's clock runs fast, say) can be replayed exactly::

    [[fault]]
    at_s = 2            # seconds after the workload started
    duration_s = 3      # healed after this long
    nemesis = "bridge"  # one of NEMESES
    target = "store:1"  # optional: see _targets.py; drawn from the seed when absent

    [[fault]]
    at_s = 6
    duration_s = 2
    nemesis = "skew"
    target = "leader:coordinator"
    factor = 4          # skew only: the tick rate, 0.1 to 10 (drawn when absent)

The whole file is checked before anything starts, and the first problem is reported on one
line naming the fault (counted from 1, in file order) and the field. Faults may not
overlap: the nemeses heal one fault before the next begins, so a timeline that asked for
two at once would not run as written.
"""

from __future__ import annotations

import itertools
import math
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paramstore.chaos._catalogue import CATALOGUE, SKEW_FACTOR_MAX, SKEW_FACTOR_MIN
from paramstore.chaos._targets import ClusterShape, Target, TargetError, parse_target

__all__ = ["ScriptedFault", "TimelineError", "load_timeline", "timeline_end"]

FIELDS = ("at_s", "duration_s", "nemesis", "target", "factor")
_REQUIRED = ("at_s", "duration_s", "nemesis")
_DURATION_MAX_S = 3600.0
_AT_MAX_S = 24 * 3600.0


class TimelineError(ValueError):
    """A timeline that cannot run as written; the message is one line for the user."""


@dataclass(frozen=True)
class ScriptedFault:
    index: int  # 1-based, in file order
    at_s: float
    duration_s: float
    nemesis: str
    target: Target | None = None
    factor: float | None = None

    @property
    def end_s(self) -> float:
        return self.at_s + self.duration_s


def timeline_end(faults: Sequence[ScriptedFault]) -> float:
    return max((f.end_s for f in faults), default=0.0)


def load_timeline(path: Path, shape: ClusterShape, allowed: Sequence[str]) -> list[ScriptedFault]:
    """The faults of the timeline at ``path``, in time order, checked against the cluster
    ``shape`` and the nemeses ``allowed`` here; ``TimelineError`` for the first problem."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TimelineError(f"timeline {path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise TimelineError(f"timeline {path}: not UTF-8 text: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise TimelineError(f"timeline {path}: not valid TOML: {exc}") from None
    try:
        return _faults(document, shape, allowed)
    except TimelineError as exc:
        raise TimelineError(f"timeline {path}: {exc}") from None


def _faults(document: dict[str, Any], shape: ClusterShape, allowed: Sequence[str]) -> list[ScriptedFault]:
    unknown = sorted(set(document) - {"fault"})
    if unknown:
        raise TimelineError(f"unknown top-level key {unknown[0]!r}; expected only [[fault]] tables")
    tables = document.get("fault")
    if tables is None:
        raise TimelineError("no faults; expected at least one [[fault]] table")
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise TimelineError("'fault' must be an array of tables, written [[fault]]")
    faults = [_fault(i, table, shape, allowed) for i, table in enumerate(tables, start=1)]
    ordered = sorted(faults, key=lambda f: (f.at_s, f.index))
    for before, after in itertools.pairwise(ordered):
        if after.at_s < before.end_s:
            raise TimelineError(
                f"fault {after.index}: at_s: starts at {after.at_s:g} s, before fault {before.index} "
                f"(at {before.at_s:g} s for {before.duration_s:g} s) ends at {before.end_s:g} s; "
                "faults may not overlap"
            )
    return ordered


def _fault(index: int, table: dict[str, Any], shape: ClusterShape, allowed: Sequence[str]) -> ScriptedFault:
    where = f"fault {index}"
    unknown = sorted(set(table) - set(FIELDS))
    if unknown:
        raise TimelineError(f"{where}: unknown field {unknown[0]!r}; expected {', '.join(FIELDS)}")
    for name in _REQUIRED:
        if name not in table:
            raise TimelineError(f"{where}: {name}: missing (every fault needs {', '.join(_REQUIRED)})")
    at_s = _number(where, "at_s", table["at_s"], 0.0, _AT_MAX_S)
    duration_s = _number(where, "duration_s", table["duration_s"], 0.1, _DURATION_MAX_S)
    nemesis = table["nemesis"]
    if nemesis not in CATALOGUE:
        raise TimelineError(f"{where}: nemesis: unknown {nemesis!r}; expected one of {', '.join(CATALOGUE)}")
    spec = CATALOGUE[nemesis]
    if nemesis not in allowed:
        why = "it kills processes, which an attached run cannot restart" if spec.restarts else "not allowed"
        raise TimelineError(f"{where}: nemesis: {nemesis!r}: {why}; expected one of {', '.join(allowed)}")
    target = None
    if "target" in table:
        target = _target(where, nemesis, table["target"], shape)
    factor = None
    if "factor" in table:
        if "factor" not in spec.params:
            raise TimelineError(f"{where}: factor: only the skew nemesis takes a factor, not {nemesis}")
        factor = _number(where, "factor", table["factor"], SKEW_FACTOR_MIN, SKEW_FACTOR_MAX)
    return ScriptedFault(index, at_s, duration_s, nemesis, target, factor)


def _number(where: str, name: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TimelineError(f"{where}: {name}: expected a number from {low:g} to {high:g}, got {value!r}")
    if not low <= value <= high:
        raise TimelineError(f"{where}: {name}: expected a number from {low:g} to {high:g}, got {value:g}")
    return float(value)


def _target(where: str, nemesis: str, value: Any, shape: ClusterShape) -> Target:
    if not isinstance(value, str):
        raise TimelineError(f'{where}: target: expected a string such as "store:1", got {value!r}')
    try:
        target = parse_target(value)
        shape.check(target)
    except TargetError as exc:
        raise TimelineError(f"{where}: target: {exc}") from None
    kinds = CATALOGUE[nemesis].targets
    if target.kind not in kinds:
        raise TimelineError(
            f"{where}: target: {nemesis} acts on a whole group, not one node; "
            "expected coordinator, store:G, leader:coordinator or leader:G"
        )
    return target
