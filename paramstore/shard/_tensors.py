"""Tensors on the wire: flat arrays as raw little-endian bytes plus an element type.

Decoding gives a read-only numpy view over the received buffer: no copy, no per-element
Python work.
"""

from __future__ import annotations

import sys
from typing import Any, Protocol

import ml_dtypes
import numpy as np
import numpy.typing as npt

from proto import shard_pb2 as pb

__all__ = ["DTYPE_NAMES", "all_finite", "decode_tensor", "encode_tensor", "itemsize_bytes", "wire_array"]

_LITTLE_ENDIAN_HOST = sys.byteorder == "little"

#: Wire element type -> numpy dtype name.
DTYPE_NAMES: dict[int, str] = {
    pb.D_TYPE_FLOAT32: "float32",
    pb.D_TYPE_FLOAT16: "float16",
    pb.D_TYPE_BFLOAT16: "bfloat16",
}
_WIRE_OF_NAME = {name: wire for wire, name in DTYPE_NAMES.items()}
# Explicitly little-endian where numpy can say so; bfloat16 (ml_dtypes) is native-order only,
# so it needs a little-endian host.
_NUMPY: dict[int, np.dtype[Any]] = {
    pb.D_TYPE_FLOAT32: np.dtype("<f4"),
    pb.D_TYPE_FLOAT16: np.dtype("<f2"),
    pb.D_TYPE_BFLOAT16: np.dtype(ml_dtypes.bfloat16),
}


_REDUCIBLE_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def all_finite(array: npt.NDArray[Any]) -> bool:
    """Whether no element is NaN or infinite.

    For float32/float64 this reads the array twice (its min and max: NaN propagates through
    both, and an infinity is one of them) instead of ``np.isfinite(array).all()``, which
    first writes a boolean array as large as a quarter of the gradient: on every push, to
    fresh pages. Other element types (float16, bfloat16) have slow min/max in numpy, so they
    keep the boolean pass.
    """
    if array.size == 0:
        return True
    if array.dtype in _REDUCIBLE_FLOATS:
        return bool(np.isfinite(array.min())) and bool(np.isfinite(array.max()))
    return bool(np.isfinite(array).all())


def itemsize_bytes(dtype: int) -> int:
    """Bytes per element of a wire element type; ``KeyError`` for an unknown one."""
    return _NUMPY[dtype].itemsize


def wire_array(array: npt.NDArray[Any]) -> tuple[int, npt.NDArray[Any]]:
    """``array``'s wire element type, and ``array`` flattened (C order) in the wire's byte
    order: ``array`` itself, viewed, when it already is; float32, float16 or bfloat16 only."""
    wire = _WIRE_OF_NAME.get(array.dtype.name)
    if wire is None or (array.dtype.kind == "V" and array.dtype != _NUMPY[pb.D_TYPE_BFLOAT16]):
        raise TypeError(f"tensors are float32, float16 or bfloat16, got {array.dtype}")
    _check_host(wire)
    return wire, np.ascontiguousarray(array, dtype=_NUMPY[wire]).reshape(-1)


def encode_tensor(array: npt.NDArray[Any]) -> pb.Tensor:
    """``array`` flattened (C order) as a wire tensor; float32, float16 or bfloat16 only."""
    wire, flat = wire_array(array)
    return pb.Tensor(dtype=wire, data=flat.tobytes())  # type: ignore[arg-type]


class _TensorLike(Protocol):
    @property
    def dtype(self) -> int: ...
    @property
    def data(self) -> bytes | memoryview: ...


def decode_tensor(tensor: pb.Tensor | _TensorLike) -> npt.NDArray[Any]:
    """The flat array of ``tensor``, a read-only view of its bytes; ``ValueError`` for an
    unknown type or a byte count that is not a whole number of elements."""
    dtype = _NUMPY.get(tensor.dtype)
    if dtype is None:
        raise ValueError(f"unknown tensor dtype {tensor.dtype}")
    if len(tensor.data) % dtype.itemsize:
        raise ValueError(f"{len(tensor.data)} bytes is not a whole number of {DTYPE_NAMES[tensor.dtype]}")
    _check_host(tensor.dtype)
    return np.frombuffer(tensor.data, dtype=dtype)


def _check_host(wire: int) -> None:
    if wire == pb.D_TYPE_BFLOAT16 and not _LITTLE_ENDIAN_HOST:
        raise NotImplementedError("bfloat16 tensors need a little-endian host")
