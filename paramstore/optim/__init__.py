"""Server-side optimizers for the parameter store: optax's maths in pure numpy, bit-reproducible.

The replicas of a Raft group each apply the same gradient stream to their copy of a leaf; the
optimizers here update flat float32 arrays in place, using only element-wise IEEE-754 float32
operations in a fixed order, so every replica ends with the same bytes. The order of operations
is optax's (as XLA compiles it), so results agree with ``optax`` on float32 parameters to float32
rounding.

Usage::

    from paramstore import optim

    opt = optim.optimizer_from_spec({"name": "adam", "learning_rate": 1e-3})
    slots = opt.init_slots(weights.shape)
    opt.apply(weights, grads, slots, step)  # in place; step = updates applied before

Optimizers: :func:`sgd`, :func:`momentum`, :func:`adam`, :func:`nadam`, :func:`adamw`,
:func:`nadamw`, :func:`adagrad`, :func:`rmsprop`. Schedules (wherever a learning rate goes):
:func:`constant_schedule`, :func:`polynomial_schedule`, :func:`linear_schedule`,
:func:`piecewise_constant_schedule`, :func:`exponential_decay`, :func:`cosine_decay_schedule`,
:func:`warmup_cosine_decay_schedule`. Specs: :func:`optimizer_from_spec`,
:func:`schedule_from_spec`, :func:`canonical`, :class:`OptimizerSpecError`.
"""

from paramstore.optim._aliases import (
    adagrad,
    adam,
    adamw,
    constant_schedule,
    cosine_decay_schedule,
    exponential_decay,
    linear_schedule,
    momentum,
    nadam,
    nadamw,
    piecewise_constant_schedule,
    polynomial_schedule,
    rmsprop,
    sgd,
    warmup_cosine_decay_schedule,
)
from paramstore.optim._base import GRADIENT_DTYPES, Optimizer
from paramstore.optim._errors import OptimizerSpecError
from paramstore.optim._schedules import Schedule
from paramstore.optim._spec import (
    OPTIMIZER_NAMES,
    SCHEDULE_NAMES,
    canonical,
    hyper_parameter_defaults,
    optimizer_from_spec,
    schedule_defaults,
    schedule_from_spec,
)

__all__ = [
    "GRADIENT_DTYPES",
    "OPTIMIZER_NAMES",
    "SCHEDULE_NAMES",
    "Optimizer",
    "OptimizerSpecError",
    "Schedule",
    "adagrad",
    "adam",
    "adamw",
    "canonical",
    "constant_schedule",
    "cosine_decay_schedule",
    "exponential_decay",
    "hyper_parameter_defaults",
    "linear_schedule",
    "momentum",
    "nadam",
    "nadamw",
    "optimizer_from_spec",
    "piecewise_constant_schedule",
    "polynomial_schedule",
    "rmsprop",
    "schedule_defaults",
    "schedule_from_spec",
    "sgd",
    "warmup_cosine_decay_schedule",
]
