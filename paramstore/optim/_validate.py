"""Checks for the scalar fields of a spec: type, finiteness and range, with messages that name the field.

Every checker takes the field's dotted path and the raw (JSON-decoded) value, and returns the value
as the canonical Python type (``float`` for reals, ``int`` for integers, ``bool`` for flags) or
raises :class:`~paramstore.optim.OptimizerSpecError`. Booleans are never accepted as numbers, nor
floats (even integral ones) as integers, so a spec means exactly one thing.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Collection, Mapping

import numpy as np

from paramstore.optim._errors import OptimizerSpecError

__all__ = [
    "INT32_MAX",
    "check_keys",
    "flag",
    "integer",
    "real",
]

#: optax counts steps in an int32 (saturating); every step-valued field must fit in one.
INT32_MAX = 2**31 - 1


def _describe(value: object) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def check_keys(
    path: str, spec: object, allowed: Collection[str], required: Collection[str], what: str
) -> Mapping[str, object]:
    """Check that ``spec`` is a mapping with string keys, no unknown keys and every required key.

    ``path`` is the prefix for the keys' paths ("" at the top level); ``what`` names the thing the
    keys belong to (``"adam"``) in messages.
    """
    where = path or "spec"
    if not isinstance(spec, Mapping):
        raise OptimizerSpecError(where, f"expected a mapping (JSON object), got {_describe(spec)}")
    for key in spec:
        if not isinstance(key, str):
            raise OptimizerSpecError(where, f"expected string keys, got key {_describe(key)}")
    for key in sorted(spec):
        if key not in allowed:
            raise OptimizerSpecError(
                _join(path, key),
                f"unknown hyper-parameter of {what} (expected one of: {', '.join(sorted(allowed))})",
            )
    for key in sorted(required):
        if key not in spec:
            raise OptimizerSpecError(_join(path, key), f"missing required hyper-parameter of {what}")
    return spec


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _interval(lo: float | None, lo_open: bool, hi: float | None, hi_open: bool) -> str:
    if lo is None and hi is None:
        return "a finite number"
    if hi is None:
        return f"a finite number {'>' if lo_open else '>='} {lo:g}"
    if lo is None:
        return f"a finite number {'<' if hi_open else '<='} {hi:g}"
    return f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"


def real(
    path: str,
    value: object,
    *,
    lo: float | None = None,
    lo_open: bool = False,
    hi: float | None = None,
    hi_open: bool = False,
    float32_below_one: bool = False,
) -> float:
    """A finite real number in the given interval, returned as a Python ``float``.

    ``float32_below_one`` additionally requires ``np.float32(value) < 1``: a decay rate such as
    ``0.99999999`` rounds to 1.0 in float32, which makes a bias correction divide by zero.
    """
    expected = _interval(lo, lo_open, hi, hi_open)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise OptimizerSpecError(path, f"expected {expected}, got {_describe(value)}")
    number = float(value)
    if not math.isfinite(number):
        raise OptimizerSpecError(path, f"expected {expected}, got {_describe(value)}")
    too_low = lo is not None and (number <= lo if lo_open else number < lo)
    too_high = hi is not None and (number >= hi if hi_open else number > hi)
    if too_low or too_high:
        raise OptimizerSpecError(path, f"expected {expected}, got {_describe(value)}")
    if float32_below_one and not np.float32(number) < np.float32(1.0):
        raise OptimizerSpecError(
            path, f"expected {expected} that stays below 1 in float32, got {_describe(value)}"
        )
    return number


def integer(path: str, value: object, *, lo: int = 0, hi: int = INT32_MAX) -> int:
    """An integer in ``[lo, hi]`` (not a bool, not a float), returned as a Python ``int``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise OptimizerSpecError(path, f"expected an integer in [{lo}, {hi}], got {_describe(value)}")
    number = int(value)
    if not lo <= number <= hi:
        raise OptimizerSpecError(path, f"expected an integer in [{lo}, {hi}], got {_describe(value)}")
    return number


def flag(path: str, value: object) -> bool:
    """A JSON boolean (Python ``bool`` or ``numpy.bool_``)."""
    if not isinstance(value, bool | np.bool_):
        raise OptimizerSpecError(path, f"expected a boolean (true/false), got {_describe(value)}")
    return bool(value)
