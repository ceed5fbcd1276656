"""Pytrees <-> the parameter server's flat leaves: names, shapes and checks.

A leaf's name is its pytree path with dict keys, sequence indices and attribute names
joined by "/" (``{"layer0": {"w": ...}}`` -> ``"layer0/w"``): readable in ``paramstore
status`` and stable across processes, unlike ``id``-based or hash-based names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
import numpy.typing as npt

from paramstore.coordinator import LeafSpec
from workers._errors import ShapeMismatchError

__all__ = ["TreeLayout"]

_FLOAT_KINDS = "fc"


def _key_name(key: Any) -> str:
    for attribute in ("key", "idx", "name"):
        if hasattr(key, attribute):
            return str(getattr(key, attribute))
    return str(key)


def _path_name(path: tuple[Any, ...]) -> str:
    return "/".join(_key_name(key) for key in path) or "leaf"


@dataclass(frozen=True)
class TreeLayout:
    """The registered structure: tree definition, leaf names and shapes (in flatten order)."""

    treedef: Any
    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    @classmethod
    def of(cls, tree: Any) -> TreeLayout:
        flat, treedef = jax.tree_util.tree_flatten_with_path(tree)
        if not flat:
            raise ShapeMismatchError("the params pytree has no leaves; expected at least one array")
        names = tuple(_path_name(path) for path, _ in flat)
        if len(set(names)) != len(names):
            raise ShapeMismatchError(f"two leaves have the same path name in {sorted(names)[:8]}")
        for name in names:
            if "#" in name:
                raise ShapeMismatchError(
                    f"leaf path {name!r} contains '#', which names blocks of split leaves"
                )
        shapes = tuple(tuple(int(d) for d in np.shape(leaf)) for _, leaf in flat)
        return cls(treedef, names, shapes)

    def leaf_specs(self) -> list[LeafSpec]:
        return [LeafSpec(name, shape, "float32") for name, shape in zip(self.names, self.shapes, strict=True)]

    def flatten(self, tree: Any, what: str) -> dict[str, npt.NDArray[np.float32]]:
        """``tree``'s leaves as float32 numpy arrays by name; ``ShapeMismatchError`` when its
        structure or a shape differs from the registered params, or a leaf is not floating."""
        leaves, treedef = jax.tree_util.tree_flatten(tree)
        if treedef != self.treedef:
            raise ShapeMismatchError(
                f"{what} pytree has structure {treedef}; the model was registered with {self.treedef}"
            )
        out: dict[str, npt.NDArray[np.float32]] = {}
        for name, shape, leaf in zip(self.names, self.shapes, leaves, strict=True):
            array = np.asarray(leaf)
            if tuple(array.shape) != shape:
                raise ShapeMismatchError(f"{what} leaf {name!r} has shape {array.shape}; expected {shape}")
            if array.dtype.kind not in _FLOAT_KINDS:
                raise ShapeMismatchError(
                    f"{what} leaf {name!r} has dtype {array.dtype}; expected a floating dtype"
                )
            out[name] = np.ascontiguousarray(array, dtype=np.float32)
        return out

    def unflatten(self, leaves: dict[str, npt.NDArray[np.float32]]) -> Any:
        """A pytree of jax arrays shaped like the registered params."""
        arrays = [
            jax.numpy.asarray(leaves[name].reshape(shape))
            for name, shape in zip(self.names, self.shapes, strict=True)
        ]
        return jax.tree_util.tree_unflatten(self.treedef, arrays)
