"""Model-based test of the shard state machine against a plain reference.

The reference is dicts of numpy arrays updated with the same paramstore.optim optimizer, plus
a per-client table of the last applied sequence. Each push gets a one-hot gradient at its own
(key, element) with a power of two, so the sgd model's weights (learning rate 1) reveal
exactly which pushes were applied, and how often. A twin machine is fed every entry too:
both must always have identical snapshot bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from paramstore import optim
from paramstore.shard import (
    ClientSequence,
    ErrorCode,
    NonFinitePolicy,
    ShardResult,
    ShardStateMachine,
    decode_result,
    encode_install,
    encode_push,
)

KEYS = ("k0", "k1")
ELEMENTS = 16
CLIENTS = ("c0", "c1", "c2", "c3")
MODELS = {
    "sgd": ({"name": "sgd", "learning_rate": 1.0}, NonFinitePolicy.REJECT),
    "adam": ({"name": "adam", "learning_rate": 0.01}, NonFinitePolicy.SKIP),
}


def _initial(key: str) -> np.ndarray:
    return np.full(ELEMENTS, 100.0 if key == "k0" else -100.0, np.float32)


@dataclass
class _ReferenceModel:
    optimizer: optim.Optimizer
    policy: NonFinitePolicy
    weights: dict[str, np.ndarray]
    slots: dict[str, dict[str, np.ndarray]]
    key_steps: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KEYS, 0))
    step: int = 0
    applied: np.ndarray = field(default_factory=lambda: np.zeros((len(KEYS), ELEMENTS)))  # sum of gradients


@dataclass(frozen=True)
class _Entry:
    data: bytes
    covers: tuple[ClientSequence, ...]


class ShardMachineModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.machine = ShardStateMachine()
        self.twin = ShardStateMachine()
        self.models: dict[str, _ReferenceModel] = {}
        for name, (spec, policy) in MODELS.items():
            self._both(encode_install(name, spec, {key: _initial(key) for key in KEYS}, 8, policy))
            opt = optim.optimizer_from_spec(spec)
            self.models[name] = _ReferenceModel(
                opt,
                policy,
                {key: _initial(key) for key in KEYS},
                {key: opt.init_slots(ELEMENTS) for key in KEYS},
            )
        self.last_sequence = dict.fromkeys(CLIENTS, 0)
        self.stored: dict[str, bytes] = {}  # client -> result of its last applied push
        self.next_push_id = 0
        self.history: list[_Entry] = []

    def _both(self, data: bytes) -> ShardResult:
        encoded = self.machine.apply_bytes(data)
        assert self.twin.apply_bytes(data) == encoded
        return decode_result(encoded)

    def _fresh_pushes(
        self, clients: list[str], gap: int
    ) -> tuple[list[ClientSequence], dict[str, np.ndarray]]:
        covers = [ClientSequence(c, self.last_sequence[c] + gap) for c in clients]
        grads = {key: np.zeros(ELEMENTS, np.float32) for key in KEYS}
        for _ in clients:
            push_id = self.next_push_id
            self.next_push_id += 1
            slot = push_id % (len(KEYS) * ELEMENTS)
            grads[KEYS[slot // ELEMENTS]][slot % ELEMENTS] = 2.0 ** (push_id // (len(KEYS) * ELEMENTS))
        return covers, grads

    # ---- rules ------------------------------------------------------------------------------

    @rule(
        model=st.sampled_from(sorted(MODELS)),
        clients=st.lists(st.sampled_from(CLIENTS), min_size=1, max_size=3, unique=True),
        gap=st.sampled_from([1, 1, 1, 2]),
        only_key=st.sampled_from([None, *KEYS]),
        non_finite=st.booleans(),
    )
    def push(self, model: str, clients: list[str], gap: int, only_key: str | None, non_finite: bool) -> None:
        covers, grads = self._fresh_pushes(clients, gap)
        if only_key is not None:
            grads = {only_key: grads[only_key]}
        if non_finite:
            next(iter(grads.values()))[3] = np.nan
        data = encode_push(model, covers, grads, config_number=1)
        before = self.machine.snapshot()
        result = self._both(data)
        reference = self.models[model]
        if non_finite and reference.policy == NonFinitePolicy.REJECT:
            assert result.code == ErrorCode.NON_FINITE
            assert self.machine.snapshot() == before
            return
        assert result.ok and not result.duplicate, result
        if non_finite:
            assert result.skipped and result.step == reference.step
        else:
            for key, g in grads.items():
                reference.optimizer.apply(
                    reference.weights[key], g, reference.slots[key], reference.key_steps[key]
                )
                reference.key_steps[key] += 1
                reference.applied[KEYS.index(key)] += g
            reference.step += 1
            assert result.step == reference.step
        encoded = self.machine.apply_bytes(data)  # a duplicate now: returns the stored result
        assert decode_result(encoded).duplicate
        self.twin.apply_bytes(data)
        for cover in covers:
            self.last_sequence[cover.client_id] = cover.sequence
            self.stored[cover.client_id] = decode_result(encoded).replays[0].result
        self.history.append(_Entry(data, tuple(covers)))

    @precondition(lambda self: self.history)
    @rule(data=st.data())
    def retry(self, data: st.DataObject) -> None:
        """The leader re-proposes an entry (a retry after a failover, or a duplicated one)."""
        entry = data.draw(st.sampled_from(self.history))
        before = self.machine.snapshot()
        result = self._both(entry.data)
        if any(c.sequence < self.last_sequence[c.client_id] for c in entry.covers):
            assert result.code == ErrorCode.STALE_SEQUENCE
        else:
            assert result.ok and result.duplicate
            assert {(r.push.client_id, r.push.sequence, r.result) for r in result.replays} == {
                (c.client_id, c.sequence, self.stored[c.client_id]) for c in entry.covers
            }
        assert self.machine.snapshot() == before

    @precondition(lambda self: self.history)
    @rule(data=st.data())
    def merge_retry_with_new_push(self, data: st.DataObject) -> None:
        """A retried push merged with a new one: refused whole, then the new one alone applies."""
        entry = data.draw(st.sampled_from(self.history))
        others = [c for c in CLIENTS if c not in {cover.client_id for cover in entry.covers}]
        if not others:
            return
        client = data.draw(st.sampled_from(others))
        model = "sgd"
        covers, grads = self._fresh_pushes([client], 1)
        old = entry.covers[0]
        merged = encode_push(model, [old, *covers], grads)
        before = self.machine.snapshot()
        result = self._both(merged)
        if old.sequence < self.last_sequence[old.client_id]:
            assert result.code == ErrorCode.STALE_SEQUENCE
        else:
            assert result.code == ErrorCode.PARTIAL_DUPLICATE
            assert [(r.push, r.result) for r in result.replays] == [(old, self.stored[old.client_id])]
        assert self.machine.snapshot() == before
        # The pushed-away grads were never applied; the leader may drop or re-propose them:
        # the test drops them, and the reference stays as it is.

    @rule(
        kind=st.sampled_from(["unknown_key", "size", "unknown_model", "stale"]),
        client=st.sampled_from(CLIENTS),
    )
    def bad_push(self, kind: str, client: str) -> None:
        sequence = self.last_sequence[client] + 1
        grads: dict[str, np.ndarray] = {"k0": np.ones(ELEMENTS, np.float32)}
        model, expected = "sgd", ErrorCode.OK
        if kind == "unknown_key":
            grads, expected = {"k9": np.ones(ELEMENTS, np.float32)}, ErrorCode.UNKNOWN_KEY
        elif kind == "size":
            grads, expected = {"k1": np.ones(ELEMENTS + 1, np.float32)}, ErrorCode.SHAPE_MISMATCH
        elif kind == "unknown_model":
            model, expected = "nope", ErrorCode.UNKNOWN_MODEL
        else:
            if self.last_sequence[client] < 2:
                return
            sequence, expected = self.last_sequence[client] - 1, ErrorCode.STALE_SEQUENCE
        before = self.machine.snapshot()
        assert self._both(encode_push(model, [(client, sequence)], grads)).code == expected
        assert self.machine.snapshot() == before

    @rule()
    def snapshot_and_restore(self) -> None:
        data = self.machine.snapshot()
        restored = ShardStateMachine()
        restored.restore(data)
        assert restored.snapshot() == data
        self.machine = restored

    # ---- invariants -------------------------------------------------------------------------

    @invariant()
    def matches_the_reference(self) -> None:
        assert self.machine.snapshot() == self.twin.snapshot()
        for name, reference in self.models.items():
            assert self.machine.step(name) == reference.step
            pulled = self.machine.pull(name, KEYS)
            for index, key in enumerate(KEYS):
                assert pulled[key].tobytes() == reference.weights[key].tobytes(), (name, key)
                assert self.machine.key_step(name, key) == reference.key_steps[key]
                if name == "sgd":  # every applied push shows exactly once
                    np.testing.assert_array_equal(pulled[key], _initial(key) - reference.applied[index])


ShardMachineModel.TestCase.settings = settings(max_examples=100, stateful_step_count=30, deadline=None)
test_shard_machine_model = ShardMachineModel.TestCase
