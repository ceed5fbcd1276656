r"""AdaGrad, as ``optax.adagrad`` (``scale_by_rss`` followed by the learning rate).

With :math:`G_0` = ``initial_accumulator_value`` everywhere:

.. math::

    G_t &= g_t^2 + G_{t-1} \\
    w_t &= w_{t-1} - \alpha_{t-1}\, \frac{g_t}{\sqrt{G_t + \varepsilon}}
    \quad (\text{the factor is } 0 \text{ where } G_t \le 0)

:math:`\varepsilon` sits inside the square root. The slot ``sum_of_squares`` is :math:`G`.
optax computes :math:`1/\sqrt{\cdot}` with ``lax.rsqrt``; here it is a float32 square root and
a float32 division (what XLA's IEEE-strict lowering of ``rsqrt`` gives).

Reference: Duchi, Hazan & Singer, `Adaptive Subgradient Methods for Online Learning and
Stochastic Optimization <https://jmlr.org/papers/v12/duchi11a.html>`_, 2011.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from paramstore.optim import _scratch
from paramstore.optim._base import F32Array, Optimizer
from paramstore.optim._f32 import f32
from paramstore.optim._schedules import Schedule, rate_spec

__all__ = ["Adagrad"]


@dataclass(frozen=True, eq=False, repr=False)
class Adagrad(Optimizer):
    """``optax.adagrad(learning_rate, initial_accumulator_value, eps)``; slot ``sum_of_squares``."""

    name = "adagrad"
    learning_rate: Schedule
    initial_accumulator_value: float
    eps: float

    @property
    def slot_names(self) -> tuple[str, ...]:
        return ("sum_of_squares",)

    def spec(self) -> dict[str, object]:
        return {
            "name": self.name,
            "learning_rate": rate_spec(self.learning_rate),
            "initial_accumulator_value": self.initial_accumulator_value,
            "eps": self.eps,
        }

    def _slot_fill(self, slot: str) -> float:
        return self.initial_accumulator_value

    def _update(self, weights: F32Array, grads: F32Array, slots: Mapping[str, F32Array], step: int) -> None:
        total = slots["sum_of_squares"]
        (scale,) = _scratch.buffers(weights.shape, 1)
        (unset,) = _scratch.buffers(weights.shape, 1, np.bool_)
        np.multiply(grads, grads, out=scale)
        np.add(scale, total, out=total)  # G = g^2 + G
        np.add(total, f32(self.eps), out=scale)
        np.sqrt(scale, out=scale)
        np.divide(np.float32(1.0), scale, out=scale)  # 1 / sqrt(G + eps)
        np.greater(total, np.float32(0.0), out=unset)
        np.logical_not(unset, out=unset)  # where(G > 0, ., 0): also 0 where G is NaN
        np.copyto(scale, np.float32(0.0), where=unset)
        np.multiply(scale, grads, out=scale)
        np.multiply(scale, self.learning_rate(step), out=scale)
        np.subtract(weights, scale, out=weights)
