r"""Stochastic gradient descent, optionally with (Nesterov) momentum, as ``optax.sgd``.

With learning rate :math:`\alpha_t` and momentum :math:`\mu` (optax's ``trace`` transform
followed by ``scale_by_learning_rate``):

.. math::

    m_t &= g_t + \mu\, m_{t-1} \\
    u_t &= \begin{cases} m_t & \text{plain momentum} \\ g_t + \mu\, m_t & \text{Nesterov} \end{cases} \\
    w_{t} &= w_{t-1} - \alpha_t u_t

and :math:`w_t = w_{t-1} - \alpha_t g_t` without momentum. The trace accumulates raw gradients
(the learning rate is applied after it), so a schedule change does not rescale the trace.

Reference: Sutskever et al., `On the importance of initialization and momentum in deep learning
<http://proceedings.mlr.press/v28/sutskever13.pdf>`_, 2013.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from paramstore.optim import _scratch
from paramstore.optim._base import F32Array, Optimizer
from paramstore.optim._f32 import f32
from paramstore.optim._schedules import Schedule, rate_spec

__all__ = ["Sgd"]


@dataclass(frozen=True, eq=False, repr=False)
class Sgd(Optimizer):
    """``optax.sgd(learning_rate, momentum, nesterov)``; slot ``trace`` when momentum is set."""

    name = "sgd"
    learning_rate: Schedule
    momentum: float | None
    nesterov: bool

    @property
    def slot_names(self) -> tuple[str, ...]:
        return () if self.momentum is None else ("trace",)

    def spec(self) -> dict[str, object]:
        return {
            "name": self.name,
            "learning_rate": rate_spec(self.learning_rate),
            "momentum": self.momentum,
            "nesterov": self.nesterov,
        }

    def _update(self, weights: F32Array, grads: F32Array, slots: Mapping[str, F32Array], step: int) -> None:
        lr = self.learning_rate(step)
        (scaled,) = _scratch.buffers(weights.shape, 1)
        if self.momentum is None:
            direction = grads
        else:
            mu = f32(self.momentum)
            trace = slots["trace"]
            np.multiply(trace, mu, out=trace)
            np.add(grads, trace, out=trace)  # m = g + mu * m
            if self.nesterov:
                np.multiply(trace, mu, out=scaled)
                np.add(grads, scaled, out=scaled)  # u = g + mu * m
                direction = scaled
            else:
                direction = trace
        # optax adds (-lr) * u; negation is exact, so this is w - lr * u bit for bit.
        np.multiply(direction, lr, out=scaled)
        np.subtract(weights, scaled, out=weights)
