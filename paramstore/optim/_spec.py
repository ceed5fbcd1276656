"""The JSON spec format: validation, construction and the canonical form of optimizers and schedules.

An optimizer spec is a JSON object ``{"name": NAME, "learning_rate": RATE, ...hyper-parameters}``
with optax's names and defaults; ``RATE`` is a number or a schedule spec
``{"schedule": NAME, ...hyper-parameters}``. Every field is checked (unknown or missing key, type,
range) and a failure raises :class:`~paramstore.optim.OptimizerSpecError` naming the field; the
input is never modified.

The canonical form (:func:`canonical`) is what :meth:`Optimizer.spec` returns: every default
filled in, reals as ``float``, integers as ``int``, a constant schedule as its bare number,
piecewise boundaries as sorted decimal strings, and the aliases resolved (``momentum`` is
``sgd`` with a momentum, ``nadam``/``nadamw`` are ``adam``/``adamw`` with ``nesterov``). Two
specs that mean the same optimizer have equal canonical forms, and the canonical form of a
canonical form is itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from paramstore.optim._adagrad import Adagrad
from paramstore.optim._adam import Adam, AdamW
from paramstore.optim._base import Optimizer
from paramstore.optim._errors import OptimizerSpecError
from paramstore.optim._rmsprop import RmsProp
from paramstore.optim._schedules import (
    ConstantSchedule,
    CosineDecaySchedule,
    ExponentialDecay,
    LinearSchedule,
    PiecewiseConstantSchedule,
    PolynomialSchedule,
    Schedule,
    WarmupCosineDecaySchedule,
)
from paramstore.optim._sgd import Sgd
from paramstore.optim._validate import check_keys, flag, integer, real

__all__ = [
    "OPTIMIZER_NAMES",
    "SCHEDULE_NAMES",
    "canonical",
    "optimizer_from_spec",
    "rate_from_value",
    "schedule_from_spec",
]

_REQUIRED: Any = object()

Parser = Callable[[str, object], object]


@dataclass(frozen=True)
class _Field:
    default: object
    parse: Parser


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _read(path: str, spec: object, fields: Mapping[str, _Field], what: str) -> dict[str, Any]:
    """Check ``spec``'s keys against ``fields`` and parse each value (defaults filled in)."""
    required = [key for key, field in fields.items() if field.default is _REQUIRED]
    mapping = check_keys(path, spec, fields, required, what)
    values: dict[str, Any] = {}
    for key, field in fields.items():
        raw = mapping.get(key, field.default)
        values[key] = field.parse(_join(path, key), raw)
    return values


# ---- field parsers ------------------------------------------------------------------------


def _nonneg(path: str, value: object) -> float:
    return real(path, value, lo=0.0)


def _positive(path: str, value: object) -> float:
    return real(path, value, lo=0.0, lo_open=True)


def _unit_closed(path: str, value: object) -> float:
    return real(path, value, lo=0.0, hi=1.0)


def _decay_rate(path: str, value: object) -> float:
    return real(path, value, lo=0.0, hi=1.0, hi_open=True, float32_below_one=True)


def _optional_decay_rate(path: str, value: object) -> float | None:
    return None if value is None else _decay_rate(path, value)


def _optional_nonneg(path: str, value: object) -> float | None:
    return None if value is None else _nonneg(path, value)


def _steps(path: str, value: object) -> int:
    return integer(path, value, lo=1)


def _count(path: str, value: object) -> int:
    return integer(path, value, lo=0)


_DECIMAL = re.compile(r"(0|[1-9][0-9]*)")


def _boundaries(path: str, value: object) -> tuple[tuple[int, float], ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise OptimizerSpecError(
            path, f"expected a mapping of step boundary to scale or null, got {type(value).__name__}"
        )
    pairs: dict[int, float] = {}
    for key, scale in value.items():
        where = f"{path}[{key!r}]"
        if isinstance(key, str):
            if not _DECIMAL.fullmatch(key):
                raise OptimizerSpecError(where, "expected a boundary written as a decimal integer string")
            boundary = integer(where, int(key))
        else:
            boundary = integer(where, key)
        if boundary in pairs:
            raise OptimizerSpecError(where, f"boundary {boundary} is given twice")
        pairs[boundary] = real(where, scale, lo=0.0)
    return tuple(sorted(pairs.items()))


# ---- schedules ----------------------------------------------------------------------------

_R = _REQUIRED

_SCHEDULES: dict[str, tuple[type[Schedule], dict[str, _Field]]] = {
    "constant_schedule": (ConstantSchedule, {"value": _Field(_R, _nonneg)}),
    "polynomial_schedule": (
        PolynomialSchedule,
        {
            "init_value": _Field(_R, _nonneg),
            "end_value": _Field(_R, _nonneg),
            "power": _Field(_R, _positive),
            "transition_steps": _Field(_R, _steps),
            "transition_begin": _Field(0, _count),
        },
    ),
    "linear_schedule": (
        LinearSchedule,
        {
            "init_value": _Field(_R, _nonneg),
            "end_value": _Field(_R, _nonneg),
            "transition_steps": _Field(_R, _steps),
            "transition_begin": _Field(0, _count),
        },
    ),
    "piecewise_constant_schedule": (
        PiecewiseConstantSchedule,
        {"init_value": _Field(_R, _nonneg), "boundaries_and_scales": _Field(None, _boundaries)},
    ),
    "exponential_decay": (
        ExponentialDecay,
        {
            "init_value": _Field(_R, _nonneg),
            "transition_steps": _Field(_R, _steps),
            "decay_rate": _Field(_R, _positive),
            "transition_begin": _Field(0, _count),
            "staircase": _Field(False, flag),
            "end_value": _Field(None, _optional_nonneg),
        },
    ),
    "cosine_decay_schedule": (
        CosineDecaySchedule,
        {
            "init_value": _Field(_R, _nonneg),
            "decay_steps": _Field(_R, _steps),
            "alpha": _Field(0.0, _unit_closed),
            "exponent": _Field(1.0, _positive),
        },
    ),
    "warmup_cosine_decay_schedule": (
        WarmupCosineDecaySchedule,
        {
            "init_value": _Field(_R, _nonneg),
            "peak_value": _Field(_R, _nonneg),
            "warmup_steps": _Field(_R, _count),
            "decay_steps": _Field(_R, _steps),
            "end_value": _Field(0.0, _nonneg),
            "exponent": _Field(1.0, _positive),
        },
    ),
}

#: Schedule names a ``{"schedule": NAME, ...}`` spec may use (optax's function names).
SCHEDULE_NAMES = tuple(sorted(_SCHEDULES))


def schedule_from_spec(spec: Mapping[str, object], path: str = "") -> Schedule:
    """Validate a schedule spec ``{"schedule": NAME, ...}`` and build the :class:`Schedule`."""
    where = path or "spec"
    if not isinstance(spec, Mapping):
        raise OptimizerSpecError(where, f"expected a schedule spec (JSON object), got {type(spec).__name__}")
    if "schedule" not in spec:
        raise OptimizerSpecError(
            _join(path, "schedule"),
            f"missing: a schedule spec names its schedule (one of: {', '.join(SCHEDULE_NAMES)})",
        )
    name = spec["schedule"]
    if not isinstance(name, str) or name not in _SCHEDULES:
        raise OptimizerSpecError(
            _join(path, "schedule"),
            f"unknown schedule {name!r} (expected one of: {', '.join(SCHEDULE_NAMES)})",
        )
    cls, fields = _SCHEDULES[name]
    values = _read(path, spec, {"schedule": _Field(_R, lambda _p, v: v), **fields}, name)
    del values["schedule"]
    if name == "warmup_cosine_decay_schedule" and values["decay_steps"] <= values["warmup_steps"]:
        raise OptimizerSpecError(
            _join(path, "decay_steps"),
            f"expected an integer > warmup_steps ({values['warmup_steps']}): decay_steps includes the warmup,"
            f" got {values['decay_steps']!r}",
        )
    return cls(**values)


def rate_from_value(path: str, value: object) -> Schedule:
    """A learning rate (or weight decay): a number >= 0, a schedule spec, or a :class:`Schedule`."""
    if isinstance(value, Schedule):
        return schedule_from_spec(value.spec(), path)  # re-validated: dataclasses can be built by hand
    if isinstance(value, Mapping):
        return schedule_from_spec(value, path)
    try:
        return ConstantSchedule(_nonneg(path, value))
    except OptimizerSpecError:
        raise OptimizerSpecError(
            path, f'expected a number >= 0 or a schedule spec ({{"schedule": ...}}), got {value!r}'
        ) from None


# ---- optimizers ---------------------------------------------------------------------------

_LR = {"learning_rate": _Field(_R, rate_from_value)}
_ADAM = {
    **_LR,
    "b1": _Field(0.9, _decay_rate),
    "b2": _Field(0.999, _decay_rate),
    "eps": _Field(1e-8, _nonneg),
    "eps_root": _Field(0.0, _nonneg),
}


def _sgd(v: dict[str, Any]) -> Optimizer:
    return Sgd(**v)


def _adam(v: dict[str, Any]) -> Optimizer:
    return Adam(**v)


def _nadam(v: dict[str, Any]) -> Optimizer:
    return Adam(**v, nesterov=True)


def _adamw(v: dict[str, Any]) -> Optimizer:
    return AdamW(**v)


def _nadamw(v: dict[str, Any]) -> Optimizer:
    return AdamW(**v, nesterov=True)


def _adagrad(v: dict[str, Any]) -> Optimizer:
    return Adagrad(**v)


def _rmsprop(v: dict[str, Any]) -> Optimizer:
    return RmsProp(**v)


_OPTIMIZERS: dict[str, tuple[Callable[[dict[str, Any]], Optimizer], dict[str, _Field]]] = {
    "sgd": (
        _sgd,
        {**_LR, "momentum": _Field(None, _optional_decay_rate), "nesterov": _Field(False, flag)},
    ),
    "momentum": (_sgd, {**_LR, "momentum": _Field(0.9, _decay_rate), "nesterov": _Field(False, flag)}),
    "adam": (_adam, {**_ADAM, "nesterov": _Field(False, flag)}),
    "nadam": (_nadam, dict(_ADAM)),
    "adamw": (
        _adamw,
        {**_ADAM, "weight_decay": _Field(1e-4, rate_from_value), "nesterov": _Field(False, flag)},
    ),
    "nadamw": (_nadamw, {**_ADAM, "weight_decay": _Field(1e-4, rate_from_value)}),
    "adagrad": (
        _adagrad,
        {**_LR, "initial_accumulator_value": _Field(0.1, _nonneg), "eps": _Field(1e-7, _nonneg)},
    ),
    "rmsprop": (
        _rmsprop,
        {
            **_LR,
            "decay": _Field(0.9, _decay_rate),
            "eps": _Field(1e-8, _nonneg),
            "initial_scale": _Field(0.0, _nonneg),
            "eps_in_sqrt": _Field(True, flag),
            "centered": _Field(False, flag),
            "momentum": _Field(None, _optional_decay_rate),
            "nesterov": _Field(False, flag),
            "bias_correction": _Field(False, flag),
        },
    ),
}

#: Optimizer names a spec may use (optax's function names; ``momentum``, ``nadam`` and ``nadamw``
#: are aliases whose canonical names are ``sgd``, ``adam`` and ``adamw``).
OPTIMIZER_NAMES = tuple(sorted(_OPTIMIZERS))


def hyper_parameter_defaults(name: str) -> dict[str, object]:
    """The optional hyper-parameters of optimizer ``name`` and their defaults (for docs and tests)."""
    _, fields = _OPTIMIZERS[name]
    return {key: field.default for key, field in fields.items() if field.default is not _REQUIRED}


def schedule_defaults(name: str) -> dict[str, object]:
    """The optional hyper-parameters of schedule ``name`` and their defaults."""
    _, fields = _SCHEDULES[name]
    return {key: field.default for key, field in fields.items() if field.default is not _REQUIRED}


def optimizer_from_spec(spec: Mapping[str, object]) -> Optimizer:
    """Validate an optimizer spec and build the :class:`Optimizer` it describes.

    Raises :class:`OptimizerSpecError` (a ``ValueError``) naming the first bad field: unknown
    optimizer name, unknown or missing hyper-parameter, wrong type, or a value out of range.
    """
    if not isinstance(spec, Mapping):
        raise OptimizerSpecError("spec", f"expected a mapping (JSON object), got {type(spec).__name__}")
    if "name" not in spec:
        raise OptimizerSpecError(
            "name", f"missing: the optimizer's name (one of: {', '.join(OPTIMIZER_NAMES)})"
        )
    name = spec["name"]
    if not isinstance(name, str) or name not in _OPTIMIZERS:
        raise OptimizerSpecError(
            "name", f"unknown optimizer {name!r} (expected one of: {', '.join(OPTIMIZER_NAMES)})"
        )
    build, fields = _OPTIMIZERS[name]
    values = _read("", spec, {"name": _Field(_R, lambda _p, v: v), **fields}, name)
    del values["name"]
    if values.get("nesterov") and values.get("momentum", 0.0) is None:
        raise OptimizerSpecError("nesterov", "true requires a momentum (momentum is null)")
    return build(values)


def canonical(spec: Mapping[str, object]) -> dict[str, object]:
    """The canonical form of an optimizer spec (see the module docstring); validates it first."""
    return optimizer_from_spec(spec).spec()
