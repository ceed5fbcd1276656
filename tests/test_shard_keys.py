"""Keys, blocks and shards of a model (paramstore.shard._keys)."""

from __future__ import annotations

import hashlib
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paramstore.coordinator import LeafSpec, ModelSpec
from paramstore.shard import ModelLayout, block_key, shard_of


def _spec(*leaves: tuple[str, tuple[int, ...]], num_shards: int = 8) -> ModelSpec:
    return ModelSpec.create("m", [LeafSpec(path, shape, "float32") for path, shape in leaves], num_shards)


def test_shard_of_is_blake2b_mod_num_shards_and_stable() -> None:
    # Pinned value: a change here moves every key of every deployed model.
    digest = hashlib.blake2b(b"params/dense/kernel", digest_size=8).digest()
    assert shard_of("params/dense/kernel", 1000) == int.from_bytes(digest, "little") % 1000
    assert shard_of("params/dense/kernel", 1) == 0
    with pytest.raises(ValueError):
        shard_of("k", 0)


def test_shards_spread_keys() -> None:
    counts = np.bincount([shard_of(f"key{i}", 16) for i in range(4000)], minlength=16)
    assert counts.min() > 150  # about 250 each


def test_small_leaves_keep_their_path_and_large_ones_are_blocked() -> None:
    layout = ModelLayout.from_spec(
        _spec(("bias", (3,)), ("kernel", (5, 4)), ("scalar", ())), block_elements_max=8
    )
    assert [p.key for p in layout.keys] == ["bias", "kernel#0", "kernel#1", "kernel#2", "scalar"]
    ranges = [(p.start_element, p.stop_element) for p in layout.keys_of_leaf("kernel")]
    assert ranges == [(0, 8), (8, 16), (16, 20)]
    assert layout.placement("kernel#2").elements == 4
    assert layout.placement("scalar").elements == 1
    for p in layout.keys:
        assert p.shard == shard_of(p.key, 8)
        assert p in layout.keys_of_shard(p.shard)
    assert block_key("kernel", 2) == "kernel#2"
    assert sum(len(layout.keys_of_shard(s)) for s in range(8)) == len(layout.keys)


def test_leaf_that_exactly_fits_is_not_blocked() -> None:
    layout = ModelLayout.from_spec(_spec(("w", (4, 2))), block_elements_max=8)
    assert [p.key for p in layout.keys] == ["w"]


def test_colliding_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="collides"):
        ModelLayout.from_spec(_spec(("w", (10,)), ("w#0", (1,))), block_elements_max=4)
    with pytest.raises(ValueError):
        ModelLayout.from_spec(_spec(("w", (1,))), block_elements_max=0)
    with pytest.raises(ValueError, match="keys"):
        ModelLayout.from_spec(_spec(("w", (1 << 30,))), block_elements_max=1, keys_max=1000)


def test_split_gives_views_and_join_restores() -> None:
    layout = ModelLayout.from_spec(_spec(("kernel", (5, 4))), block_elements_max=8)
    array = np.arange(20, dtype=np.float32).reshape(5, 4)
    blocks = layout.split("kernel", array)
    assert all(np.shares_memory(block, array) for block in blocks.values())
    np.testing.assert_array_equal(blocks["kernel#1"], np.arange(8, 16, dtype=np.float32))
    joined = layout.join("kernel", blocks)
    assert joined.shape == (5, 4) and joined.dtype == np.float32
    np.testing.assert_array_equal(joined, array)
    out = np.zeros(20, dtype=np.float32)
    layout.join("kernel", blocks, out=out)
    np.testing.assert_array_equal(out, array.reshape(-1))


def test_split_and_join_check_their_input() -> None:
    layout = ModelLayout.from_spec(_spec(("kernel", (5, 4))), block_elements_max=8)
    with pytest.raises(ValueError):
        layout.split("kernel", np.zeros(19, np.float32))
    with pytest.raises(KeyError):
        layout.split("nope", np.zeros(1, np.float32))
    blocks = layout.split("kernel", np.zeros(20, np.float32))
    del blocks["kernel#2"]
    with pytest.raises(ValueError, match="missing"):
        layout.join("kernel", blocks)
    blocks["kernel#2"] = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="elements"):
        layout.join("kernel", blocks)


@settings(max_examples=50, deadline=None)
@given(
    shape=st.lists(st.integers(0, 6), min_size=0, max_size=3),
    block=st.integers(1, 50),
)
def test_blocks_tile_every_leaf_exactly(shape: list[int], block: int) -> None:
    layout = ModelLayout.from_spec(_spec(("x", tuple(shape))), block_elements_max=block)
    size = int(np.prod(shape))
    placements = layout.keys_of_leaf("x")
    assert placements[0].start_element == 0 and placements[-1].stop_element == size
    for before, after in itertools.pairwise(placements):
        assert before.stop_element == after.start_element
    assert all(0 < p.elements <= block for p in placements) or size == 0
    array = np.arange(size, dtype=np.float32).reshape(shape)
    np.testing.assert_array_equal(layout.join("x", layout.split("x", array)), array)
