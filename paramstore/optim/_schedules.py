"""Learning-rate schedules: optax's schedules, evaluated in float32 as jitted optax evaluates them.

A schedule maps the step count ``t`` (the number of updates applied before the current one, the
``count`` of optax's ``scale_by_learning_rate``) to a float32 value. Each class below carries
optax's hyper-parameter names; the maths is the one of ``optax.schedules`` and every float32
rounding happens where XLA rounds (see :mod:`paramstore.optim._f32`). Counts saturate at the
int32 maximum, as optax's counter does.

Notation: :math:`I` init value, :math:`E` end value, :math:`P` peak value, :math:`B` transition
begin, :math:`T` transition (or decay) steps, :math:`W` warmup steps.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from paramstore.optim._f32 import ONE, cos, f32, real_pow, recip, xla_pow
from paramstore.optim._validate import INT32_MAX

__all__ = [
    "ConstantSchedule",
    "CosineDecaySchedule",
    "ExponentialDecay",
    "LinearSchedule",
    "PiecewiseConstantSchedule",
    "PolynomialSchedule",
    "Schedule",
    "WarmupCosineDecaySchedule",
    "rate_spec",
]

_F32_PI = f32(math.pi)


def _count(count: int) -> int:
    return min(max(int(count), 0), INT32_MAX)


class Schedule(abc.ABC):
    """A step count -> float32 value map; ``spec()`` is its canonical JSON-able description."""

    name: ClassVar[str]

    @abc.abstractmethod
    def __call__(self, count: int) -> np.float32:
        """The value at step count ``count`` (>= 0)."""

    @abc.abstractmethod
    def spec(self) -> dict[str, object]:
        """``{"schedule": name, **hyper_parameters}`` with every default filled in."""


@dataclass(frozen=True)
class ConstantSchedule(Schedule):
    r"""The constant :math:`v`; a plain number as a learning rate means this.

    Its spec is the bare number: ``{"schedule": "constant_schedule", "value": v}`` and ``v``
    describe the same learning rate, and optax computes the same float32 ``-v`` for both.
    """

    name: ClassVar[str] = "constant_schedule"
    value: float

    def __call__(self, count: int) -> np.float32:
        return f32(self.value)

    def spec(self) -> dict[str, object]:
        return {"schedule": self.name, "value": self.value}


@dataclass(frozen=True)
class PolynomialSchedule(Schedule):
    r"""Polynomial transition from :math:`I` to :math:`E` (``optax.polynomial_schedule``).

    .. math::
        \tau = \min(\max(t - B, 0), T), \qquad
        v_t = (I - E)\,(1 - \tau / T)^{p} + E

    :math:`I - E` is taken in float64 (both are Python floats in optax) and rounded once; an
    integral power ``p`` is applied as a chain of float32 multiplications (``lax.integer_pow``).
    """

    name: ClassVar[str] = "polynomial_schedule"
    init_value: float
    end_value: float
    power: float
    transition_steps: int
    transition_begin: int

    def __call__(self, count: int) -> np.float32:
        tau = min(max(_count(count) - self.transition_begin, 0), self.transition_steps)
        frac = ONE - f32(tau) * recip(f32(self.transition_steps))
        return f32(self.init_value - self.end_value) * real_pow(frac, self.power) + f32(self.end_value)

    def spec(self) -> dict[str, object]:
        return {
            "schedule": self.name,
            "init_value": self.init_value,
            "end_value": self.end_value,
            "power": self.power,
            "transition_steps": self.transition_steps,
            "transition_begin": self.transition_begin,
        }


@dataclass(frozen=True)
class LinearSchedule(Schedule):
    r"""Linear transition from :math:`I` to :math:`E` (``optax.linear_schedule``).

    The polynomial schedule with power 1: :math:`v_t = (I - E)(1 - \tau/T) + E`,
    :math:`\tau = \min(\max(t - B, 0), T)`.
    """

    name: ClassVar[str] = "linear_schedule"
    init_value: float
    end_value: float
    transition_steps: int
    transition_begin: int

    def __call__(self, count: int) -> np.float32:
        tau = min(max(_count(count) - self.transition_begin, 0), self.transition_steps)
        frac = ONE - f32(tau) * recip(f32(self.transition_steps))
        return f32(self.init_value - self.end_value) * frac + f32(self.end_value)

    def spec(self) -> dict[str, object]:
        return {
            "schedule": self.name,
            "init_value": self.init_value,
            "end_value": self.end_value,
            "transition_steps": self.transition_steps,
            "transition_begin": self.transition_begin,
        }


@dataclass(frozen=True)
class PiecewiseConstantSchedule(Schedule):
    r""":math:`I` times every scale whose boundary has been reached (``optax.piecewise_constant_schedule``).

    .. math:: v_t = I \prod_{i:\ t \ge b_i} s_i

    The product is accumulated in float32 in increasing boundary order. ``boundaries_and_scales``
    is kept as sorted ``(boundary, scale)`` pairs; its spec is a JSON object with the boundaries
    as decimal strings.
    """

    name: ClassVar[str] = "piecewise_constant_schedule"
    init_value: float
    boundaries_and_scales: tuple[tuple[int, float], ...]

    def __call__(self, count: int) -> np.float32:
        step = _count(count)
        value = f32(self.init_value)
        for boundary, scale in self.boundaries_and_scales:
            if step >= boundary:
                value = f32(scale) * value
        return value

    def spec(self) -> dict[str, object]:
        return {
            "schedule": self.name,
            "init_value": self.init_value,
            "boundaries_and_scales": {str(b): s for b, s in self.boundaries_and_scales},
        }


@dataclass(frozen=True)
class ExponentialDecay(Schedule):
    r"""Exponential decay from :math:`I` at rate :math:`r` (``optax.exponential_decay``).

    .. math::
        v_t = \begin{cases} I & t \le B \\ I\, r^{(t - B)/T} & t > B \end{cases}

    With ``staircase`` the exponent is :math:`\lfloor (t - B)/T \rfloor`. With ``end_value`` the
    value is clipped to it from below (:math:`r < 1`) or above (:math:`r > 1`).
    """

    name: ClassVar[str] = "exponential_decay"
    init_value: float
    transition_steps: int
    decay_rate: float
    transition_begin: int
    staircase: bool
    end_value: float | None

    def __call__(self, count: int) -> np.float32:
        decreased = _count(count) - self.transition_begin
        if decreased <= 0:
            value = f32(self.init_value)
        else:
            exponent = f32(decreased) * recip(f32(self.transition_steps))
            if self.staircase:
                exponent = np.floor(exponent)
            value = f32(self.init_value) * xla_pow(f32(self.decay_rate), float(exponent))
        if self.end_value is not None:
            bound = f32(self.end_value)
            value = max(value, bound) if self.decay_rate < 1.0 else min(value, bound)
        return np.float32(value)

    def spec(self) -> dict[str, object]:
        return {
            "schedule": self.name,
            "init_value": self.init_value,
            "transition_steps": self.transition_steps,
            "decay_rate": self.decay_rate,
            "transition_begin": self.transition_begin,
            "staircase": self.staircase,
            "end_value": self.end_value,
        }


def _cosine_decay(
    init_value: float, decay_steps: int, alpha: float, exponent: float, count: int
) -> np.float32:
    steps = f32(float(decay_steps))
    clipped = min(f32(count), steps)
    cosine = np.float32(0.5) * (ONE + cos(_F32_PI * clipped * recip(steps)))
    decayed = f32(1.0 - alpha) * real_pow(cosine, exponent) + f32(alpha)
    return np.float32(f32(init_value) * decayed)


@dataclass(frozen=True)
class CosineDecaySchedule(Schedule):
    r"""Cosine decay from :math:`I` to :math:`\alpha I` in :math:`T` steps (``optax.cosine_decay_schedule``).

    .. math::
        v_t = I\left((1 - \alpha)\left[\tfrac12\left(1 + \cos\tfrac{\pi \min(t, T)}{T}\right)\right]^{p}
        + \alpha\right)

    Reference: Loshchilov & Hutter, `SGDR: Stochastic Gradient Descent with Warm Restarts
    <https://arxiv.org/abs/1608.03983>`_, 2017.
    """

    name: ClassVar[str] = "cosine_decay_schedule"
    init_value: float
    decay_steps: int
    alpha: float
    exponent: float

    def __call__(self, count: int) -> np.float32:
        return _cosine_decay(self.init_value, self.decay_steps, self.alpha, self.exponent, _count(count))

    def spec(self) -> dict[str, object]:
        return {
            "schedule": self.name,
            "init_value": self.init_value,
            "decay_steps": self.decay_steps,
            "alpha": self.alpha,
            "exponent": self.exponent,
        }


@dataclass(frozen=True)
class WarmupCosineDecaySchedule(Schedule):
    r"""Linear warmup from :math:`I` to :math:`P`, then cosine decay to :math:`E`.

    ``optax.warmup_cosine_decay_schedule``.

    For :math:`t < W` the linear schedule from :math:`I` to :math:`P` over :math:`W` steps; from
    then on the cosine decay schedule with init value :math:`P`, :math:`T - W` decay steps and
    :math:`\alpha = E / P` (0 when :math:`P = 0`, computed in float64), evaluated at
    :math:`t - W`. ``decay_steps`` counts the warmup.
    """

    name: ClassVar[str] = "warmup_cosine_decay_schedule"
    init_value: float
    peak_value: float
    warmup_steps: int
    decay_steps: int
    end_value: float
    exponent: float

    def __call__(self, count: int) -> np.float32:
        step = _count(count)
        if step < self.warmup_steps:
            frac = ONE - f32(step) * recip(f32(self.warmup_steps))
            return f32(self.init_value - self.peak_value) * frac + f32(self.peak_value)
        alpha = 0.0 if self.peak_value == 0.0 else self.end_value / self.peak_value
        return _cosine_decay(
            self.peak_value,
            self.decay_steps - self.warmup_steps,
            alpha,
            self.exponent,
            step - self.warmup_steps,
        )

    def spec(self) -> dict[str, object]:
        return {
            "schedule": self.name,
            "init_value": self.init_value,
            "peak_value": self.peak_value,
            "warmup_steps": self.warmup_steps,
            "decay_steps": self.decay_steps,
            "end_value": self.end_value,
            "exponent": self.exponent,
        }


def rate_spec(rate: Schedule) -> float | dict[str, object]:
    """The canonical spec of a learning rate (or weight decay): a number when it is constant."""
    if isinstance(rate, ConstantSchedule):
        return rate.value
    return rate.spec()
