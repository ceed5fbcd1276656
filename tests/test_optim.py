"""paramstore.optim: the spec format, the in-place interface, determinism, and the schedules.

The optimizer-against-optax runs are in test_optim_parity.py; here the schedules are compared with
optax's value by value, and everything else is checked on its own: validation of specs (every bad
field is named and nothing is modified), the canonical form, bit-for-bit determinism (hypothesis),
gradient dtypes, and the argument checks of ``apply``.
"""

from __future__ import annotations

import copy
import inspect
import json
import math
import os
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paramstore import optim
from paramstore.optim import OptimizerSpecError

os.environ.setdefault("JAX_PLATFORMS", "cpu")

INT32_MAX = 2**31 - 1

# ---- strategies ---------------------------------------------------------------------------

_unit = st.floats(0.0, 0.999, allow_nan=False)
_small = st.floats(0.0, 1.0, allow_nan=False)
_eps = st.sampled_from([0.0, 1e-8, 1e-7, 1e-6, 1e-3])
_steps = st.integers(1, 300)

SCHEDULE_STRATEGIES: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "constant_schedule": st.fixed_dictionaries({"value": _small}),
    "polynomial_schedule": st.fixed_dictionaries(
        {
            "init_value": _small,
            "end_value": _small,
            "power": st.sampled_from([1, 2, 0.5, 1.5, 3.0]),
            "transition_steps": _steps,
        },
        optional={"transition_begin": st.integers(0, 50)},
    ),
    "linear_schedule": st.fixed_dictionaries(
        {"init_value": _small, "end_value": _small, "transition_steps": _steps},
        optional={"transition_begin": st.integers(0, 50)},
    ),
    "piecewise_constant_schedule": st.fixed_dictionaries(
        {"init_value": _small},
        optional={
            "boundaries_and_scales": st.dictionaries(
                st.integers(0, 400).map(str), st.floats(0.0, 2.0, allow_nan=False), max_size=4
            )
        },
    ),
    "exponential_decay": st.fixed_dictionaries(
        {"init_value": _small, "transition_steps": _steps, "decay_rate": st.floats(0.1, 1.5)},
        optional={
            "transition_begin": st.integers(0, 50),
            "staircase": st.booleans(),
            "end_value": st.none() | _small,
        },
    ),
    "cosine_decay_schedule": st.fixed_dictionaries(
        {"init_value": _small, "decay_steps": _steps},
        optional={"alpha": _small, "exponent": st.sampled_from([1.0, 2.0, 0.5])},
    ),
    "warmup_cosine_decay_schedule": st.integers(0, 40).flatmap(
        lambda warmup: st.fixed_dictionaries(
            {
                "init_value": _small,
                "peak_value": _small,
                "warmup_steps": st.just(warmup),
                "decay_steps": st.integers(warmup + 1, warmup + 300),
            },
            optional={"end_value": _small, "exponent": st.sampled_from([1.0, 2.0])},
        )
    ),
}


def schedule_specs() -> st.SearchStrategy[dict[str, Any]]:
    return st.sampled_from(sorted(SCHEDULE_STRATEGIES)).flatmap(
        lambda name: SCHEDULE_STRATEGIES[name].map(lambda kw: {"schedule": name, **kw})
    )


_rate = st.one_of(st.floats(0.0, 0.1, allow_nan=False), schedule_specs())
_momentum = st.none() | _unit

OPTIMIZER_STRATEGIES: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "sgd": st.fixed_dictionaries(
        {"learning_rate": _rate}, optional={"momentum": _unit, "nesterov": st.booleans()}
    ),
    "momentum": st.fixed_dictionaries(
        {"learning_rate": _rate}, optional={"momentum": _unit, "nesterov": st.booleans()}
    ),
    "adam": st.fixed_dictionaries(
        {"learning_rate": _rate},
        optional={"b1": _unit, "b2": _unit, "eps": _eps, "eps_root": _eps, "nesterov": st.booleans()},
    ),
    "nadam": st.fixed_dictionaries(
        {"learning_rate": _rate}, optional={"b1": _unit, "b2": _unit, "eps": _eps}
    ),
    "adamw": st.fixed_dictionaries(
        {"learning_rate": _rate},
        optional={"b1": _unit, "b2": _unit, "eps": _eps, "weight_decay": _rate, "nesterov": st.booleans()},
    ),
    "nadamw": st.fixed_dictionaries({"learning_rate": _rate}, optional={"weight_decay": _rate}),
    "adagrad": st.fixed_dictionaries(
        {"learning_rate": _rate}, optional={"initial_accumulator_value": _small, "eps": _eps}
    ),
    "rmsprop": st.fixed_dictionaries(
        {"learning_rate": _rate},
        optional={
            "decay": _unit,
            "eps": _eps,
            "initial_scale": _small,
            "eps_in_sqrt": st.booleans(),
            "centered": st.booleans(),
            "momentum": _momentum,
            "bias_correction": st.booleans(),
        },
    ),
}


@st.composite
def optimizer_specs(draw: st.DrawFn) -> dict[str, Any]:
    name = draw(st.sampled_from(sorted(OPTIMIZER_STRATEGIES)))
    spec = {"name": name, **draw(OPTIMIZER_STRATEGIES[name])}
    if name == "sgd" and spec.get("nesterov") and spec.get("momentum") is None:
        spec["momentum"] = 0.5  # nesterov needs a momentum
    return spec


def _ref_params(name: str) -> Any:
    """``inspect.signature(optax.<name>).parameters``."""
    optax = pytest.importorskip("optax")
    return inspect.signature(getattr(optax, name)).parameters


# ---- the spec format ----------------------------------------------------------------------


@pytest.mark.parametrize("name", optim.OPTIMIZER_NAMES)
def test_hyper_parameter_defaults_are_optax_defaults(name: str) -> None:
    ours = optim.hyper_parameter_defaults(name)
    alias = inspect.signature(getattr(optim, name)).parameters
    for key, default in ours.items():
        assert alias[key].default == default, key  # the Python constructor agrees with the spec
        if name == "momentum":
            continue  # optax has no `momentum` alias; its sgd has momentum=None
        assert _ref_params(name)[key].default == default, key
    assert set(alias) == {"learning_rate", *ours}


@pytest.mark.parametrize("name", optim.SCHEDULE_NAMES)
def test_schedule_defaults_are_optax_defaults(name: str) -> None:
    ours = optim.schedule_defaults(name)
    reference = _ref_params(name)
    assert set(inspect.signature(getattr(optim, name)).parameters) == set(reference)
    for key, default in ours.items():
        assert reference[key].default == default, key


def test_canonical_fills_defaults() -> None:
    assert optim.canonical({"name": "adam", "learning_rate": 1e-3}) == {
        "name": "adam",
        "learning_rate": 1e-3,
        "b1": 0.9,
        "b2": 0.999,
        "eps": 1e-8,
        "eps_root": 0.0,
        "nesterov": False,
    }
    assert optim.canonical({"name": "rmsprop", "learning_rate": 1}) == {
        "name": "rmsprop",
        "learning_rate": 1.0,
        "decay": 0.9,
        "eps": 1e-8,
        "initial_scale": 0.0,
        "eps_in_sqrt": True,
        "centered": False,
        "momentum": None,
        "nesterov": False,
        "bias_correction": False,
    }


@pytest.mark.parametrize(
    ("a", "b"),
    [
        # defaults written out or not; ints for reals
        (
            {"name": "adam", "learning_rate": 1},
            {"name": "adam", "learning_rate": 1.0, "b1": 0.9, "eps_root": 0},
        ),
        # the momentum alias is sgd with momentum 0.9
        ({"name": "momentum", "learning_rate": 0.1}, {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9}),
        # nadam / nadamw are adam / adamw with nesterov
        ({"name": "nadam", "learning_rate": 0.1}, {"name": "adam", "learning_rate": 0.1, "nesterov": True}),
        (
            {"name": "nadamw", "learning_rate": 0.1, "weight_decay": 0.0},
            {"name": "adamw", "learning_rate": 0.1, "nesterov": True, "weight_decay": 0},
        ),
        # a constant schedule is its number
        (
            {"name": "sgd", "learning_rate": {"schedule": "constant_schedule", "value": 0.5}},
            {"name": "sgd", "learning_rate": 0.5},
        ),
        # boundaries: int or string keys, any order; None is no boundaries
        (
            {
                "name": "sgd",
                "learning_rate": {
                    "schedule": "piecewise_constant_schedule",
                    "init_value": 1,
                    "boundaries_and_scales": {"200": 0.1, "100": 0.5},
                },
            },
            {
                "name": "sgd",
                "learning_rate": {
                    "schedule": "piecewise_constant_schedule",
                    "init_value": 1.0,
                    "boundaries_and_scales": {100: 0.5, 200: 0.1},
                },
            },
        ),
        (
            {"name": "sgd", "learning_rate": {"schedule": "piecewise_constant_schedule", "init_value": 1.0}},
            {
                "name": "sgd",
                "learning_rate": {
                    "schedule": "piecewise_constant_schedule",
                    "init_value": 1.0,
                    "boundaries_and_scales": {},
                },
            },
        ),
    ],
)
def test_equivalent_specs_have_equal_canonical_forms(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert optim.canonical(a) == optim.canonical(b)
    assert json.dumps(optim.canonical(a), sort_keys=True) == json.dumps(optim.canonical(b), sort_keys=True)
    assert optim.optimizer_from_spec(a) == optim.optimizer_from_spec(b)
    assert hash(optim.optimizer_from_spec(a)) == hash(optim.optimizer_from_spec(b))


def test_constructors_are_the_spec() -> None:
    assert optim.adam(1e-3, b2=0.99) == optim.optimizer_from_spec(
        {"name": "adam", "learning_rate": 1e-3, "b2": 0.99}
    )
    cosine = optim.cosine_decay_schedule(0.1, 100, alpha=0.1)
    assert optim.sgd(cosine, momentum=0.9).spec() == {
        "name": "sgd",
        "learning_rate": {
            "schedule": "cosine_decay_schedule",
            "init_value": 0.1,
            "decay_steps": 100,
            "alpha": 0.1,
            "exponent": 1.0,
        },
        "momentum": 0.9,
        "nesterov": False,
    }
    assert optim.momentum(0.1) == optim.sgd(0.1, momentum=0.9)
    assert optim.nadamw(0.1) == optim.adamw(0.1, nesterov=True)
    assert optim.adamw(0.1, weight_decay=optim.linear_schedule(1e-2, 0.0, 100)).spec()["weight_decay"] == {
        "schedule": "linear_schedule",
        "init_value": 1e-2,
        "end_value": 0.0,
        "transition_steps": 100,
        "transition_begin": 0,
    }
    assert optim.adam(1e-3) != optim.adam(2e-3)
    assert "adam" in repr(optim.adam(1e-3))


_COSINE = {"schedule": "cosine_decay_schedule", "init_value": 0.1, "decay_steps": 10}


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        ([("name", "adam")], "spec", "mapping"),
        ({"learning_rate": 0.1}, "name", "missing"),
        ({"name": "adamax", "learning_rate": 0.1}, "name", "unknown optimizer"),
        ({"name": 3, "learning_rate": 0.1}, "name", "unknown optimizer"),
        ({"name": "adam"}, "learning_rate", "missing"),
        ({"name": "adam", "learning_rate": 0.1, "beta1": 0.9}, "beta1", "unknown hyper-parameter"),
        ({"name": "adam", "learning_rate": 0.1, 7: 0.9}, "spec", "string keys"),
        ({"name": "adam", "learning_rate": -0.1}, "learning_rate", ">= 0"),
        ({"name": "adam", "learning_rate": "0.1"}, "learning_rate", "number >= 0 or a schedule"),
        ({"name": "adam", "learning_rate": True}, "learning_rate", "number >= 0 or a schedule"),
        ({"name": "adam", "learning_rate": math.nan}, "learning_rate", "number >= 0"),
        ({"name": "adam", "learning_rate": math.inf}, "learning_rate", "number >= 0"),
        ({"name": "adam", "learning_rate": 0.1, "b1": 1.0}, "b1", "[0, 1)"),
        ({"name": "adam", "learning_rate": 0.1, "b1": -0.1}, "b1", "[0, 1)"),
        ({"name": "adam", "learning_rate": 0.1, "b2": 0.99999999}, "b2", "below 1 in float32"),
        ({"name": "adam", "learning_rate": 0.1, "b2": None}, "b2", "[0, 1)"),
        ({"name": "adam", "learning_rate": 0.1, "eps": -1e-8}, "eps", ">= 0"),
        ({"name": "adam", "learning_rate": 0.1, "nesterov": 1}, "nesterov", "boolean"),
        ({"name": "nadam", "learning_rate": 0.1, "nesterov": True}, "nesterov", "unknown hyper-parameter"),
        ({"name": "adamw", "learning_rate": 0.1, "weight_decay": -1e-4}, "weight_decay", ">= 0"),
        ({"name": "sgd", "learning_rate": 0.1, "nesterov": True}, "nesterov", "requires a momentum"),
        ({"name": "sgd", "learning_rate": 0.1, "momentum": 1.5}, "momentum", "[0, 1)"),
        ({"name": "momentum", "learning_rate": 0.1, "momentum": None}, "momentum", "[0, 1)"),
        (
            {"name": "adagrad", "learning_rate": 0.1, "initial_accumulator_value": -1},
            "initial_accumulator_value",
            ">= 0",
        ),
        ({"name": "rmsprop", "learning_rate": 0.1, "decay": 1}, "decay", "[0, 1)"),
        ({"name": "rmsprop", "learning_rate": 0.1, "centered": "yes"}, "centered", "boolean"),
        ({"name": "rmsprop", "learning_rate": 0.1, "nesterov": True}, "nesterov", "requires a momentum"),
        ({"name": "adam", "learning_rate": {"init_value": 0.1}}, "learning_rate.schedule", "missing"),
        (
            {"name": "adam", "learning_rate": {"schedule": "cosine"}},
            "learning_rate.schedule",
            "unknown schedule",
        ),
        (
            {"name": "adam", "learning_rate": {**_COSINE, "decay_steps": 0}},
            "learning_rate.decay_steps",
            "integer",
        ),
        (
            {"name": "adam", "learning_rate": {**_COSINE, "decay_steps": 10.0}},
            "learning_rate.decay_steps",
            "integer",
        ),
        (
            {"name": "adam", "learning_rate": {**_COSINE, "decay_steps": 2**31}},
            "learning_rate.decay_steps",
            "integer",
        ),
        ({"name": "adam", "learning_rate": {**_COSINE, "alpha": 2.0}}, "learning_rate.alpha", "[0, 1]"),
        (
            {"name": "adam", "learning_rate": {**_COSINE, "steps": 3}},
            "learning_rate.steps",
            "unknown hyper-parameter",
        ),
        (
            {"name": "adam", "learning_rate": {"schedule": "cosine_decay_schedule"}},
            "learning_rate.decay_steps",
            "missing",
        ),
        (
            {
                "name": "adam",
                "learning_rate": {
                    "schedule": "warmup_cosine_decay_schedule",
                    "init_value": 0.0,
                    "peak_value": 0.1,
                    "warmup_steps": 10,
                    "decay_steps": 10,
                },
            },
            "learning_rate.decay_steps",
            "warmup",
        ),
        (
            {
                "name": "adam",
                "learning_rate": {
                    "schedule": "exponential_decay",
                    "init_value": 0.1,
                    "transition_steps": 10,
                    "decay_rate": 0.0,
                },
            },
            "learning_rate.decay_rate",
            "> 0",
        ),
        (
            {
                "name": "adam",
                "learning_rate": {
                    "schedule": "piecewise_constant_schedule",
                    "init_value": 0.1,
                    "boundaries_and_scales": {"10": -0.5},
                },
            },
            "learning_rate.boundaries_and_scales['10']",
            ">= 0",
        ),
        (
            {
                "name": "adam",
                "learning_rate": {
                    "schedule": "piecewise_constant_schedule",
                    "init_value": 0.1,
                    "boundaries_and_scales": {"1e3": 0.5},
                },
            },
            "learning_rate.boundaries_and_scales['1e3']",
            "decimal integer",
        ),
        (
            {
                "name": "adam",
                "learning_rate": {
                    "schedule": "piecewise_constant_schedule",
                    "init_value": 0.1,
                    "boundaries_and_scales": {"10": 0.5, 10: 0.1},
                },
            },
            "learning_rate.boundaries_and_scales[10]",
            "twice",
        ),
        (
            {"name": "adamw", "learning_rate": 0.1, "weight_decay": {**_COSINE, "init_value": -1.0}},
            "weight_decay.init_value",
            ">= 0",
        ),
    ],
)
def test_bad_spec_names_the_field(spec: Any, field: str, words: str) -> None:
    before = copy.deepcopy(spec)
    with pytest.raises(OptimizerSpecError) as info:
        optim.optimizer_from_spec(spec)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    assert words in str(info.value)
    assert isinstance(info.value, ValueError)
    assert spec == before
    with pytest.raises(OptimizerSpecError):
        optim.canonical(spec)


@st.composite
def corrupted_specs(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any], str]:
    """(a valid spec, the same spec with one bad field, that field's path)."""
    spec = draw(optimizer_specs())
    bad = copy.deepcopy(spec)
    lr = spec["learning_rate"]
    choices = ["unknown", "missing_lr", "bad_name", "wrong_type", "out_of_range"]
    if isinstance(lr, dict) and lr["schedule"] != "constant_schedule":
        choices += ["nested_steps", "nested_unknown"]
    kind = draw(st.sampled_from(choices))
    if kind == "unknown":
        bad["no_such_field"] = draw(st.integers())
        return spec, bad, "no_such_field"
    if kind == "missing_lr":
        del bad["learning_rate"]
        return spec, bad, "learning_rate"
    if kind == "bad_name":
        bad["name"] = draw(st.sampled_from(["Adam", "adamax", "", "lamb"]))
        return spec, bad, "name"
    if kind == "wrong_type":
        key = draw(st.sampled_from(sorted(k for k in spec if k != "name")))
        bad[key] = draw(st.sampled_from(["0.1", [0.1], (), b"x"]))
        if isinstance(spec[key], bool) or key in ("nesterov", "centered", "eps_in_sqrt", "bias_correction"):
            bad[key] = draw(st.sampled_from([0, 1, "true", 1.0]))
        return spec, bad, key
    if kind == "out_of_range":
        ranged = {
            "learning_rate": [-0.1, math.nan, -math.inf],
            "weight_decay": [-1e-3, math.inf],
            "b1": [1.0, -0.5, 2.0, math.nan],
            "b2": [1.0, 1.5, 0.999999999],
            "decay": [1.0, -1e-9],
            "momentum": [1.0, -0.1, math.inf],
            "eps": [-1e-8, math.inf],
            "eps_root": [-1e-8],
            "initial_accumulator_value": [-0.1],
            "initial_scale": [-1.0],
        }
        key = draw(st.sampled_from(sorted(set(ranged) & set(OPTIMIZER_STRATEGIES_KEYS[spec["name"]]))))
        bad[key] = draw(st.sampled_from(ranged[key]))
        return spec, bad, key
    schedule = bad["learning_rate"]
    if kind == "nested_steps":
        step_keys = sorted(k for k in ("transition_steps", "decay_steps") if k in schedule)
        if step_keys:
            key = step_keys[0]
            schedule[key] = draw(st.sampled_from([0, -3, 2.5, "10", None, 2**31]))
            return spec, bad, f"learning_rate.{key}"
        schedule["init_value"] = -1.0
        return spec, bad, "learning_rate.init_value"
    schedule["schedule"] = draw(st.sampled_from(["cosine", "Linear_schedule", "sgdr_schedule"]))
    return spec, bad, "learning_rate.schedule"


#: The hyper-parameters each optimizer accepts (besides name).
OPTIMIZER_STRATEGIES_KEYS = {
    name: ("learning_rate", *optim.hyper_parameter_defaults(name)) for name in optim.OPTIMIZER_NAMES
}


@given(corrupted_specs())
@settings(max_examples=150, deadline=None)
def test_corrupted_spec_raises_and_changes_nothing(case: tuple[dict[str, Any], dict[str, Any], str]) -> None:
    good, bad, field = case
    optim.optimizer_from_spec(good)  # the uncorrupted spec is valid
    before = copy.deepcopy(bad)
    with pytest.raises(OptimizerSpecError) as info:
        optim.optimizer_from_spec(bad)
    assert info.value.field == field, str(info.value)
    assert str(info.value).startswith(field)
    assert repr(bad) == repr(before)  # repr: NaN != NaN


@given(optimizer_specs())
@settings(max_examples=150, deadline=None)
def test_canonical_form_is_idempotent_and_json_stable(spec: dict[str, Any]) -> None:
    before = copy.deepcopy(spec)
    form = optim.canonical(spec)
    assert spec == before
    assert optim.canonical(form) == form
    assert optim.canonical(json.loads(json.dumps(form))) == form
    assert optim.optimizer_from_spec(form) == optim.optimizer_from_spec(spec)
    assert optim.optimizer_from_spec(spec).spec() == form
    assert form["name"] in ("sgd", "adam", "adamw", "adagrad", "rmsprop")
    # every hyper-parameter is present: dropping nothing, adding nothing
    name = form["name"]
    assert set(form) == {"name", "learning_rate", *optim.hyper_parameter_defaults(str(name))}


# ---- determinism ----------------------------------------------------------------------------


def _run(
    opt: optim.Optimizer, weights: np.ndarray, grads: np.ndarray, start: int = 0, disturb: bool = False
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    w = weights.copy()
    slots = opt.init_slots(w.shape)
    other = np.ones(37, np.float32)
    other_slots = opt.init_slots(other.shape)
    for step, g in enumerate(grads, start=start):
        opt.apply(w, g, slots, step)
        if disturb:  # another leaf in between: the scratch buffers are reused with another shape
            opt.apply(other, np.full(37, 0.5, np.float32), other_slots, step)
    return w, slots


def _bytes(weights: np.ndarray, slots: Mapping[str, np.ndarray]) -> bytes:
    return weights.tobytes() + b"".join(slots[name].tobytes() for name in sorted(slots))


@given(
    spec=optimizer_specs(),
    shape=st.sampled_from([(1,), (64,), (17, 5), (3, 4, 2), (0,)]),
    seed=st.integers(0, 2**32 - 1),
    steps=st.integers(1, 12),
    start=st.sampled_from([0, 1, 99, 10**6, INT32_MAX - 3, INT32_MAX + 5]),
    grad_dtype=st.sampled_from(["float32", "float16", "bfloat16"]),
)
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_two_fresh_runs_give_identical_bytes(
    spec: dict[str, Any], shape: tuple[int, ...], seed: int, steps: int, start: int, grad_dtype: str
) -> None:
    rng = np.random.default_rng(seed)
    weights = rng.standard_normal(shape).astype(np.float32)
    grads = (rng.standard_normal((steps, *shape)) * 3).astype(_dtype(grad_dtype))
    first = _run(optim.optimizer_from_spec(spec), weights, grads, start)
    second = _run(optim.optimizer_from_spec(copy.deepcopy(spec)), weights, grads, start, disturb=True)
    assert _bytes(*first) == _bytes(*second)
    # a strided view of a bigger buffer (how a store may hold a leaf) gives the same bytes
    opt = optim.optimizer_from_spec(spec)
    backing = np.zeros((2, *shape), np.float32)
    view = backing[1]
    view[...] = weights
    slots = opt.init_slots(shape)
    for step, g in enumerate(grads, start=start):
        opt.apply(view, g, slots, step)
    assert _bytes(view.copy(), slots) == _bytes(*first)
    assert not backing[0].any()


def _dtype(name: str) -> Any:
    if name == "bfloat16":
        ml_dtypes = pytest.importorskip("ml_dtypes")
        return ml_dtypes.bfloat16
    return np.dtype(name)


def test_threads_share_nothing() -> None:
    opt = optim.adamw(1e-2, weight_decay=1e-2, nesterov=True)
    rng = np.random.default_rng(7)
    shapes = [(50,), (7, 9), (300,), (2, 3)]
    leaves = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [rng.standard_normal((40, *s)).astype(np.float32) for s in shapes]
    expected = [_bytes(*_run(opt, w, g)) for w, g in zip(leaves, grads, strict=True)]
    results: dict[int, bytes] = {}

    def work(index: int) -> None:
        results[index] = _bytes(*_run(opt, leaves[index], grads[index], disturb=True))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(shapes))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [results[i] for i in range(len(shapes))] == expected


def test_uncached_scratch_for_big_leaves(monkeypatch: pytest.MonkeyPatch) -> None:
    opt = optim.rmsprop(1e-2, centered=True, momentum=0.9)
    rng = np.random.default_rng(3)
    w, g = rng.standard_normal(64).astype(np.float32), rng.standard_normal((5, 64)).astype(np.float32)
    cached = _bytes(*_run(opt, w, g))
    from paramstore.optim import _scratch

    monkeypatch.setattr(_scratch, "MAX_CACHED_ELEMENTS", 10)
    assert _bytes(*_run(opt, w, g)) == cached


# ---- gradients in half precision -------------------------------------------------------------


def test_half_precision_upcast_is_exact_for_every_bit_pattern() -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    bits = np.arange(2**16, dtype=np.uint32).astype(np.uint16)
    opt = optim.sgd(1.0)  # w - 1.0 * g with w = -0.0: -g exactly, signed zeros included
    for dtype in (np.dtype(np.float16), np.dtype(ml_dtypes.bfloat16)):
        grads = bits.view(dtype)
        weights = np.full(grads.shape, -0.0, np.float32)
        opt.apply(weights, grads, {}, 0)
        expected = -grads.astype(np.float32)
        nan = np.isnan(expected)
        assert np.array_equal(np.isnan(weights), nan)
        assert np.array_equal(weights[~nan].view(np.uint32), expected[~nan].view(np.uint32))


@pytest.mark.parametrize(
    "spec",
    [{"name": "adam", "learning_rate": 1e-2}, {"name": "rmsprop", "learning_rate": 1e-2, "centered": True}],
)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_grads_equal_their_float32_values(spec: dict[str, Any], dtype: str) -> None:
    rng = np.random.default_rng(11)
    opt = optim.optimizer_from_spec(spec)
    weights = rng.standard_normal((17, 5)).astype(np.float32)
    low = rng.standard_normal((20, 17, 5)).astype(_dtype(dtype))
    assert _bytes(*_run(opt, weights, low)) == _bytes(*_run(opt, weights, low.astype(np.float32)))


# ---- apply's argument checks ------------------------------------------------------------------


def _fresh() -> tuple[optim.Optimizer, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    opt = optim.adam(1e-2)
    w = np.arange(6, dtype=np.float32)
    return opt, w, np.ones(6, np.float32), opt.init_slots(6)


@pytest.mark.parametrize(
    ("mutate", "error"),
    [
        (lambda a: a.update(w=a["w"].astype(np.float64)), TypeError),
        (lambda a: a.update(w=[0.0] * 6), TypeError),
        (lambda a: a.update(g=np.ones(6, np.float64)), TypeError),
        (lambda a: a.update(g=np.ones(6, np.int32)), TypeError),
        (lambda a: a.update(g=[1.0] * 6), TypeError),
        (lambda a: a.update(g=np.ones(5, np.float32)), ValueError),
        (lambda a: a.update(g=np.ones((6, 1), np.float32)), ValueError),
        (lambda a: a["slots"].pop("nu"), ValueError),
        (lambda a: a["slots"].update(trace=np.zeros(6, np.float32)), ValueError),
        (lambda a: a["slots"].update(nu=np.zeros(5, np.float32)), ValueError),
        (lambda a: a["slots"].update(nu=np.zeros(6, np.float16)), TypeError),
        (lambda a: a["slots"].update(nu=a["slots"]["mu"]), ValueError),
        (lambda a: a["slots"].update(nu=a["w"]), ValueError),
        (lambda a: a.update(g=a["slots"]["mu"]), ValueError),
        (lambda a: a.update(g=a["w"]), ValueError),
        (lambda a: a.update(step=-1), ValueError),
        (lambda a: a.update(step=True), ValueError),
        (lambda a: a.update(step=1.0), ValueError),
        (lambda a: a["w"].setflags(write=False), ValueError),
        (lambda a: a["slots"]["mu"].setflags(write=False), ValueError),
        (lambda a: a.update(slots=[a["slots"]["mu"], a["slots"]["nu"]]), TypeError),
    ],
)
def test_apply_rejects_bad_arguments_before_writing(mutate: Any, error: type[Exception]) -> None:
    opt, w, g, slots = _fresh()
    args: dict[str, Any] = {"w": w, "g": g, "slots": slots, "step": 0}
    mutate(args)
    snapshot = {key: np.array(value, copy=True) for key, value in slots.items()}
    w_before = np.array(w, copy=True)
    with pytest.raises(error):
        opt.apply(args["w"], args["g"], args["slots"], args["step"])
    assert np.array_equal(w, w_before)
    for key, value in snapshot.items():
        assert np.array_equal(slots[key], value)


def test_init_slots() -> None:
    assert optim.sgd(0.1).slot_names == ()
    assert optim.sgd(0.1, momentum=0.9).slot_names == ("trace",)
    assert optim.adamw(0.1).slot_names == ("mu", "nu")
    assert optim.rmsprop(0.1, centered=True, momentum=0.5).slot_names == ("mu", "nu", "trace")
    slots = optim.adagrad(0.1, initial_accumulator_value=0.25).init_slots((2, 3))
    assert list(slots) == ["sum_of_squares"]
    assert slots["sum_of_squares"].dtype == np.float32
    assert np.all(slots["sum_of_squares"] == np.float32(0.25))
    slots = optim.rmsprop(0.1, initial_scale=1.0, centered=True).init_slots(4)
    assert np.all(slots["nu"] == 1.0) and np.all(slots["mu"] == 0.0)
    with pytest.raises(TypeError):
        optim.adam(0.1).init_slots(3, dtype=np.float16)
    with pytest.raises(ValueError):
        optim.adam(0.1).init_slots((-1, 2))


def test_step_is_the_count_before_the_update() -> None:
    schedule = optim.piecewise_constant_schedule(1.0, {3: 0.5, 5: 0.25})
    opt = optim.sgd(schedule)
    for step, lr in [(0, 1.0), (2, 1.0), (3, 0.5), (4, 0.5), (5, 0.125), (10**12, 0.125)]:
        weights = np.zeros(2, np.float32)
        opt.apply(weights, np.ones(2, np.float32), {}, step)
        assert weights.tolist() == [-lr, -lr]


# ---- schedules (their values against optax: test_optim_parity.py) -------------------------------


def test_fractional_power_reaches_its_end_value() -> None:
    # Jitted optax on XLA's default CPU flags evaluates 0.0 ** 1.5 as NaN here (its fast pow);
    # the schedule's value after the transition is end_value, as IEEE-strict XLA also gives.
    schedule = optim.polynomial_schedule(0.05, 0.001, 1.5, transition_steps=150)
    assert schedule(150) == schedule(10**6) == np.float32(0.001)
    # (I - E) * 1 + E in float32, as optax: not quite I
    assert schedule(0) == np.float32(0.05 - 0.001) + np.float32(0.001) == np.float32(0.049999997)


def test_schedule_counts_saturate_like_optax() -> None:
    schedule = optim.linear_schedule(1.0, 0.0, transition_steps=INT32_MAX)
    assert schedule(INT32_MAX) == schedule(2**40) == np.float32(0.0)
    assert schedule(-5) == schedule(0) == np.float32(1.0)
