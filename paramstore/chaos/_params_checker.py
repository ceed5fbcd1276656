"""The parameter checker: what the pulls and the final weights reveal about the pushes.

The workload's gradients make every pull list, leaf by leaf, the pushes it contains (see
``_workload``). From the history this checks:

* **no double application**: no pulled element is other than 0 or -1 (``anomalies``);
* **no phantom**: a pull contains no push that had not been invoked when the pull completed;
* **no lost acknowledged push** (real-time order): a pull contains, in every leaf, every push
  acknowledged before the pull was invoked;
* **no stale pull**: a pull contains, leaf by leaf, everything that a pull which completed
  before it was invoked contained (reads never go back in time);
* **final state**: after the faults are healed, the final weights contain every
  acknowledged push exactly once in every leaf, no failed push, and unknown ones at most once.

Each violation names the operations involved (their history indexes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["ParamsVerdict", "check_params"]

_VIOLATIONS_MAX = 200  # reported per checker; the count goes on


@dataclass
class ParamsVerdict:
    ok: bool = True
    pushes: dict[str, int] = field(default_factory=dict)  # outcome -> count
    pulls: int = 0
    violations: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)
    violation_count: int = 0

    def fail(self, description: str, indexes: tuple[int, ...]) -> None:
        self.ok = False
        self.violation_count += 1
        if len(self.violations) < _VIOLATIONS_MAX:
            self.violations.append((description, indexes))


def _ids(ranges: Sequence[Sequence[int]]) -> set[int]:
    return {i for start, stop in ranges for i in range(start, stop)}


@dataclass(frozen=True)
class _Pull:
    process: int
    invoke: float
    complete: float
    invoke_index: int
    index: int
    applied: dict[str, set[int]]
    anomalies: int


def check_params(
    history: Sequence[Mapping[str, Any]], final_weights: Mapping[str, npt.NDArray[np.float32]] | None
) -> ParamsVerdict:
    verdict = ParamsVerdict()
    open_ops: dict[int, Mapping[str, Any]] = {}
    push_outcome: dict[int, str] = {}
    push_index: dict[int, int] = {}  # push id -> index of its completion (or invoke)
    invoked_at: dict[int, float] = {}
    acked_at: dict[int, float] = {}
    pulls: list[_Pull] = []
    for record in history:
        f = record.get("f")
        if f not in ("push", "pull"):
            continue
        process = int(record["process"])
        if record["type"] == "invoke":
            open_ops[process] = record
            if f == "push":
                push_id = int(record["push_id"])
                invoked_at[push_id] = float(record["time"])
                push_index[push_id] = int(record["index"])
                push_outcome[push_id] = "info"
            continue
        invoke = open_ops.pop(process, None)
        if invoke is None:
            continue
        if f == "push":
            push_id = int(record["push_id"])
            push_outcome[push_id] = str(record["type"])
            push_index[push_id] = int(record["index"])
            if record["type"] == "ok":
                acked_at[push_id] = float(record["time"])
        elif record["type"] == "ok":
            pulls.append(
                _Pull(
                    process,
                    float(invoke["time"]),
                    float(record["time"]),
                    int(invoke["index"]),
                    int(record["index"]),
                    {leaf: _ids(ranges) for leaf, ranges in record["applied"].items()},
                    int(record.get("anomalies", 0)),
                )
            )
    for outcome in push_outcome.values():
        verdict.pushes[outcome] = verdict.pushes.get(outcome, 0) + 1
    verdict.pulls = len(pulls)
    _check_pulls(verdict, pulls, invoked_at, acked_at, push_index)
    if final_weights is not None:
        _check_final(verdict, final_weights, push_outcome, push_index)
    return verdict


def _check_pulls(
    verdict: ParamsVerdict,
    pulls: list[_Pull],
    invoked_at: Mapping[int, float],
    acked_at: Mapping[int, float],
    push_index: Mapping[int, int],
) -> None:
    acked = sorted(acked_at.items(), key=lambda item: item[1])
    by_completion = sorted(pulls, key=lambda p: p.complete)
    floor: dict[str, set[int]] = {}
    floor_from: dict[str, int] = {}  # leaf -> index of the latest pull merged into the floor
    acked_before: set[int] = set()
    next_ack = 0
    next_done = 0
    for pull in sorted(pulls, key=lambda p: p.invoke):
        while next_ack < len(acked) and acked[next_ack][1] < pull.invoke:
            acked_before.add(acked[next_ack][0])
            next_ack += 1
        while next_done < len(by_completion) and by_completion[next_done].complete < pull.invoke:
            done = by_completion[next_done]
            for leaf, ids in done.applied.items():
                floor.setdefault(leaf, set()).update(ids)
                floor_from[leaf] = done.index
            next_done += 1
        if pull.anomalies:
            verdict.fail(
                f"pull holds {pull.anomalies} element(s) other than 0 or -1: a push applied twice",
                (pull.invoke_index, pull.index),
            )
        for leaf, ids in pull.applied.items():
            phantom = [i for i in ids if invoked_at.get(i, float("inf")) > pull.complete]
            if phantom:
                verdict.fail(
                    f"pull contains push(es) {sorted(phantom)[:5]} in {leaf} not invoked before it ended",
                    (pull.invoke_index, pull.index),
                )
            lost = sorted(acked_before - ids)
            if lost:
                verdict.fail(
                    f"pull misses {len(lost)} push(es) acked before it began, in {leaf} (e.g. {lost[:5]})",
                    (push_index[lost[0]], pull.invoke_index, pull.index),
                )
            stale = sorted(floor.get(leaf, set()) - ids)
            if stale:
                verdict.fail(
                    f"pull misses {len(stale)} push(es) in {leaf} that an earlier completed pull contained "
                    f"(e.g. {stale[:5]}): a stale read",
                    (floor_from[leaf], pull.invoke_index, pull.index),
                )


def _check_final(
    verdict: ParamsVerdict,
    final_weights: Mapping[str, npt.NDArray[np.float32]],
    push_outcome: Mapping[int, str],
    push_index: Mapping[int, int],
) -> None:
    for leaf, weights in final_weights.items():
        values = np.asarray(weights).reshape(-1)
        for push_id, outcome in sorted(push_outcome.items()):
            value = float(values[push_id])
            where = (push_index[push_id],)
            if value not in (0.0, -1.0):
                verdict.fail(f"final {leaf}: push {push_id} ({outcome}) applied {-value:g} times", where)
            elif outcome == "ok" and value != -1.0:
                verdict.fail(f"final {leaf}: acknowledged push {push_id} is lost", where)
            elif outcome == "fail" and value != 0.0:
                verdict.fail(f"final {leaf}: push {push_id} was reported failed but is applied", where)
        unknown = np.flatnonzero(values != 0.0)
        stray = [int(i) for i in unknown if int(i) not in push_outcome]
        if stray:
            verdict.fail(f"final {leaf}: element(s) {stray[:5]} changed without any push", ())
