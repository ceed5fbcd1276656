"""``all_finite``: the min/max shortcut agrees with ``np.isfinite(...).all()`` everywhere."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from paramstore.shard import all_finite

_DTYPES = [np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16)]


@given(
    st.sampled_from(_DTYPES).flatmap(
        lambda dtype: arrays(dtype, st.integers(0, 64), elements={"allow_nan": True, "allow_infinity": True})
    )
)
def test_all_finite_matches_the_elementwise_definition(values: np.ndarray) -> None:
    assert all_finite(values) == bool(np.isfinite(values).all())


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, ml_dtypes.bfloat16])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", [0, 1000, -1])
def test_one_bad_element_anywhere_is_found(dtype: type, bad: float, where: int) -> None:
    values = np.full(4096, 0.5, dtype)
    assert all_finite(values)
    values[where] = bad
    assert not all_finite(values)


def test_an_empty_array_is_finite() -> None:
    assert all_finite(np.zeros(0, np.float32))
