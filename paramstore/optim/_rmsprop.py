r"""RMSProp, plain or centered, with optional (Nesterov) momentum, as ``optax.rmsprop``.

With decay :math:`\rho`, :math:`\nu_0` = ``initial_scale``, :math:`\bar g_0 = 0`:

.. math::

    \nu_t &= (1 - \rho)\, g_t^2 + \rho\, \nu_{t-1}, \qquad
    \bar g_t = (1 - \rho)\, g_t + \rho\, \bar g_{t-1} \quad (\text{centered only}) \\
    s_t &= \nu_t - \bar g_t^2 \ (\text{centered}) \quad\text{or}\quad \nu_t \\
    u_t &= -\alpha_{t-1}\, g_t \Big/ \begin{cases} \sqrt{s_t + \varepsilon} & \texttt{eps\_in\_sqrt} \\
        \sqrt{s_t} + \varepsilon & \text{otherwise} \end{cases}

With ``bias_correction`` :math:`\nu_t` and :math:`\bar g_t` are divided by :math:`1 - \rho^t` before
use. With ``momentum`` :math:`\mu` the *scaled* updates are traced (optax applies ``trace`` after
the learning rate): :math:`m_t = u_t + \mu m_{t-1}` and the step is :math:`m_t`, or
:math:`u_t + \mu m_t` with Nesterov. Then :math:`w_t = w_{t-1} + \text{step}`. Slots: ``nu``,
``mu`` (centered), ``trace`` (momentum) -- optax's state field names.

References: Hinton, `Neural Networks for Machine Learning, lecture 6e
<https://www.cs.toronto.edu/~tijmen/csc321/slides/lecture_slides_lec6.pdf>`_, 2012; Graves,
`Generating Sequences With Recurrent Neural Networks <https://arxiv.org/abs/1308.0850>`_, 2013
(the centered variant).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from paramstore.optim import _scratch
from paramstore.optim._base import F32Array, Optimizer
from paramstore.optim._f32 import ONE, f32, pow_count, recip
from paramstore.optim._schedules import Schedule, rate_spec
from paramstore.optim._validate import INT32_MAX

__all__ = ["RmsProp"]


@dataclass(frozen=True, eq=False, repr=False)
class RmsProp(Optimizer):
    """``optax.rmsprop``; slots ``nu``, ``mu`` if centered, ``trace`` with momentum."""

    name = "rmsprop"
    learning_rate: Schedule
    decay: float
    eps: float
    initial_scale: float
    eps_in_sqrt: bool
    centered: bool
    momentum: float | None
    nesterov: bool
    bias_correction: bool

    @property
    def slot_names(self) -> tuple[str, ...]:
        names = ("mu", "nu") if self.centered else ("nu",)
        return names if self.momentum is None else (*names, "trace")

    def spec(self) -> dict[str, object]:
        return {
            "name": self.name,
            "learning_rate": rate_spec(self.learning_rate),
            "decay": self.decay,
            "eps": self.eps,
            "initial_scale": self.initial_scale,
            "eps_in_sqrt": self.eps_in_sqrt,
            "centered": self.centered,
            "momentum": self.momentum,
            "nesterov": self.nesterov,
            "bias_correction": self.bias_correction,
        }

    def _slot_fill(self, slot: str) -> float:
        return self.initial_scale if slot == "nu" else 0.0

    def _update(self, weights: F32Array, grads: F32Array, slots: Mapping[str, F32Array], step: int) -> None:
        nu = slots["nu"]
        scale, spare = _scratch.buffers(weights.shape, 2)
        rho, one_minus_rho = f32(self.decay), f32(1.0 - self.decay)
        correction = recip(ONE - pow_count(rho, min(step + 1, INT32_MAX))) if self.bias_correction else None

        # nu = (1 - rho) g^2 + rho nu
        np.multiply(grads, grads, out=scale)
        np.multiply(scale, one_minus_rho, out=scale)
        np.multiply(nu, rho, out=nu)
        np.add(scale, nu, out=nu)
        nu_hat = nu
        if correction is not None:
            np.multiply(nu, correction, out=scale)
            nu_hat = scale
        if self.centered:
            mu = slots["mu"]  # mean = (1 - rho) g + rho mean
            np.multiply(grads, one_minus_rho, out=spare)
            np.multiply(mu, rho, out=mu)
            np.add(spare, mu, out=mu)
            mu_hat = mu
            if correction is not None:
                np.multiply(mu, correction, out=spare)
                mu_hat = spare
            np.multiply(mu_hat, mu_hat, out=spare)
            np.subtract(nu_hat, spare, out=scale)  # nu_hat - mu_hat^2
            nu_hat = scale
        if self.eps_in_sqrt:
            np.add(nu_hat, f32(self.eps), out=scale)
            np.sqrt(scale, out=scale)
        else:
            np.sqrt(nu_hat, out=scale)
            np.add(scale, f32(self.eps), out=scale)
        np.divide(np.float32(1.0), scale, out=scale)
        np.multiply(scale, grads, out=scale)
        # optax scales by -lr *before* the momentum trace, so the trace holds signed steps.
        np.multiply(scale, -self.learning_rate(step), out=scale)
        if self.momentum is not None:
            mu_m = f32(self.momentum)
            trace = slots["trace"]
            np.multiply(trace, mu_m, out=trace)
            np.add(scale, trace, out=trace)  # m = u + mu m
            if self.nesterov:
                np.multiply(trace, mu_m, out=spare)
                np.add(scale, spare, out=scale)  # u + mu m
            else:
                np.copyto(scale, trace)
        np.add(weights, scale, out=weights)
