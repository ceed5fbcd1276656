"""The parameter checker on handmade histories: it passes correct ones and names the
operations of each kind of violation (lost, doubled, phantom, stale, wrong final state)."""

from __future__ import annotations

from typing import Any

import numpy as np

from paramstore.chaos._params_checker import check_params
from paramstore.chaos._workload import applied_ranges

LEAVES = ("leaf0", "leaf1")


class _H:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.t = 0.0

    def add(self, process: int, kind: str, f: str, **fields: Any) -> int:
        self.t += 1.0
        self.records.append(
            {"index": len(self.records), "process": process, "type": kind, "f": f, "time": self.t, **fields}
        )
        return len(self.records) - 1

    def push(self, process: int, push_id: int, outcome: str = "ok") -> None:
        self.add(process, "invoke", "push", push_id=push_id)
        self.add(process, outcome, "push", push_id=push_id)

    def pull(self, process: int, ids: dict[str, list[int]], anomalies: int = 0) -> int:
        self.add(process, "invoke", "pull")
        applied = {leaf: [[i, i + 1] for i in sorted(ids.get(leaf, []))] for leaf in LEAVES}
        return self.add(process, "ok", "pull", applied=applied, anomalies=anomalies, step=0)


def _final(elements: int, applied: dict[int, float]) -> dict[str, np.ndarray]:
    values = np.zeros(elements, np.float32)
    for push_id, value in applied.items():
        values[push_id] = value
    return {leaf: values.copy() for leaf in LEAVES}


def test_applied_ranges_reads_the_weights() -> None:
    weights = np.array([-1, -1, 0, -1, -2, 0, -1], np.float32)
    assert applied_ranges(weights) == ([[0, 2], [3, 4], [6, 7]], 1)


def test_a_correct_history_passes() -> None:
    h = _H()
    h.push(1, 0)
    h.pull(9, {"leaf0": [0], "leaf1": [0]})
    h.push(1, 1, "info")  # unknown outcome: may be in or out
    h.push(2, 5, "fail")
    h.pull(9, {"leaf0": [0, 1], "leaf1": [0]})  # concurrent-looking partial visibility of an info push
    verdict = check_params(h.records, _final(8, {0: -1.0, 1: -1.0}))
    assert verdict.ok, verdict.violations
    assert verdict.pushes == {"ok": 1, "info": 1, "fail": 1} and verdict.pulls == 2


def test_a_lost_acknowledged_push_is_reported_with_its_operations() -> None:
    h = _H()
    h.push(1, 0)
    pull = h.pull(9, {"leaf0": [0]})  # leaf1 lost it
    verdict = check_params(h.records, _final(4, {0: -1.0}))
    assert not verdict.ok
    descriptions = [d for d, _ in verdict.violations]
    assert any("acked before it began, in leaf1" in d for d in descriptions)
    assert any(pull in indexes for _, indexes in verdict.violations)


def test_double_application_phantoms_and_stale_reads_are_reported() -> None:
    h = _H()
    h.add(1, "invoke", "push", push_id=0)
    first = h.pull(9, {"leaf0": [0], "leaf1": [0]})  # push 0 seen while in flight: fine
    h.add(1, "info", "push", push_id=0)
    h.pull(9, {"leaf0": [], "leaf1": [0]})  # then gone from leaf0: stale
    h.pull(8, {"leaf0": [0, 3], "leaf1": [0]}, anomalies=1)  # push 3 never invoked; a doubled element
    verdict = check_params(h.records, _final(4, {0: -2.0}))
    descriptions = " | ".join(d for d, _ in verdict.violations)
    assert "stale read" in descriptions
    assert "not invoked before it ended" in descriptions
    assert "applied twice" in descriptions
    assert "applied 2 times" in descriptions
    assert any(first in indexes for d, indexes in verdict.violations if "stale" in d)


def test_final_state_lost_and_failed_but_applied() -> None:
    h = _H()
    h.push(1, 0)
    h.push(1, 1, "fail")
    verdict = check_params(h.records, _final(4, {1: -1.0, 3: -1.0}))
    descriptions = " | ".join(d for d, _ in verdict.violations)
    assert "acknowledged push 0 is lost" in descriptions
    assert "reported failed but is applied" in descriptions
    assert "changed without any push" in descriptions
