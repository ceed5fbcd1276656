r"""Adam and AdamW (optionally with Nesterov momentum: NAdam / NAdamW), as ``optax.adam``/``adamw``.

With step number :math:`t` (1 for the first update), learning rate :math:`\alpha`, decay rates
:math:`\beta_1, \beta_2`, :math:`\varepsilon` (``eps``), :math:`\bar\varepsilon` (``eps_root``)
and, for AdamW, weight decay :math:`\lambda`:

.. math::

    m_t &= (1 - \beta_1)\, g_t + \beta_1 m_{t-1}, \qquad
    v_t = (1 - \beta_2)\, g_t^2 + \beta_2 v_{t-1} \\
    \hat m_t &= m_t / (1 - \beta_1^t), \qquad \hat v_t = v_t / (1 - \beta_2^t) \\
    u_t &= \hat m_t / \left(\sqrt{\hat v_t + \bar\varepsilon} + \varepsilon\right)
        \;\left[+\ \lambda\, w_{t-1} \text{ for AdamW}\right] \\
    w_t &= w_{t-1} - \alpha_{t-1} u_t

(:math:`\alpha` and :math:`\lambda` may be schedules, evaluated at the count :math:`t - 1`.)
With Nesterov momentum (Dozat) :math:`\hat m_t = \beta_1 m_t / (1 - \beta_1^{t+1}) + (1 - \beta_1)
g_t / (1 - \beta_1^t)`. The weight decay is decoupled from the moments and multiplied by the
learning rate, as in optax (and PyTorch); the slots ``mu``/``nu`` hold :math:`m, v` without bias
correction, exactly optax's ``ScaleByAdamState``. The bias corrections are multiplications by a
float32 reciprocal: that is what XLA's algebraic simplifier makes of optax's divisions for a
one-leaf tree. (For a tree of several leaves it rewrites them differently, into
:math:`m / ((1 - \beta_1^t)(\sqrt{\hat v} + \varepsilon))`, so optax itself then differs in the
last bit from its own one-leaf result; the per-leaf form is the one a store applies.)

References: Kingma & Ba, `Adam: A Method for Stochastic Optimization
<https://arxiv.org/abs/1412.6980>`_, 2014; Loshchilov & Hutter, `Decoupled Weight Decay
Regularization <https://arxiv.org/abs/1711.05101>`_, 2019; Dozat, `Incorporating Nesterov
Momentum into Adam <https://openreview.net/pdf?id=OM0jvwB8jIp57ZJjtNEZ>`_, 2016.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from paramstore.optim import _scratch
from paramstore.optim._base import F32Array, Optimizer
from paramstore.optim._f32 import ONE, f32, pow_count, recip
from paramstore.optim._schedules import ConstantSchedule, Schedule, rate_spec
from paramstore.optim._validate import INT32_MAX

__all__ = ["Adam", "AdamW"]


def _inc(count: int) -> int:
    return min(count + 1, INT32_MAX)  # optax's safe_increment of an int32


@dataclass(frozen=True, eq=False, repr=False)
class Adam(Optimizer):
    """``optax.adam(learning_rate, b1, b2, eps, eps_root, nesterov=...)``; slots ``mu``, ``nu``."""

    name = "adam"
    learning_rate: Schedule
    b1: float
    b2: float
    eps: float
    eps_root: float
    nesterov: bool

    @property
    def slot_names(self) -> tuple[str, ...]:
        return ("mu", "nu")

    def spec(self) -> dict[str, object]:
        return {
            "name": self.name,
            "learning_rate": rate_spec(self.learning_rate),
            "b1": self.b1,
            "b2": self.b2,
            "eps": self.eps,
            "eps_root": self.eps_root,
            "nesterov": self.nesterov,
        }

    def _weight_decay(self) -> Schedule | None:
        return None

    def _update(self, weights: F32Array, grads: F32Array, slots: Mapping[str, F32Array], step: int) -> None:
        mu, nu = slots["mu"], slots["nu"]
        first, second = _scratch.buffers(weights.shape, 2)
        b1, b2 = f32(self.b1), f32(self.b2)
        one_minus_b1, one_minus_b2 = f32(1.0 - self.b1), f32(1.0 - self.b2)  # float64, then rounded
        t = _inc(step)

        # m = (1 - b1) g + b1 m ;  v = (1 - b2) g^2 + b2 v
        np.multiply(mu, b1, out=mu)
        np.multiply(grads, one_minus_b1, out=first)
        np.add(first, mu, out=mu)
        np.multiply(grads, grads, out=second)
        np.multiply(second, one_minus_b2, out=second)
        np.multiply(nu, b2, out=nu)
        np.add(second, nu, out=nu)

        correct1 = recip(ONE - pow_count(b1, t))
        if self.nesterov:
            # m_hat = b1 * (m / (1 - b1^(t+1))) + (1 - b1) * (g / (1 - b1^t))
            np.multiply(mu, recip(ONE - pow_count(b1, _inc(t))), out=first)
            np.multiply(first, b1, out=first)
            np.multiply(grads, correct1, out=second)
            np.multiply(second, one_minus_b1, out=second)
            np.add(first, second, out=first)
        else:
            np.multiply(mu, correct1, out=first)
        # u = m_hat / (sqrt(v_hat + eps_root) + eps)
        np.multiply(nu, recip(ONE - pow_count(b2, t)), out=second)
        if self.eps_root != 0.0:
            np.add(second, f32(self.eps_root), out=second)
        np.sqrt(second, out=second)
        np.add(second, f32(self.eps), out=second)
        np.divide(first, second, out=first)

        decay = self._weight_decay()
        if decay is not None:
            np.multiply(weights, decay(step), out=second)
            np.add(first, second, out=first)  # u + lambda w
        np.multiply(first, self.learning_rate(step), out=first)
        np.subtract(weights, first, out=weights)


@dataclass(frozen=True, eq=False, repr=False)
class AdamW(Adam):
    """``optax.adamw(learning_rate, b1, b2, eps, eps_root, weight_decay, nesterov=...)``."""

    name = "adamw"
    weight_decay: Schedule

    def spec(self) -> dict[str, object]:
        return {**super().spec(), "weight_decay": rate_spec(self.weight_decay)}

    def _weight_decay(self) -> Schedule | None:
        # optax skips the term for a constant zero (which also keeps inf weights from making NaN).
        if isinstance(self.weight_decay, ConstantSchedule) and self.weight_decay.value == 0.0:
            return None
        return self.weight_decay
