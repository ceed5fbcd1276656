"""Float32 scalar arithmetic that reproduces what XLA computes for optax's scalar terms.

optax's hyper-parameters are Python floats. Under jax's weak typing an expression such as
``1 - b1`` is evaluated in Python (float64) and only the result is rounded to float32 when it
meets a float32 array; an expression that involves a traced value (the step count) is evaluated
in float32, one rounding per operation. The helpers here follow the same rules with ``numpy``
float32 scalars (NEP 50 gives numpy 2 the same promotion rules as jax):

* :func:`f32` rounds a Python number to float32 -- the "weak type" conversion;
* :func:`recip` is ``1 / x`` in float32: XLA's algebraic simplifier rewrites ``A / s`` for a
  scalar (or constant) ``s`` into ``A * (1 / s)``, so optax's bias corrections and the divisions
  by a constant in its schedules are really a reciprocal followed by a multiplication;
* :func:`xla_pow` stands for XLA's float32 ``pow`` (which is within an ulp of the exact power):
  an integral exponent goes through exponentiation by squaring in float64 -- only IEEE
  multiplications, so the result is the same on every machine -- rounded once to float32;
  :func:`pow_count` is ``b ** count`` with the int32 count converted to float32 first, as XLA
  does;
* :func:`integer_pow` mirrors ``jax.lax.integer_pow`` (``x ** n`` for a Python int ``n``): the
  same chain of float32 multiplications jax emits;
* :func:`real_pow` applies an integral exponent like :func:`integer_pow` (what optax computes
  when the exponent is given as a Python int; XLA also simplifies ``pow(x, 1.0)`` to ``x`` and
  ``pow(x, 2.0)`` to ``x * x``); other exponents go to :func:`xla_pow`, which for a
  non-integral exponent, like :func:`cos`, rounds the float64 result of the platform's ``libm``
  to float32. XLA's own float32 ``pow``/``cos`` differ from
  that in the last place for about 1% of arguments: these scalar schedule terms are the only
  places where this package cannot be bit-identical to optax.

Only the scalar schedule terms go through ``libm``; every array operation of the optimizers is a
single IEEE-754 operation (``+ - * /`` or ``sqrt``), so updates are bit-reproducible on any
conforming hardware.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["ONE", "cos", "f32", "integer_pow", "pow_count", "real_pow", "recip", "xla_pow"]

ONE = np.float32(1.0)


def f32(value: float) -> np.float32:
    """Round a Python number to float32 (round to nearest even), as jax's weak typing does."""
    return np.float32(value)


def recip(value: np.float32) -> np.float32:
    """``1 / value`` rounded to float32 (XLA's rewrite of a division by a scalar)."""
    return np.float32(ONE / value)


def _pow_int_f64(base: float, exponent: int) -> float:
    """``base ** exponent`` for ``exponent >= 0`` by squaring: IEEE multiplications only."""
    result = 1.0
    square = base
    while exponent:
        if exponent & 1:
            result *= square
        exponent >>= 1
        if exponent:
            square *= square
    return result


def _round(value: float) -> np.float32:
    with np.errstate(over="ignore"):  # beyond the float32 range: inf, as XLA gives
        return np.float32(value)


def xla_pow(base: np.float32, exponent: float) -> np.float32:
    """``base ** exponent`` for ``base >= 0``, rounded to float32 from a float64 computation."""
    if float(exponent).is_integer() and exponent >= 0:
        return _round(_pow_int_f64(float(base), int(exponent)))
    try:
        return _round(math.pow(float(base), float(exponent)))
    except OverflowError:
        return np.float32(np.inf)


def pow_count(base: np.float32, count: int) -> np.float32:
    """``base ** count`` for a step count, as XLA's float32 ``pow(base, float32(count))``."""
    return xla_pow(base, float(np.float32(count)))  # XLA converts the int32 count to float32 first.


def integer_pow(value: np.float32, exponent: int) -> np.float32:
    """``value ** exponent`` for a Python int, with the multiplication chain of ``lax.integer_pow``."""
    if exponent == 0:
        return ONE
    reciprocal = exponent < 0
    remaining = -exponent if reciprocal else exponent
    acc: np.float32 | None = None
    square = value
    while remaining > 0:
        if remaining & 1:
            acc = square if acc is None else np.float32(acc * square)
        remaining >>= 1
        if remaining > 0:
            square = np.float32(square * square)
    assert acc is not None
    return np.float32(ONE / acc) if reciprocal else acc


def real_pow(base: np.float32, exponent: float) -> np.float32:
    """``base ** exponent`` for a float32 base and a real exponent (see the module docstring)."""
    if float(exponent).is_integer() and abs(exponent) <= 64:
        return integer_pow(base, int(exponent))
    return xla_pow(base, exponent)


def cos(value: np.float32) -> np.float32:
    """``cos`` of a float32, rounded to float32 from ``libm``'s float64 result."""
    return np.float32(math.cos(float(value)))
