"""The :class:`Optimizer` interface: float32 leaves updated in place, one leaf at a time.

optax's ``update``/``apply_updates`` pair becomes a single in-place call per leaf::

    slots = opt.init_slots(weights.shape)          # optax's ``init`` for one leaf
    opt.apply(weights, grads, slots, step)         # updates ``weights`` and ``slots`` in place

``step`` is the number of updates applied to the leaf before this one (optax's ``count``; counts
saturate at the int32 maximum as optax's do). Weights and slots are float32; gradients may be
float32, float16 or bfloat16 and are upcast (exactly) to float32 first. All arithmetic is float32
and element-wise, so the result depends only on the inputs: replicas that apply the same
gradients get the same bytes.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from paramstore.optim import _scratch
from paramstore.optim._validate import INT32_MAX

__all__ = ["GRADIENT_DTYPES", "F32Array", "Optimizer"]

F32Array = npt.NDArray[np.float32]

#: Gradient dtypes :meth:`Optimizer.apply` accepts (by name; bfloat16 is ``ml_dtypes.bfloat16``).
GRADIENT_DTYPES = ("float32", "float16", "bfloat16")


def _is_bfloat16(dtype: np.dtype[Any]) -> bool:
    return dtype.name == "bfloat16" and dtype.itemsize == 2


def _upcast(grads: npt.NDArray[Any]) -> F32Array:
    """``grads`` as float32, exactly (every float16/bfloat16 value is a float32 value)."""
    if grads.dtype == np.float32:
        return grads
    (out,) = _scratch.buffers(grads.shape, 1, pool="grads")
    if _is_bfloat16(grads.dtype):
        # A bfloat16 is the top half of a float32: shift its bits into place (NaN payloads too).
        wide = out.view(np.uint32)
        np.left_shift(grads.view(np.uint16), 16, out=wide, dtype=np.uint32)
    else:
        np.copyto(out, grads, casting="safe")
    return out


class Optimizer(abc.ABC):
    """A server-side optimizer: optax maths on flat float32 numpy arrays, in place.

    Instances are immutable values; two optimizers are equal when their canonical specs are.
    """

    #: The canonical spec name (``"adam"``, ``"sgd"``, ...).
    name: str

    @property
    @abc.abstractmethod
    def slot_names(self) -> tuple[str, ...]:
        """Names of the per-leaf state arrays, in a fixed order (optax's state field names)."""

    @abc.abstractmethod
    def spec(self) -> dict[str, object]:
        """The canonical JSON-able spec: ``{"name": ..., "learning_rate": ..., ...}``, defaults filled in."""

    def _slot_fill(self, slot: str) -> float:
        """The initial value of every element of ``slot``."""
        del slot
        return 0.0

    @abc.abstractmethod
    def _update(self, weights: F32Array, grads: F32Array, slots: Mapping[str, F32Array], step: int) -> None:
        """Apply one update in place; arguments are validated, ``grads`` already float32."""

    def init_slots(
        self, shape: tuple[int, ...] | int, dtype: npt.DTypeLike = np.float32
    ) -> dict[str, F32Array]:
        """Fresh state for one leaf of ``shape`` (optax's ``init``); only float32 is supported."""
        if np.dtype(dtype) != np.float32:
            raise TypeError(f"dtype: optimizer slots are float32, got {np.dtype(dtype)}")
        dims = (shape,) if isinstance(shape, int) else tuple(shape)
        if not all(isinstance(d, int | np.integer) and d >= 0 for d in dims):
            raise ValueError(f"shape: expected non-negative integer dimensions, got {shape!r}")
        dims = tuple(int(d) for d in dims)
        return {slot: np.full(dims, self._slot_fill(slot), dtype=np.float32) for slot in self.slot_names}

    def apply(
        self, weights: F32Array, grads: npt.NDArray[Any], slots: Mapping[str, F32Array], step: int
    ) -> None:
        """Update ``weights`` and ``slots`` in place with ``grads`` (``step`` = updates applied before).

        Everything is checked before anything is written: on ``TypeError``/``ValueError`` the
        arrays are unchanged.
        """
        self._check(weights, grads, slots, step)
        count = min(int(step), INT32_MAX)
        with np.errstate(all="ignore"):  # IEEE semantics, as XLA: overflow gives inf, 0/0 NaN.
            self._update(weights, _upcast(grads), slots, count)

    def _check(self, weights: object, grads: object, slots: object, step: object) -> None:
        if not isinstance(weights, np.ndarray) or weights.dtype != np.float32:
            raise TypeError(f"weights: expected a float32 numpy array, got {_kind(weights)}")
        if not weights.flags.writeable:
            raise ValueError("weights: the array is read-only")
        if not isinstance(grads, np.ndarray):
            raise TypeError(f"grads: expected a numpy array, got {_kind(grads)}")
        if grads.dtype.name not in GRADIENT_DTYPES or (
            grads.dtype.kind == "V" and not _is_bfloat16(grads.dtype)
        ):
            raise TypeError(f"grads: expected dtype float32, float16 or bfloat16, got {grads.dtype}")
        if grads.shape != weights.shape:
            raise ValueError(f"grads: shape {grads.shape} does not match the weights' {weights.shape}")
        if not isinstance(slots, Mapping):
            raise TypeError(f"slots: expected a mapping of slot name to array, got {_kind(slots)}")
        if set(slots) != set(self.slot_names):
            raise ValueError(
                f"slots: expected exactly {list(self.slot_names)}, got {sorted(map(str, slots))}"
            )
        arrays: list[tuple[str, np.ndarray[Any, Any]]] = [("weights", weights)]
        for slot in self.slot_names:
            array = slots[slot]
            if not isinstance(array, np.ndarray) or array.dtype != np.float32:
                raise TypeError(f"slots[{slot!r}]: expected a float32 numpy array, got {_kind(array)}")
            if array.shape != weights.shape:
                raise ValueError(
                    f"slots[{slot!r}]: shape {array.shape} does not match the weights' {weights.shape}"
                )
            if not array.flags.writeable:
                raise ValueError(f"slots[{slot!r}]: the array is read-only")
            arrays.append((f"slots[{slot!r}]", array))
        for index, (label, array) in enumerate(arrays):
            if np.may_share_memory(array, grads):
                raise ValueError(f"grads: shares memory with {label}, which is written in place")
            for other_label, other in arrays[:index]:
                if np.may_share_memory(array, other):
                    raise ValueError(f"{label}: shares memory with {other_label}")
        if isinstance(step, bool) or not isinstance(step, int | np.integer) or step < 0:
            raise ValueError(f"step: expected a non-negative integer, got {step!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Optimizer):
            return NotImplemented
        return self.spec() == other.spec()

    def __hash__(self) -> int:
        return hash(json.dumps(self.spec(), sort_keys=True))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({json.dumps(self.spec(), sort_keys=True)})"


def _kind(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of dtype {value.dtype}"
    return type(value).__name__
