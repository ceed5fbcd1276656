"""optax-named constructors, each a front for :func:`~paramstore.optim.optimizer_from_spec`.

``adam(1e-3)`` is ``optimizer_from_spec({"name": "adam", "learning_rate": 1e-3})``.

Signatures and defaults are optax's (``optax.adam``, ``optax.cosine_decay_schedule``, ...),
without the options that make no sense for flat float32 leaves (``mu_dtype``, masks). Every
argument goes through the spec validation, so a bad value raises
:class:`~paramstore.optim.OptimizerSpecError`. A learning rate is a number, a :class:`Schedule`
or a schedule spec.
"""

from __future__ import annotations

from collections.abc import Mapping

from paramstore.optim._base import Optimizer
from paramstore.optim._schedules import Schedule
from paramstore.optim._spec import optimizer_from_spec, schedule_from_spec

__all__ = [
    "adagrad",
    "adam",
    "adamw",
    "constant_schedule",
    "cosine_decay_schedule",
    "exponential_decay",
    "linear_schedule",
    "momentum",
    "nadam",
    "nadamw",
    "piecewise_constant_schedule",
    "polynomial_schedule",
    "rmsprop",
    "sgd",
    "warmup_cosine_decay_schedule",
]

Rate = float | Schedule | Mapping[str, object]


def sgd(learning_rate: Rate, momentum: float | None = None, nesterov: bool = False) -> Optimizer:
    """Stochastic gradient descent (``optax.sgd``); see :mod:`paramstore.optim._sgd`."""
    return optimizer_from_spec(
        {"name": "sgd", "learning_rate": learning_rate, "momentum": momentum, "nesterov": nesterov}
    )


def momentum(learning_rate: Rate, momentum: float = 0.9, nesterov: bool = False) -> Optimizer:
    """SGD with momentum: ``sgd(learning_rate, momentum, nesterov)`` with momentum 0.9 by default."""
    return optimizer_from_spec(
        {"name": "momentum", "learning_rate": learning_rate, "momentum": momentum, "nesterov": nesterov}
    )


def adam(
    learning_rate: Rate,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    *,
    nesterov: bool = False,
) -> Optimizer:
    """Adam (``optax.adam``); see :mod:`paramstore.optim._adam`."""
    return optimizer_from_spec(
        {
            "name": "adam",
            "learning_rate": learning_rate,
            "b1": b1,
            "b2": b2,
            "eps": eps,
            "eps_root": eps_root,
            "nesterov": nesterov,
        }
    )


def nadam(
    learning_rate: Rate, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, eps_root: float = 0.0
) -> Optimizer:
    """NAdam (``optax.nadam``): ``adam(..., nesterov=True)``."""
    return adam(learning_rate, b1, b2, eps, eps_root, nesterov=True)


def adamw(
    learning_rate: Rate,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    weight_decay: float | Schedule | Mapping[str, object] = 1e-4,
    *,
    nesterov: bool = False,
) -> Optimizer:
    """AdamW (``optax.adamw``): Adam with decoupled weight decay; see :mod:`paramstore.optim._adam`."""
    return optimizer_from_spec(
        {
            "name": "adamw",
            "learning_rate": learning_rate,
            "b1": b1,
            "b2": b2,
            "eps": eps,
            "eps_root": eps_root,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
        }
    )


def nadamw(
    learning_rate: Rate,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    weight_decay: float | Schedule | Mapping[str, object] = 1e-4,
) -> Optimizer:
    """NAdamW (``optax.nadamw``): ``adamw(..., nesterov=True)``."""
    return adamw(learning_rate, b1, b2, eps, eps_root, weight_decay, nesterov=True)


def adagrad(learning_rate: Rate, initial_accumulator_value: float = 0.1, eps: float = 1e-7) -> Optimizer:
    """AdaGrad (``optax.adagrad``); see :mod:`paramstore.optim._adagrad`."""
    return optimizer_from_spec(
        {
            "name": "adagrad",
            "learning_rate": learning_rate,
            "initial_accumulator_value": initial_accumulator_value,
            "eps": eps,
        }
    )


def rmsprop(
    learning_rate: Rate,
    decay: float = 0.9,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    eps_in_sqrt: bool = True,
    centered: bool = False,
    momentum: float | None = None,
    nesterov: bool = False,
    bias_correction: bool = False,
) -> Optimizer:
    """RMSProp (``optax.rmsprop``); see :mod:`paramstore.optim._rmsprop`."""
    return optimizer_from_spec(
        {
            "name": "rmsprop",
            "learning_rate": learning_rate,
            "decay": decay,
            "eps": eps,
            "initial_scale": initial_scale,
            "eps_in_sqrt": eps_in_sqrt,
            "centered": centered,
            "momentum": momentum,
            "nesterov": nesterov,
            "bias_correction": bias_correction,
        }
    )


def constant_schedule(value: float) -> Schedule:
    """``optax.constant_schedule``: always ``value``."""
    return schedule_from_spec({"schedule": "constant_schedule", "value": value})


def polynomial_schedule(
    init_value: float, end_value: float, power: float, transition_steps: int, transition_begin: int = 0
) -> Schedule:
    """``optax.polynomial_schedule``; see :class:`paramstore.optim._schedules.PolynomialSchedule`."""
    return schedule_from_spec(
        {
            "schedule": "polynomial_schedule",
            "init_value": init_value,
            "end_value": end_value,
            "power": power,
            "transition_steps": transition_steps,
            "transition_begin": transition_begin,
        }
    )


def linear_schedule(
    init_value: float, end_value: float, transition_steps: int, transition_begin: int = 0
) -> Schedule:
    """``optax.linear_schedule``; see :class:`paramstore.optim._schedules.LinearSchedule`."""
    return schedule_from_spec(
        {
            "schedule": "linear_schedule",
            "init_value": init_value,
            "end_value": end_value,
            "transition_steps": transition_steps,
            "transition_begin": transition_begin,
        }
    )


def piecewise_constant_schedule(
    init_value: float, boundaries_and_scales: Mapping[int, float] | Mapping[str, float] | None = None
) -> Schedule:
    """``optax.piecewise_constant_schedule``; boundaries may be ints or decimal strings."""
    return schedule_from_spec(
        {
            "schedule": "piecewise_constant_schedule",
            "init_value": init_value,
            "boundaries_and_scales": boundaries_and_scales,
        }
    )


def exponential_decay(
    init_value: float,
    transition_steps: int,
    decay_rate: float,
    transition_begin: int = 0,
    staircase: bool = False,
    end_value: float | None = None,
) -> Schedule:
    """``optax.exponential_decay``; see :class:`paramstore.optim._schedules.ExponentialDecay`."""
    return schedule_from_spec(
        {
            "schedule": "exponential_decay",
            "init_value": init_value,
            "transition_steps": transition_steps,
            "decay_rate": decay_rate,
            "transition_begin": transition_begin,
            "staircase": staircase,
            "end_value": end_value,
        }
    )


def cosine_decay_schedule(
    init_value: float, decay_steps: int, alpha: float = 0.0, exponent: float = 1.0
) -> Schedule:
    """``optax.cosine_decay_schedule``; see :class:`paramstore.optim._schedules.CosineDecaySchedule`."""
    return schedule_from_spec(
        {
            "schedule": "cosine_decay_schedule",
            "init_value": init_value,
            "decay_steps": decay_steps,
            "alpha": alpha,
            "exponent": exponent,
        }
    )


def warmup_cosine_decay_schedule(
    init_value: float,
    peak_value: float,
    warmup_steps: int,
    decay_steps: int,
    end_value: float = 0.0,
    exponent: float = 1.0,
) -> Schedule:
    """``optax.warmup_cosine_decay_schedule``; see :class:`~._schedules.WarmupCosineDecaySchedule`."""
    return schedule_from_spec(
        {
            "schedule": "warmup_cosine_decay_schedule",
            "init_value": init_value,
            "peak_value": peak_value,
            "warmup_steps": warmup_steps,
            "decay_steps": decay_steps,
            "end_value": end_value,
            "exponent": exponent,
        }
    )
