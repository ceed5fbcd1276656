"""A model's keys: which leaves are split into blocks, and which virtual shard each key is on.

A leaf with at most ``block_elements_max`` elements is one key, named by its path. A larger
leaf is split, in row-major (C) order of its flattened elements, into blocks of
``block_elements_max`` elements (the last one shorter), named ``"<path>#<block index>"``.
Blocks bound the size of one key's update (a Raft entry, a message, one optimizer call) and
spread one huge leaf over several shards.

A key's shard is ``blake2b(key) mod num_shards``: a stable hash (Python's ``hash`` is salted
per process), so every process of every version agrees on where a key lives.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from math import prod
from typing import Any

import numpy as np
import numpy.typing as npt

from paramstore.coordinator import ModelSpec

__all__ = [
    "BLOCK_ELEMENTS_MAX_DEFAULT",
    "KEYS_MAX_DEFAULT",
    "KeyPlacement",
    "ModelLayout",
    "block_key",
    "shard_of",
]

#: 1 Mi elements: 4 MiB of float32, one streaming chunk's order of size.
BLOCK_ELEMENTS_MAX_DEFAULT = 1 << 20
#: The most keys one layout lists (a store group's ``ShardLimits.keys_per_model_max``).
KEYS_MAX_DEFAULT = 1 << 20

_BLOCK_SEPARATOR = "#"


def shard_of(key: str, num_shards: int) -> int:
    """The virtual shard (``0 <= shard < num_shards``) of ``key``; the same in every process."""
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % num_shards


def block_key(path: str, block_index: int) -> str:
    """The key of block ``block_index`` of the split leaf ``path``."""
    return f"{path}{_BLOCK_SEPARATOR}{block_index}"


@dataclass(frozen=True, slots=True)
class KeyPlacement:
    """One key: the elements ``[start_element, stop_element)`` of the flattened leaf ``path``."""

    key: str
    path: str
    block_index: int  # 0 for a leaf kept whole
    start_element: int
    stop_element: int
    shard: int

    @property
    def elements(self) -> int:
        return self.stop_element - self.start_element


@dataclass(frozen=True, slots=True)
class _Leaf:
    path: str
    shape: tuple[int, ...]
    elements: int
    keys: tuple[KeyPlacement, ...]


@dataclass(frozen=True)
class ModelLayout:
    """Every key of a model in leaf order (then block order), with its shard and element range.

    Build with :meth:`from_spec`. ``split`` and ``join`` move between a leaf's array and its
    blocks with numpy views and slice copies, one per block.
    """

    model: str
    num_shards: int
    block_elements_max: int
    keys: tuple[KeyPlacement, ...]
    _leaves: Mapping[str, _Leaf] = field(repr=False)
    _by_key: Mapping[str, KeyPlacement] = field(repr=False)

    @classmethod
    def from_spec(
        cls,
        spec: ModelSpec,
        block_elements_max: int = BLOCK_ELEMENTS_MAX_DEFAULT,
        keys_max: int = KEYS_MAX_DEFAULT,
    ) -> ModelLayout:
        """The layout of ``spec``; ``ValueError`` if two keys would get the same name or
        there would be more than ``keys_max`` keys (checked before any key is built)."""
        if block_elements_max < 1:
            raise ValueError(f"block_elements_max must be >= 1, got {block_elements_max}")
        keys_total = sum(max(1, -(-prod(leaf.shape) // block_elements_max)) for leaf in spec.leaves)
        if keys_total > keys_max:
            raise ValueError(
                f"model {spec.name!r} would have {keys_total} keys, over {keys_max}: raise block_elements_max"
            )
        leaves: dict[str, _Leaf] = {}
        by_key: dict[str, KeyPlacement] = {}
        ordered: list[KeyPlacement] = []
        for leaf in spec.leaves:
            if leaf.path in leaves:
                raise ValueError(f"leaf path {leaf.path!r} is repeated")
            elements = prod(leaf.shape)
            placements = tuple(_placements(leaf.path, elements, block_elements_max, spec.num_shards))
            for placement in placements:
                if placement.key in by_key:
                    raise ValueError(
                        f"key {placement.key!r} of leaf {leaf.path!r} collides with a key of leaf "
                        f"{by_key[placement.key].path!r}"
                    )
                by_key[placement.key] = placement
            ordered.extend(placements)
            leaves[leaf.path] = _Leaf(leaf.path, tuple(leaf.shape), elements, placements)
        return cls(spec.name, spec.num_shards, block_elements_max, tuple(ordered), leaves, by_key)

    # ---- look-ups ---------------------------------------------------------------------------

    def placement(self, key: str) -> KeyPlacement:
        """The placement of ``key``; ``KeyError`` if the model has no such key."""
        return self._by_key[key]

    def keys_of_leaf(self, path: str) -> tuple[KeyPlacement, ...]:
        return self._leaf(path).keys

    def keys_of_shard(self, shard: int) -> tuple[KeyPlacement, ...]:
        """The keys on ``shard``, in layout order."""
        return tuple(p for p in self.keys if p.shard == shard)

    def leaf_shape(self, path: str) -> tuple[int, ...]:
        return self._leaf(path).shape

    def _leaf(self, path: str) -> _Leaf:
        try:
            return self._leaves[path]
        except KeyError:
            raise KeyError(f"model {self.model!r} has no leaf {path!r}") from None

    # ---- arrays -----------------------------------------------------------------------------

    def split(self, path: str, array: npt.NDArray[Any]) -> dict[str, npt.NDArray[Any]]:
        """The blocks of leaf ``path``'s ``array`` (any shape with the leaf's element count),
        by key: views of the flattened array (a C-contiguous array is not copied)."""
        leaf = self._leaf(path)
        if array.size != leaf.elements:
            raise ValueError(
                f"leaf {path!r} has {leaf.elements} elements ({leaf.shape}), the array {array.size} "
                f"({array.shape})"
            )
        flat = array.reshape(-1)
        return {p.key: flat[p.start_element : p.stop_element] for p in leaf.keys}

    def join(
        self,
        path: str,
        blocks: Mapping[str, npt.NDArray[Any]],
        out: npt.NDArray[Any] | None = None,
    ) -> npt.NDArray[Any]:
        """Leaf ``path`` in its shape from its blocks (every key of the leaf, nothing else).

        Writes into ``out`` when given (C-contiguous, the leaf's element count), else into a
        new array of the blocks' dtype.
        """
        leaf = self._leaf(path)
        expected = [p.key for p in leaf.keys]
        if set(blocks) != set(expected):
            missing = sorted(set(expected) - set(blocks))
            extra = sorted(set(blocks) - set(expected))
            raise ValueError(f"leaf {path!r}: blocks missing {missing[:5]}, unexpected {extra[:5]}")
        for p in leaf.keys:
            if blocks[p.key].size != p.elements:
                raise ValueError(f"block {p.key!r} has {blocks[p.key].size} elements, expected {p.elements}")
        if out is None:
            dtypes = {blocks[key].dtype for key in expected}
            if len(dtypes) > 1:
                raise ValueError(f"leaf {path!r}: blocks of several dtypes {sorted(map(str, dtypes))}")
            dtype = dtypes.pop() if dtypes else np.dtype(np.float32)
            out = np.empty(leaf.shape, dtype=dtype)
        elif out.size != leaf.elements or not out.flags.c_contiguous:
            raise ValueError(f"out must be C-contiguous with {leaf.elements} elements")
        flat = out.reshape(-1)
        for p in leaf.keys:
            flat[p.start_element : p.stop_element] = blocks[p.key].reshape(-1)
        return out.reshape(leaf.shape)


def _placements(path: str, elements: int, block_elements_max: int, num_shards: int) -> Iterable[KeyPlacement]:
    if elements <= block_elements_max:
        yield KeyPlacement(path, path, 0, 0, elements, shard_of(path, num_shards))
        return
    blocks = -(-elements // block_elements_max)
    for index in range(blocks):
        key = block_key(path, index)
        start = index * block_elements_max
        stop = min(start + block_elements_max, elements)
        yield KeyPlacement(key, path, index, start, stop, shard_of(key, num_shards))
