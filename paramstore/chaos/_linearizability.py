"""Linearizability checking for histories of independent key/value registers.

A history is *linearizable* when every operation can be given a single point in time, its
linearization point, somewhere between its invocation and its completion, so that the
operations taken in the order of those points form a legal sequential run of the register
(a read returns the last value written, a compare-and-set succeeds iff the value matched).

**The search** (Wing & Gong's, with Lowe's "just-in-time linearization" and memoization).
A *configuration* is (the set of operations linearized so far, the register's value). From a
configuration, an operation may be linearized next only if it is *minimal*: its invocation
is no later than the earliest completion among the completed operations still pending.
Otherwise some pending operation finished before it began, and real-time order forces that
one first. Each minimal operation the model accepts (a read that sees the current value, a
compare-and-set whose expected value matches, any write) gives a successor configuration;
the history is linearizable iff a configuration with every completed operation linearized
is reachable. Where the search goes next depends only on the configuration, not on the
path that led to it, so each configuration is explored once (a memo set of
``(bitset, value)``, the linearized set being a Python int used as a bitset). The search
walks depth first on an explicit stack (no recursion limit), tries operations in invocation
order, and stops at a budget of configurations: the problem is NP-complete in general, and
the cost grows with how many operations overlap in time, so an unlucky key gives up with
"unknown" instead of running forever.

One shortcut keeps reads cheap: when a minimal read sees the current value, it is linearized
at once and no other successor is tried. That loses nothing. Take any way to finish from the
configuration and delete the read from it: the read changes no state, so the rest stays
legal, and one pending operation fewer can only loosen the minimality rule. The read itself
may go first because it is minimal: nothing pending completed before it began.

**Outcomes.** ``ok``: it happened, inside its interval. ``fail``: it certainly did not
happen, so a failed operation is dropped. That includes a failed compare-and-set: whether
the system refused it or its compare failed, it changed nothing. Keeping it as a constraint
(the value differed from ``expected`` at some point in its interval) would be stricter, but
a "fail" that really means "refused before it was tried" would then be a false alarm.
``info``: the outcome is unknown, so the operation may have taken effect at any point after
its invocation, or never. An info write or compare-and-set is an optional operation with no
completion (completion time +infinity): the search may linearize it, but it does not have
to. An info read returned nothing, so it constrains nothing and is dropped. So is an info write
or compare-and-set whose value no read returns and no compare-and-set expects: applying it
could only be undone by the next write, so leaving it out loses no linearization, and it keeps
a burst of timeouts from multiplying the search.

**Per key** (P-compositionality). Linearizability is *local* (Herlihy & Wing): a history of
several objects is linearizable iff each object's sub-history is. Keys are independent
registers, so each key is checked on its own. That splits one search, exponential in the
concurrency of the whole history, into small ones, each exponential only in the concurrency
on one key. Each key also gets its own budget and its own verdict, so a violation names the
key and its operations.

**Witness.** For a key that is not linearizable the search remembers the deepest
configuration it reached (the most completed operations linearized). The report gives that
linearizable prefix, in linearization order, and the operations that could not come next:
the minimal pending completed operations, none of which the register accepts in that state.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "KeyResult",
    "LinearizabilityResult",
    "Operation",
    "check_linearizable",
    "pair_history",
]

READ: Final = "read"
WRITE: Final = "write"
CAS: Final = "cas"
REGISTER_FS: Final = frozenset({READ, WRITE, CAS})

OK: Final = "ok"
FAIL: Final = "fail"
INFO: Final = "info"
OUTCOMES: Final = frozenset({OK, FAIL, INFO})

INVOKE: Final = "invoke"
_RECORD_FIELDS: Final = ("index", "process", "type", "f", "key", "time")
# Items of a failing key's message: enough to read, not the whole history.
_MESSAGE_OPS_MAX: Final = 10


@dataclass(frozen=True)
class Operation:
    """One register operation of the history: an invocation paired with its completion.

    ``value``: a write's value; a compare-and-set's ``(expected, new)``; an ok read's result
    (``None``: the key was absent), ``None`` for a read that did not complete ok.
    ``complete_time`` is ``None`` when the outcome is unknown (``outcome == "info"``).
    ``index`` is the invocation record's position in the history file, for reports.
    """

    process: int
    f: str
    key: str
    value: Any
    invoke_time: float
    complete_time: float | None
    outcome: str
    index: int


@dataclass(frozen=True)
class KeyResult:
    """The verdict on one key's sub-history.

    ``linearizable`` is ``None`` when the search gave up (its state budget ran out).
    ``operations``: the key's operations in the history, dropped ones (failed operations,
    info reads) included. ``explored``: configurations the search visited.
    ``failing_ops``: when not linearizable, the indexes of the operations that could not be
    linearized after the longest linearizable prefix found; empty otherwise.
    ``linearization``: the indexes of that prefix in linearization order (for a linearizable
    key, a whole linearization; for an unknown one, the deepest prefix reached before giving
    up). Info operations appear in it only where the search chose to apply them.
    """

    key: str
    linearizable: bool | None
    operations: int
    explored: int
    failing_ops: tuple[int, ...]
    message: str
    linearization: tuple[int, ...] = ()


@dataclass(frozen=True)
class LinearizabilityResult:
    """Per-key verdicts, keys sorted. The history is linearizable iff every key is."""

    keys: tuple[KeyResult, ...]

    @property
    def ok(self) -> bool:
        """True iff every key was proven linearizable (an unknown key is not ok)."""
        return all(result.linearizable is True for result in self.keys)

    @property
    def violations(self) -> tuple[KeyResult, ...]:
        """The keys proven not linearizable."""
        return tuple(result for result in self.keys if result.linearizable is False)

    @property
    def unknown(self) -> tuple[KeyResult, ...]:
        """The keys whose search gave up: neither proven nor refuted."""
        return tuple(result for result in self.keys if result.linearizable is None)


# ---- pairing records into operations ----------------------------------------------------------


def pair_history(records: Iterable[Mapping[str, Any]]) -> list[Operation]:
    """Pairs the harness's invoke / completion records into register ``Operation``s.

    Records whose ``f`` is not read / write / cas (pushes, pulls, ...) are skipped, whatever
    their shape: other checkers read them. A process's invoke is completed by that process's
    next ``ok`` / ``fail`` / ``info`` record; an invoke left open at the end of the history is
    an ``info`` operation (it may or may not have happened). A write's and a cas's value come
    from the invoke record, an ok read's from the completion. The result is in invocation
    order.

    Raises ``ValueError`` on a malformed history: a missing field, a completion without an
    invoke, a second invoke of a process before the first completed, a completion that does
    not match its invoke (``f``, ``key``) or ends before it began, a cas value that is not an
    ``[expected, new]`` pair.
    """
    open_invokes: dict[int, tuple[int, Mapping[str, Any]]] = {}
    paired: list[tuple[int, Operation]] = []
    for position, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise ValueError(f"history record {position} is not a mapping: {record!r}")
        if "f" not in record:
            raise ValueError(f"history record {position} has no 'f' field: {record!r}")
        if record["f"] not in REGISTER_FS:
            continue
        _check_record(position, record)
        process = record["process"]
        kind = record["type"]
        if kind == INVOKE:
            if process in open_invokes:
                first = open_invokes[process][1]["index"]
                raise ValueError(
                    f"history record {position} (index {record['index']}): process {process} invokes "
                    f"again before its invoke at index {first} completed"
                )
            open_invokes[process] = (position, record)
        elif kind in OUTCOMES:
            if process not in open_invokes:
                raise ValueError(
                    f"history record {position} (index {record['index']}): a {kind!r} completion of "
                    f"process {process} without an invoke"
                )
            invoke_position, invoke = open_invokes.pop(process)
            paired.append((invoke_position, _operation(invoke, record)))
        else:
            raise ValueError(
                f"history record {position} (index {record['index']}): unknown type {kind!r} "
                f"(expected invoke, ok, fail or info)"
            )
    for invoke_position, invoke in open_invokes.values():
        paired.append((invoke_position, _operation(invoke, None)))
    paired.sort(key=lambda item: item[0])
    return [operation for _, operation in paired]


def _check_record(position: int, record: Mapping[str, Any]) -> None:
    """Raises ``ValueError`` unless a register record has its fields, of usable types."""
    missing = [name for name in _RECORD_FIELDS if name not in record]
    if missing:
        raise ValueError(f"history record {position} misses field(s) {', '.join(missing)}: {record!r}")
    for name in ("index", "process"):
        if not _is_int(record[name]):
            raise ValueError(f"history record {position}: {name} must be an int, not {record[name]!r}")
    if not isinstance(record["key"], str):
        raise ValueError(f"history record {position}: key must be a str, not {record['key']!r}")
    time = record["time"]
    if not (_is_int(time) or isinstance(time, float)) or math.isnan(time):
        raise ValueError(f"history record {position}: time must be a number, not {time!r}")


def _operation(invoke: Mapping[str, Any], completion: Mapping[str, Any] | None) -> Operation:
    """One ``Operation`` from its invoke record and its completion (``None``: never came)."""
    where = f"history record index {invoke['index']}"
    f = invoke["f"]
    outcome = INFO if completion is None else completion["type"]
    if completion is not None:
        where = f"history records index {invoke['index']} and {completion['index']}"
        if completion["f"] != f or completion["key"] != invoke["key"]:
            raise ValueError(
                f"{where}: completion {completion['f']!r} on {completion['key']!r} does not match "
                f"invoke {f!r} on {invoke['key']!r}"
            )
        if completion["time"] < invoke["time"]:
            raise ValueError(
                f"{where}: completion time {completion['time']} before invoke time {invoke['time']}"
            )
    value: Any = None
    if f in (WRITE, CAS):
        if "value" not in invoke:
            raise ValueError(f"{where}: a {f} invoke needs a 'value'")
        value = _cas_pair(invoke["value"], where) if f == CAS else _freeze(invoke["value"])
    elif outcome == OK:
        assert completion is not None
        if "value" not in completion:
            raise ValueError(f"{where}: an ok read needs a 'value' (null: the key was absent)")
        value = _freeze(completion["value"])
    return Operation(
        process=invoke["process"],
        f=f,
        key=invoke["key"],
        value=value,
        invoke_time=float(invoke["time"]),
        complete_time=None if completion is None or outcome == INFO else float(completion["time"]),
        outcome=outcome,
        index=invoke["index"],
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _cas_pair(value: Any, where: str) -> tuple[Hashable, Hashable]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ValueError(f"{where}: a cas value must be [expected, new], not {value!r}")
    return _freeze(value[0]), _freeze(value[1])


def _freeze(value: Any) -> Hashable:
    """A hashable equal of ``value`` (JSON lists become tuples), so states can be memoized.

    Recursion depth is the value's nesting depth, which JSON decoding already bounds.
    """
    if isinstance(value, list | tuple):
        return tuple(_freeze(item) for item in value)
    if isinstance(value, dict):
        return frozenset((key, _freeze(item)) for key, item in value.items())
    if isinstance(value, set | frozenset):
        return frozenset(_freeze(item) for item in value)
    if not isinstance(value, Hashable):
        raise ValueError(f"register value {value!r} is not hashable")
    return value


# ---- the check ----------------------------------------------------------------------------------


def check_linearizable(
    ops: Sequence[Operation], *, max_states_per_key: int = 1_000_000
) -> LinearizabilityResult:
    """Decides, key by key, whether the register history ``ops`` is linearizable.

    Registers start absent (``None``). Each key's search visits at most
    ``max_states_per_key`` configurations; a key that needs more is reported unknown
    (``linearizable=None``) rather than decided. Raises ``ValueError`` for an operation that
    cannot be part of a history (unknown ``f`` or outcome, an ok operation without a
    completion time or completing before its invocation, a cas value that is not a pair).
    """
    if max_states_per_key < 1:
        raise ValueError(f"max_states_per_key must be at least 1, not {max_states_per_key}")
    by_key: dict[str, list[Operation]] = {}
    for op in ops:
        _check_operation(op)
        by_key.setdefault(op.key, []).append(op)
    return LinearizabilityResult(
        tuple(_check_key(key, by_key[key], max_states_per_key) for key in sorted(by_key))
    )


def _check_operation(op: Operation) -> None:
    if op.f not in REGISTER_FS:
        raise ValueError(f"operation index {op.index}: f must be read, write or cas, not {op.f!r}")
    if op.outcome not in OUTCOMES:
        raise ValueError(f"operation index {op.index}: outcome must be ok, fail or info, not {op.outcome!r}")
    if not isinstance(op.key, str):
        raise ValueError(f"operation index {op.index}: key must be a str, not {op.key!r}")
    if math.isnan(op.invoke_time):
        raise ValueError(f"operation index {op.index}: invoke_time is NaN")
    if op.outcome == OK:
        if op.complete_time is None or math.isnan(op.complete_time):
            raise ValueError(f"operation index {op.index}: an ok operation needs a complete_time")
        if op.complete_time < op.invoke_time:
            raise ValueError(
                f"operation index {op.index}: complete_time {op.complete_time} before "
                f"invoke_time {op.invoke_time}"
            )
    if op.f == CAS and op.outcome != FAIL:
        _cas_pair(op.value, f"operation index {op.index}")


def _searched(op: Operation) -> bool:
    """Whether ``op`` constrains the history: not failed (it did not happen), not an info read."""
    return op.outcome == OK or (op.outcome == INFO and op.f != READ)


@dataclass(frozen=True, slots=True, eq=False)
class _Step:
    """A linearization path, newest step first: shared tails keep each stack entry O(1)."""

    position: int
    previous: _Step | None


def _unwind(step: _Step | None) -> list[int]:
    """The positions of a path, oldest first (bounded by its length)."""
    positions: list[int] = []
    while step is not None:
        positions.append(step.position)
        step = step.previous
    positions.reverse()
    return positions


class _KeySearch:
    """The search over one key's operations (see the module docstring).

    Operations are held by *position*, their rank in invocation order, which is also their
    bit in a configuration's bitset.
    """

    def __init__(self, ops: Sequence[Operation]) -> None:
        self.ops = sorted(ops, key=lambda op: (op.invoke_time, op.index))
        self.invoke = [op.invoke_time for op in self.ops]
        self.complete = [
            op.complete_time if op.outcome == OK and op.complete_time is not None else math.inf
            for op in self.ops
        ]
        self.is_info = [op.outcome == INFO for op in self.ops]
        self.info_positions = [position for position, info in enumerate(self.is_info) if info]
        self.info_mask = sum(1 << position for position in self.info_positions)
        self.ok_mask = ((1 << len(self.ops)) - 1) & ~self.info_mask
        self.ok_count = len(self.ops) - len(self.info_positions)
        # The model's arguments: read -> value seen; write -> value; cas -> (expected, new).
        self.kinds = [op.f for op in self.ops]
        self.first: list[Hashable] = []
        self.second: list[Hashable] = []
        for op in self.ops:
            if op.f == CAS:
                expected, new = _cas_pair(op.value, f"operation index {op.index}")
                self.first.append(expected)
                self.second.append(new)
            else:
                self.first.append(_freeze(op.value))
                self.second.append(None)

    def minimal(self, linearized: int) -> tuple[list[int], list[int]]:
        """The pending ok and info operations that may be linearized next, in invocation order.

        Scans from the first pending ok operation while invocations are no later than the
        earliest pending completion seen so far. That running minimum decides exactly: an
        operation further on is invoked no earlier than the ones already scanned and completes
        after its invocation, so its completion cannot exclude any of them. The scan is
        therefore as long as the window of overlapping operations, not the history.
        """
        done = linearized | self.info_mask
        first = (~done & (done + 1)).bit_length() - 1  # the lowest pending ok position
        horizon = math.inf
        ok_ops: list[int] = []
        for position in range(first, len(self.ops)):
            if self.is_info[position] or (linearized >> position) & 1:
                continue
            if self.invoke[position] > horizon:
                break
            ok_ops.append(position)
            horizon = min(horizon, self.complete[position])
        info_ops: list[int] = []
        for position in self.info_positions:
            if self.invoke[position] > horizon:
                break
            if not (linearized >> position) & 1:
                info_ops.append(position)
        return ok_ops, info_ops

    def successors(self, linearized: int, state: Hashable) -> list[tuple[int, Hashable]]:
        """The (position, new state) moves from a configuration, in invocation order."""
        ok_ops, info_ops = self.minimal(linearized)
        moves: list[tuple[int, Hashable]] = []
        for position in sorted(ok_ops + info_ops) if info_ops else ok_ops:
            kind = self.kinds[position]
            if kind == READ:
                if state == self.first[position]:
                    return [(position, state)]  # a matching read goes first (module docstring)
            elif kind == WRITE:
                moves.append((position, self.first[position]))
            elif state == self.first[position]:
                moves.append((position, self.second[position]))
            # An info cas whose compare fails changes nothing: the same as never applying it.
        return moves

    def run(self, key: str, operations: int, max_states: int) -> KeyResult:
        """Depth-first search on an explicit stack; at most ``max_states`` configurations."""
        start: tuple[int, Hashable] = (0, None)
        seen: set[tuple[int, Hashable]] = {start}
        stack: list[tuple[int, Hashable, _Step | None]] = [(0, None, None)]
        best_depth = -1
        best: tuple[int, Hashable, _Step | None] = stack[0]
        searched = f"{len(self.ops)} searched of {operations}"
        while stack:  # bounded: each entry is a new configuration, and there are <= max_states
            linearized, state, path = stack.pop()
            depth = (linearized & self.ok_mask).bit_count()
            if depth > best_depth:
                best_depth, best = depth, (linearized, state, path)
            if depth == self.ok_count:
                message = f"key {key!r}: linearizable ({searched} operations, {len(seen)} states explored)"
                return KeyResult(
                    key=key,
                    linearizable=True,
                    operations=operations,
                    explored=len(seen),
                    failing_ops=(),
                    message=message,
                    linearization=self._indexes(_unwind(path)),
                )
            for position, new_state in reversed(self.successors(linearized, state)):
                configuration = (linearized | (1 << position), new_state)
                if configuration in seen:
                    continue
                if len(seen) >= max_states:
                    message = (
                        f"key {key!r}: unknown, the search gave up after {len(seen)} states "
                        f"(max_states_per_key={max_states}); it linearized at most {best_depth} of "
                        f"{self.ok_count} completed operations ({searched} operations)"
                    )
                    return KeyResult(
                        key=key,
                        linearizable=None,
                        operations=operations,
                        explored=len(seen),
                        failing_ops=(),
                        message=message,
                        linearization=self._indexes(_unwind(best[2])),
                    )
                seen.add(configuration)
                stack.append((configuration[0], new_state, _Step(position, path)))
        return self._violation(key, operations, len(seen), best, searched)

    def _violation(
        self,
        key: str,
        operations: int,
        explored: int,
        best: tuple[int, Hashable, _Step | None],
        searched: str,
    ) -> KeyResult:
        """The report for a refuted key, from the deepest configuration reached.

        There, every minimal pending ok operation is one the register rejects: one it
        accepted would have led to a deeper configuration.
        """
        linearized, state, path = best
        prefix = self._indexes(_unwind(path))
        stuck, _ = self.minimal(linearized)
        shown = ", ".join(self._describe(position) for position in stuck[:_MESSAGE_OPS_MAX])
        more = f" and {len(stuck) - _MESSAGE_OPS_MAX} more" if len(stuck) > _MESSAGE_OPS_MAX else ""
        tail = ", ".join(str(index) for index in prefix[-_MESSAGE_OPS_MAX:])
        elided = "..., " if len(prefix) > _MESSAGE_OPS_MAX else ""
        message = (
            f"key {key!r}: not linearizable ({searched} operations, {explored} states explored). "
            f"The longest linearizable prefix found has {len(prefix)} operations (indexes {elided}{tail}) "
            f"and leaves the register at {state!r}; none of these can come next: {shown}{more}"
        )
        return KeyResult(
            key=key,
            linearizable=False,
            operations=operations,
            explored=explored,
            failing_ops=self._indexes(stuck),
            message=message,
            linearization=prefix,
        )

    def _indexes(self, positions: Iterable[int]) -> tuple[int, ...]:
        return tuple(self.ops[position].index for position in positions)

    def _describe(self, position: int) -> str:
        op = self.ops[position]
        if op.f == READ:
            what = f"read -> {self.first[position]!r}"
        elif op.f == WRITE:
            what = f"write {self.first[position]!r}"
        else:
            what = f"cas {self.first[position]!r} -> {self.second[position]!r}"
        return f"index {op.index} (process {op.process}: {what}, [{op.invoke_time}, {op.complete_time}])"


def _check_key(key: str, ops: Sequence[Operation], max_states: int) -> KeyResult:
    searched = [op for op in ops if _searched(op)]
    # Values something depends on: an ok read's result, a cas's expected value.
    observed: set[Hashable] = set()
    for op in searched:
        if op.f == READ:
            observed.add(_freeze(op.value))
        elif op.f == CAS:
            observed.add(_cas_pair(op.value, f"operation index {op.index}")[0])
    return _KeySearch([op for op in searched if not _unobserved_info(op, observed)]).run(
        key, len(ops), max_states
    )


def _unobserved_info(op: Operation, observed: set[Hashable]) -> bool:
    """Whether ``op`` is an info write / cas whose value nothing reads or compares against.

    Such an operation can be left out of the search: in any linearization that applies it,
    the next operation that sees the register (none might) cannot be a read or a cas (they
    would need its value), so it is a write, which overwrites the value either way; and an
    info operation never constrains others in real time. Leaving these out matters: each
    pending info operation could otherwise be tried at every later point, and a fault makes
    many of them at once.
    """
    if op.outcome != INFO:
        return False
    written = _cas_pair(op.value, f"operation index {op.index}")[1] if op.f == CAS else _freeze(op.value)
    return written not in observed
