"""Per-thread scratch buffers, so an update allocates nothing in the steady state.

A store applies one optimizer to many leaves of different shapes, possibly from several threads.
Each thread keeps small pools of flat buffers that grow to the largest leaf seen; a request
returns views of the first ``size`` elements shaped like the leaf. Buffers of different indices,
dtypes or pool names never alias (the upcast gradients live in their own pool, so the update's
temporaries cannot overwrite them).
Leaves above :data:`MAX_CACHED_ELEMENTS` get fresh buffers that are not kept, which bounds what a
thread holds on to.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["MAX_CACHED_ELEMENTS", "buffers"]

#: Largest leaf (in elements) whose scratch buffers are cached: 16 MiB per float32 buffer.
MAX_CACHED_ELEMENTS = 1 << 22

_local = threading.local()


def _pool(name: str, dtype: np.dtype[Any]) -> list[npt.NDArray[Any]]:
    pools: dict[tuple[str, np.dtype[Any]], list[npt.NDArray[Any]]] | None = getattr(_local, "pools", None)
    if pools is None:
        pools = {}
        _local.pools = pools
    return pools.setdefault((name, dtype), [])


def buffers(
    shape: tuple[int, ...], count: int, dtype: type[np.generic] = np.float32, pool: str = "work"
) -> list[npt.NDArray[Any]]:
    """``count`` distinct uninitialised C-contiguous arrays of ``shape`` and ``dtype`` from ``pool``.

    They stay valid until the same thread asks the same pool again; callers must not keep them.
    """
    size = math.prod(shape)
    kind = np.dtype(dtype)
    if size > MAX_CACHED_ELEMENTS:
        return [np.empty(shape, kind) for _ in range(count)]
    cache = _pool(pool, kind)
    while len(cache) < count:
        cache.append(np.empty(0, kind))
    out = []
    for index in range(count):
        if cache[index].size < size:
            cache[index] = np.empty(size, kind)
        out.append(cache[index][:size].reshape(shape))
    return out
