"""The register linearizability checker: pairing history records, known linearizable and
non-linearizable histories, per-key verdicts, the state budget, and a property: sequential
runs of a real register, their intervals stretched to overlap, are linearizable, and stay
refuted once one read is corrupted to a value nobody wrote.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paramstore.chaos._linearizability import (
    KeyResult,
    Operation,
    check_linearizable,
    pair_history,
)

# ---- helpers ------------------------------------------------------------------------------------


class _Ops:
    """Builds a history with one process per operation and indexes in the order written."""

    def __init__(self) -> None:
        self.ops: list[Operation] = []

    def add(
        self, f: str, value: Any, start: float, end: float | None, outcome: str = "ok", key: str = "k"
    ) -> int:
        index = len(self.ops)
        complete = None if outcome == "info" else end
        self.ops.append(Operation(index, f, key, value, start, complete, outcome, index))
        return index

    def write(self, value: Any, start: float, end: float | None, outcome: str = "ok", key: str = "k") -> int:
        return self.add("write", value, start, end, outcome, key)

    def read(self, value: Any, start: float, end: float | None, outcome: str = "ok", key: str = "k") -> int:
        return self.add("read", value, start, end, outcome, key)

    def cas(
        self, expected: Any, new: Any, start: float, end: float | None, outcome: str = "ok", key: str = "k"
    ) -> int:
        return self.add("cas", (expected, new), start, end, outcome, key)


def _only(ops: _Ops, **kwargs: Any) -> KeyResult:
    result = check_linearizable(ops.ops, **kwargs)
    assert len(result.keys) == 1
    return result.keys[0]


def _record(index: int, process: Any, kind: str, f: str, key: str, value: Any, time: float) -> dict[str, Any]:
    return {
        "index": index,
        "process": process,
        "type": kind,
        "f": f,
        "key": key,
        "value": value,
        "time": time,
    }


# ---- pair_history -------------------------------------------------------------------------------


def test_pair_history_pairs_invokes_with_their_completions() -> None:
    records = [
        _record(0, 1, "invoke", "write", "a", 5, 0.0),
        _record(1, 2, "invoke", "read", "a", None, 0.5),
        _record(2, 1, "ok", "write", "a", 5, 1.0),
        _record(3, 3, "invoke", "cas", "b", [None, [1, 2]], 1.5),
        _record(4, 2, "ok", "read", "a", 5, 2.0),
        _record(5, 3, "fail", "cas", "b", [None, [1, 2]], 3.0),
        _record(6, 2, "invoke", "read", "b", None, 4.0),
        _record(7, 2, "ok", "read", "b", None, 5.0),
    ]
    assert pair_history(records) == [
        Operation(1, "write", "a", 5, 0.0, 1.0, "ok", 0),
        Operation(2, "read", "a", 5, 0.5, 2.0, "ok", 1),
        Operation(3, "cas", "b", (None, (1, 2)), 1.5, 3.0, "fail", 3),  # lists become tuples
        Operation(2, "read", "b", None, 4.0, 5.0, "ok", 6),
    ]


def test_pair_history_unfinished_and_info_operations_have_unknown_outcomes() -> None:
    records = [
        _record(0, 1, "invoke", "write", "a", 1, 0.0),
        _record(1, 2, "invoke", "read", "a", None, 0.1),
        _record(2, 1, "info", "write", "a", 1, 3.0),
        _record(3, 1, "invoke", "write", "a", 2, 4.0),  # the process goes on after an info
        _record(4, 3, "invoke", "read", "a", None, 4.5),
        _record(5, 3, "fail", "read", "a", None, 4.6),
    ]
    ops = pair_history(records)
    assert [(op.index, op.outcome, op.complete_time, op.value) for op in ops] == [
        (0, "info", None, 1),
        (1, "info", None, None),  # never completed
        (3, "info", None, 2),  # never completed
        (4, "fail", 4.6, None),
    ]


def test_pair_history_ignores_other_operations() -> None:
    records = [
        {"index": 0, "process": 7, "type": "invoke", "f": "push", "push_id": 3, "time": 0.0},
        _record(1, 1, "invoke", "write", "a", 1, 0.1),
        {"index": 2, "process": 7, "type": "ok", "f": "push", "push_id": 3, "time": 0.2},
        {"index": 3, "process": 8, "type": "ok", "f": "pull", "applied": {}, "time": 0.3},  # no invoke
        _record(4, 1, "ok", "write", "a", 1, 0.4),
    ]
    assert pair_history(records) == [Operation(1, "write", "a", 1, 0.1, 0.4, "ok", 1)]


@pytest.mark.parametrize(
    ("records", "match"),
    [
        ([_record(0, 1, "ok", "write", "a", 1, 0.0)], "without an invoke"),
        (
            [_record(0, 1, "invoke", "write", "a", 1, 0.0), _record(1, 1, "invoke", "read", "a", None, 1.0)],
            "invokes again",
        ),
        ([{"index": 0, "process": 1, "type": "invoke", "f": "read", "key": "a"}], "misses field.*time"),
        ([{"index": 0, "type": "invoke", "f": "read", "key": "a", "time": 0.0}], "misses field.*process"),
        ([{"index": 0, "process": 1, "type": "invoke", "key": "a", "time": 0.0}], "no 'f' field"),
        (
            [{"index": 0, "process": 1, "type": "invoke", "f": "write", "key": "a", "time": 0.0}],
            "needs a 'value'",
        ),
        (
            [
                _record(0, 1, "invoke", "read", "a", None, 0.0),
                {"index": 1, "process": 1, "type": "ok", "f": "read", "key": "a", "time": 1.0},
            ],
            "ok read needs a 'value'",
        ),
        ([_record(0, 1, "invoke", "cas", "a", [1, 2, 3], 0.0)], r"\[expected, new\]"),
        ([_record(0, 1, "begin", "read", "a", None, 0.0)], "unknown type"),
        ([_record(0, "p", "invoke", "read", "a", None, 0.0)], "process must be an int"),
        (
            [_record(0, 1, "invoke", "read", "a", None, 0.0), _record(1, 1, "ok", "read", "b", None, 1.0)],
            "does not match",
        ),
        (
            [_record(0, 1, "invoke", "read", "a", None, 2.0), _record(1, 1, "ok", "read", "a", None, 1.0)],
            "before invoke time",
        ),
    ],
)
def test_pair_history_rejects_malformed_histories(records: list[dict[str, Any]], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        pair_history(records)


def test_pair_history_feeds_the_checker() -> None:
    records = [
        _record(0, 1, "invoke", "write", "a", 1, 0.0),
        _record(1, 1, "ok", "write", "a", 1, 1.0),
        _record(2, 2, "invoke", "read", "a", None, 2.0),
        _record(3, 2, "ok", "read", "a", None, 3.0),  # stale
    ]
    result = check_linearizable(pair_history(records))
    assert [key.failing_ops for key in result.violations] == [(2,)]


# ---- linearizable histories ---------------------------------------------------------------------


def test_empty_history_is_linearizable() -> None:
    result = check_linearizable([])
    assert result.ok
    assert result.keys == ()


def test_sequential_history() -> None:
    h = _Ops()
    h.read(None, 0, 1)
    h.write(1, 2, 3)
    h.read(1, 4, 5)
    h.write(2, 6, 7)
    h.cas(2, 3, 8, 9)
    h.read(3, 10, 11)
    result = _only(h)
    assert result.linearizable is True
    assert result.operations == 6
    assert result.linearization == (0, 1, 2, 3, 4, 5)
    assert result.failing_ops == ()


@pytest.mark.parametrize("seen", [None, 1])
def test_read_concurrent_with_a_write_sees_old_or_new(seen: Any) -> None:
    h = _Ops()
    h.write(1, 0, 10)
    h.read(seen, 2, 5)
    assert _only(h).linearizable is True


@pytest.mark.parametrize("seen", [None, 1, 2])
def test_read_concurrent_with_two_writes(seen: Any) -> None:
    h = _Ops()
    h.write(1, 0, 10)
    h.write(2, 1, 9)
    h.read(seen, 2, 5)
    assert _only(h).linearizable is True


def test_reads_may_see_concurrent_writes_in_either_order() -> None:
    h = _Ops()
    h.write(1, 0, 10)
    h.write(2, 0, 10)
    h.read(2, 1, 2)
    h.read(1, 3, 4)  # w2, r -> 2, w1, r -> 1
    assert _only(h).linearizable is True


def test_info_write_later_observed() -> None:
    h = _Ops()
    h.write(1, 0, None, outcome="info")
    h.read(None, 1, 2)  # not applied yet
    h.read(1, 100, 101)  # applied long after its client gave up
    h.read(1, 102, 103)
    assert _only(h).linearizable is True


def test_info_write_never_observed() -> None:
    h = _Ops()
    h.write(1, 0, None, outcome="info")
    h.read(None, 5, 6)
    h.write(2, 7, 8)
    h.read(2, 9, 10)
    result = _only(h)
    assert result.linearizable is True
    assert 0 not in result.linearization  # nothing reads 1: it is left out of the search
    assert result.operations == 4


def test_unobserved_info_writes_do_not_multiply_the_search() -> None:
    h = _Ops()
    for value in range(40):
        h.write(value, 0, None, outcome="info")  # a burst of timeouts
    h.write("w", 1, 2)
    stale = h.read(None, 3, 4)
    result = _only(h)
    assert result.linearizable is False
    assert result.failing_ops == (stale,)
    assert result.explored < 10


def test_observed_info_writes_are_searched() -> None:
    h = _Ops()
    for value in range(10):
        h.write(value, 0, None, outcome="info")
    h.write("w", 1, 2)
    h.read(7, 3, 4)  # info write 7 took effect after "w"
    h.read(3, 5, 6)  # and then info write 3
    result = _only(h)
    assert result.linearizable is True
    assert result.linearization == (10, 7, 11, 3, 12)


def test_info_write_applied_at_most_once() -> None:
    h = _Ops()
    h.write(1, 0, None, outcome="info")
    h.read(1, 1, 2)
    h.write(2, 3, 4)
    h.read(1, 5, 6)  # would need the info write to happen a second time
    assert _only(h).linearizable is False


def test_cas_success_and_failure_sequences() -> None:
    h = _Ops()
    h.cas(None, 1, 0, 1)  # create if absent
    h.cas(None, 5, 2, 3, outcome="fail")  # already present
    h.cas(1, 2, 4, 5)
    h.cas(1, 3, 6, 7, outcome="fail")
    h.read(2, 8, 9)
    h.cas(7, 8, 10, None, outcome="info")  # cannot have applied: compare fails
    h.read(2, 12, 13)
    h.cas(2, 4, 14, None, outcome="info")
    h.read(4, 16, 17)
    assert _only(h).linearizable is True


def test_failed_and_info_reads_constrain_nothing() -> None:
    h = _Ops()
    h.write(1, 0, 1)
    h.read(None, 2, 3, outcome="fail")
    h.read(None, 4, None, outcome="info")
    h.write(7, 5, 6, outcome="fail")  # not applied
    h.read(1, 7, 8)
    result = _only(h)
    assert result.linearizable is True
    assert result.operations == 5


# ---- non-linearizable histories -----------------------------------------------------------------


def test_stale_read_after_completed_write() -> None:
    h = _Ops()
    w = h.write(1, 0, 1)
    r = h.read(None, 2, 3)
    result = _only(h)
    assert result.linearizable is False
    assert result.failing_ops == (r,)
    assert result.linearization == (w,)
    assert "index 1" in result.message and "register at 1" in result.message


def test_read_after_read_regression_with_a_concurrent_write() -> None:
    h = _Ops()
    w = h.write(1, 0, 10)
    r1 = h.read(1, 1, 2)
    r2 = h.read(None, 3, 4)  # new then old
    result = _only(h)
    assert result.linearizable is False
    assert result.linearization == (w, r1)
    assert result.failing_ops == (r2,)


def test_lost_write_read_returns_a_value_never_written() -> None:
    h = _Ops()
    h.write(1, 0, 1)
    h.read(1, 2, 3)
    r = h.read(42, 4, 5)
    result = _only(h)
    assert result.linearizable is False
    assert result.failing_ops == (r,)


def test_ok_cas_whose_expected_value_did_not_match() -> None:
    h = _Ops()
    h.write(1, 0, 1)
    c = h.cas(2, 3, 2, 3)
    result = _only(h)
    assert result.linearizable is False
    assert result.failing_ops == (c,)


def test_failed_write_observed() -> None:
    h = _Ops()
    h.write(1, 0, 1, outcome="fail")  # "fail" means it certainly did not happen
    r = h.read(1, 2, 3)
    assert _only(h).failing_ops == (r,)


def test_info_write_observed_then_lost() -> None:
    h = _Ops()
    h.write(1, 0, None, outcome="info")
    h.read(1, 1, 2)
    r = h.read(None, 3, 4)
    result = _only(h)
    assert result.linearizable is False
    assert result.failing_ops == (r,)


def test_violations_are_reported_per_key() -> None:
    h = _Ops()
    h.write(1, 0, 1, key="a")
    h.write(1, 0, 1, key="b")
    h.read(1, 2, 3, key="b")
    h.write(2, 4, 5, key="b")
    stale = h.read(None, 6, 7, key="a")
    h.read(2, 6, 7, key="b")
    result = check_linearizable(h.ops)
    assert not result.ok
    assert [key.key for key in result.keys] == ["a", "b"]
    (violation,) = result.violations
    assert violation.key == "a"
    assert violation.failing_ops == (stale,)
    assert violation.operations == 2
    assert result.keys[1].linearizable is True
    assert result.keys[1].operations == 4
    assert result.unknown == ()


# ---- the budget and validation ------------------------------------------------------------------


def _concurrent_writes_and_impossible_read(writes: int) -> _Ops:
    """Refuting it means trying every subset of the writes: about 2**writes configurations."""
    h = _Ops()
    for value in range(writes):
        h.write(value, 0, 100)
    h.read("never written", 0, 100)
    return h


def test_budget_exhausted_gives_unknown() -> None:
    result = check_linearizable(_concurrent_writes_and_impossible_read(40).ops, max_states_per_key=50)
    (key,) = result.keys
    assert key.linearizable is None
    assert key.explored == 50
    assert key.failing_ops == ()
    assert "gave up" in key.message
    assert result.unknown == (key,)
    assert result.violations == ()
    assert not result.ok


def test_small_concurrent_history_is_refuted_exhaustively() -> None:
    (key,) = check_linearizable(_concurrent_writes_and_impossible_read(6).ops).keys
    assert key.linearizable is False
    assert key.failing_ops == (6,)
    assert key.explored > 2**6


def test_check_rejects_impossible_operations() -> None:
    with pytest.raises(ValueError, match="max_states_per_key"):
        check_linearizable([], max_states_per_key=0)
    with pytest.raises(ValueError, match="needs a complete_time"):
        check_linearizable([Operation(1, "write", "a", 1, 0.0, None, "ok", 0)])
    with pytest.raises(ValueError, match="before invoke_time"):
        check_linearizable([Operation(1, "write", "a", 1, 2.0, 1.0, "ok", 0)])
    with pytest.raises(ValueError, match="f must be"):
        check_linearizable([Operation(1, "push", "a", 1, 0.0, 1.0, "ok", 0)])
    with pytest.raises(ValueError, match=r"\[expected, new\]"):
        check_linearizable([Operation(1, "cas", "a", 1, 0.0, 1.0, "ok", 0)])


# ---- property: real sequential runs, stretched ---------------------------------------------------

KEYS = ("a", "b", "c")
SLOT = 10.0  # op i runs in [i * SLOT, i * SLOT + SLOT / 2] before stretching
STEPS = st.lists(
    st.tuples(
        st.sampled_from(("read", "write", "cas")),
        st.sampled_from(KEYS),
        st.integers(0, 3),  # the value written (write, cas new)
        st.none() | st.integers(0, 3),  # a cas's expected value
        st.sampled_from(("ok", "ok", "ok", "info", "fail")),
        st.booleans(),  # whether an info write / cas took effect
        # Invoke moved earlier, completion later, by this much: up to 4 slots. (Integers: floats
        # shrink to 0.0 too often to make much overlap.)
        st.integers(0, 4 * int(SLOT)),
        st.integers(0, 4 * int(SLOT)),
    ),
    min_size=5,
    max_size=40,
)
NEVER_WRITTEN = "never written"


def _run_sequentially(steps: list[tuple[Any, ...]]) -> list[Operation]:
    """Executes the steps one after another on a dict, then stretches every interval.

    The unstretched history is linearizable by construction (each op at its real point);
    stretching only removes real-time constraints, so it stays linearizable.
    """
    state: dict[str, Any] = {}
    ops: list[Operation] = []
    for i, (f, key, value, expected, outcome, took_effect, earlier, later) in enumerate(steps):
        current = state.get(key)
        invoke = i * SLOT - earlier
        complete: float | None = i * SLOT + SLOT / 2 + later
        if f == "read":
            recorded: Any = current if outcome == "ok" else None
        elif f == "write":
            recorded = value
            if outcome == "ok" or (outcome == "info" and took_effect):
                state[key] = value
        else:
            recorded = (expected, value)
            if current != expected and outcome == "ok":
                outcome = "fail"  # the system says the compare failed
            if current == expected and (outcome == "ok" or (outcome == "info" and took_effect)):
                state[key] = value
        if outcome == "info":
            complete = None
        ops.append(Operation(i, f, key, recorded, invoke, complete, outcome, i))
    return ops


@settings(max_examples=100, deadline=None, derandomize=True)
@given(STEPS)
def test_stretched_sequential_runs_are_linearizable(steps: list[tuple[Any, ...]]) -> None:
    ops = _run_sequentially(steps)
    result = check_linearizable(ops)
    assert result.ok, [key.message for key in result.keys if key.linearizable is not True]
    assert sum(key.operations for key in result.keys) == len(ops)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(STEPS, st.integers(0, 1000))
def test_a_read_of_a_value_never_written_is_caught(steps: list[tuple[Any, ...]], pick: int) -> None:
    ops = _run_sequentially(steps)
    reads = [i for i, op in enumerate(ops) if op.f == "read" and op.outcome == "ok"]
    if not reads:  # make one, after everything (its value is overwritten below)
        end = (len(ops) + 5) * SLOT
        ops.append(Operation(len(ops), "read", "a", None, end, end + 1, "ok", len(ops)))
        reads = [len(ops) - 1]
    target = ops[reads[pick % len(reads)]]
    ops[target.index] = Operation(
        target.process,
        "read",
        target.key,
        NEVER_WRITTEN,
        target.invoke_time,
        target.complete_time,
        "ok",
        target.index,
    )
    result = check_linearizable(ops)
    (violation,) = result.violations
    assert violation.key == target.key
    assert violation.failing_ops
    assert all(key.linearizable is True for key in result.keys if key.key != target.key)


# ---- property: agreement with brute force on small concurrent histories -------------------------


def _brute_force_linearizable(ops: list[Operation]) -> bool:
    """Tries every order of the ok ops plus every subset of the info writes / cas."""
    searched = [op for op in ops if op.outcome == "ok" or (op.outcome == "info" and op.f != "read")]
    oks = [op for op in searched if op.outcome == "ok"]
    infos = [op for op in searched if op.outcome == "info"]

    def complete(op: Operation) -> float:
        return op.complete_time if op.complete_time is not None and op.outcome == "ok" else math.inf

    def legal(order: tuple[Operation, ...]) -> bool:
        if any(
            complete(later) < earlier.invoke_time
            for i, earlier in enumerate(order)
            for later in order[i + 1 :]
        ):
            return False
        state: Any = None
        for op in order:
            if op.f == "read" and op.value != state:
                return False
            if op.f == "cas":
                if op.value[0] != state:
                    return False
                state = op.value[1]
            elif op.f == "write":
                state = op.value
        return True

    subsets = (subset for size in range(len(infos) + 1) for subset in itertools.combinations(infos, size))
    return any(legal(order) for subset in subsets for order in itertools.permutations(oks + list(subset)))


SMALL_OPS = st.lists(
    st.tuples(
        st.sampled_from(("read", "write", "cas")),
        st.sampled_from((None, 1, 2)),
        st.sampled_from((None, 1, 2)),
        st.sampled_from(("ok", "ok", "info", "fail")),
        st.integers(0, 10),
        st.integers(0, 6),
    ),
    max_size=5,
)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(SMALL_OPS)
def test_agrees_with_brute_force_on_small_histories(steps: list[tuple[Any, ...]]) -> None:
    ops = []
    for i, (f, first, second, outcome, start, length) in enumerate(steps):
        value = (first, second) if f == "cas" else first if outcome == "ok" or f == "write" else None
        complete = None if outcome == "info" else float(start + length)
        ops.append(Operation(i, f, "k", value, float(start), complete, outcome, i))
    assert check_linearizable(ops).ok == _brute_force_linearizable(ops)
