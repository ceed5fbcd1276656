"""paramstore.demo: the digits dataset, its batching and sharding, the MLP, and reference training.

The reference training here is what parameter-server runs are compared with, so these tests pin
down the properties that comparison relies on: determinism from seeds, ``batch_at`` agreeing with
``batches``, and equal shards' mean gradient being the full batch's gradient.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")
jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")
pytest.importorskip("sklearn")

from paramstore.demo import (  # noqa: E402  (after the importorskips)
    DIGITS_MLP_SIZES,
    LARGE_MLP_SIZES,
    Dataset,
    accuracy,
    batch_at,
    batches,
    init_large_mlp,
    init_mlp,
    load_digits_dataset,
    loss_and_grad,
    mlp_logits,
    param_count,
    shard_batch,
    train_reference,
)

N_DIGITS = 1797


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return load_digits_dataset()


# ---- dataset --------------------------------------------------------------------------------


def test_dataset_shapes_and_ranges(dataset: Dataset) -> None:
    n_test = round(N_DIGITS * 0.2)
    assert dataset.x_train.shape == (N_DIGITS - n_test, 64)
    assert dataset.x_test.shape == (n_test, 64)
    assert dataset.y_train.shape == (N_DIGITS - n_test,)
    assert dataset.y_test.shape == (n_test,)
    assert dataset.x_train.dtype == dataset.x_test.dtype == np.float32
    assert dataset.y_train.dtype == dataset.y_test.dtype == np.int32
    for x in (dataset.x_train, dataset.x_test):
        assert x.min() >= 0.0 and x.max() <= 1.0
    assert dataset.x_train.max() == 1.0  # scaled by 16, not left in 0..16
    assert set(np.unique(dataset.y_train)) == set(range(10))
    assert set(np.unique(dataset.y_test)) == set(range(10))


def test_dataset_split_fraction() -> None:
    d = load_digits_dataset(test_fraction=0.5, seed=3)
    assert len(d.x_test) == round(N_DIGITS * 0.5)
    assert len(d.x_train) + len(d.x_test) == N_DIGITS


def test_dataset_deterministic_per_seed(dataset: Dataset) -> None:
    again = load_digits_dataset(seed=0)
    other = load_digits_dataset(seed=1)
    for name in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(dataset, name), getattr(again, name))
    assert not np.array_equal(dataset.x_train, other.x_train)
    assert not np.array_equal(dataset.y_test, other.y_test)


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"test_fraction": 0.0}, "test_fraction"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"test_fraction": -0.1}, "test_fraction"),
        ({"test_fraction": 1e-6}, "test_fraction"),
        ({"seed": -1}, "seed"),
    ],
)
def test_dataset_bad_arguments(kwargs: dict[str, Any], argument: str) -> None:
    with pytest.raises(ValueError, match=argument):
        load_digits_dataset(**kwargs)


# ---- batches --------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [64, 100])
def test_batches_agree_with_batch_at(dataset: Dataset, batch_size: int) -> None:
    per_epoch = len(dataset.x_train) // batch_size
    steps = 2 * per_epoch + 3  # into the third epoch
    seen = []
    for step, (x, y) in enumerate(itertools.islice(batches(dataset, batch_size, seed=7), steps)):
        assert x.shape == (batch_size, 64) and y.shape == (batch_size,)
        bx, by = batch_at(dataset, batch_size, seed=7, step=step)
        np.testing.assert_array_equal(x, bx)
        np.testing.assert_array_equal(y, by)
        seen.append(x)
    assert not np.array_equal(seen[0], seen[per_epoch])  # reshuffled for the next epoch


def test_batches_no_repeats_within_epoch(dataset: Dataset) -> None:
    batch_size = 64
    per_epoch = len(dataset.x_train) // batch_size
    # Identify examples by their training-set row: tag each row with its index in a copy.
    tagged = Dataset(
        x_train=np.arange(len(dataset.x_train), dtype=np.float32)[:, None].repeat(64, axis=1),
        y_train=dataset.y_train,
        x_test=dataset.x_test,
        y_test=dataset.y_test,
    )
    rows = np.concatenate([batch_at(tagged, batch_size, 0, s)[0][:, 0] for s in range(per_epoch)])
    assert len(np.unique(rows)) == per_epoch * batch_size
    next_epoch = batch_at(tagged, batch_size, 0, per_epoch)[0][:, 0]
    assert not np.array_equal(next_epoch, rows[:batch_size])


def test_batches_seed_changes_order(dataset: Dataset) -> None:
    a = batch_at(dataset, 64, seed=0, step=0)[1]
    b = batch_at(dataset, 64, seed=1, step=0)[1]
    assert not np.array_equal(a, b)


def test_batch_bad_arguments(dataset: Dataset) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        batch_at(dataset, 0, seed=0, step=0)
    with pytest.raises(ValueError, match="batch_size"):
        batches(dataset, len(dataset.x_train) + 1, seed=0)
    with pytest.raises(ValueError, match="step"):
        batch_at(dataset, 64, seed=0, step=-1)
    with pytest.raises(ValueError, match="seed"):
        batches(dataset, 64, seed=-1)


# ---- sharding -------------------------------------------------------------------------------


def test_shard_gradients_average_to_full_batch(dataset: Dataset) -> None:
    params = init_mlp(DIGITS_MLP_SIZES, seed=0)
    x, y = batch_at(dataset, 64, seed=0, step=5)
    full_loss, full_grads = loss_and_grad(params, x, y)
    parts = [loss_and_grad(params, *shard_batch(x, y, i, 4)) for i in range(4)]
    np.testing.assert_allclose(np.mean([float(v) for v, _ in parts]), float(full_loss), rtol=1e-5, atol=1e-6)
    mean_grads = jax.tree_util.tree_map(lambda *gs: np.mean(np.stack(gs), axis=0), *[g for _, g in parts])
    for (path, expected), (_, got) in zip(
        jax.tree_util.tree_leaves_with_path(full_grads),
        jax.tree_util.tree_leaves_with_path(mean_grads),
        strict=True,
    ):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6, err_msg=str(path))


def test_shard_batch_slices() -> None:
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    y = np.arange(6, dtype=np.int32)
    parts = [shard_batch(x, y, i, 3) for i in range(3)]
    np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), x)
    np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), y)
    assert all(len(p[1]) == 2 for p in parts)
    with pytest.raises(ValueError, match="multiple of num_workers"):
        shard_batch(x, y, 0, 4)
    with pytest.raises(ValueError, match="worker_index"):
        shard_batch(x, y, 3, 3)
    with pytest.raises(ValueError, match="num_workers"):
        shard_batch(x, y, 0, 0)


# ---- model ----------------------------------------------------------------------------------


def test_init_mlp_structure() -> None:
    params = init_mlp((64, 32, 16, 10), seed=0)
    assert list(params) == ["layer0", "layer1", "layer2"]
    assert params["layer1"]["w"].shape == (32, 16) and params["layer1"]["b"].shape == (16,)
    for layer in params.values():
        assert layer["w"].dtype == layer["b"].dtype == np.float32
        assert not np.any(np.asarray(layer["b"]))
    assert param_count(params) == 64 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10
    np.testing.assert_array_equal(params["layer0"]["w"], init_mlp((64, 32, 16, 10), seed=0)["layer0"]["w"])
    assert not np.array_equal(params["layer0"]["w"], init_mlp((64, 32, 16, 10), seed=1)["layer0"]["w"])
    assert mlp_logits(params, np.zeros((5, 64), np.float32)).shape == (5, 10)
    with pytest.raises(ValueError, match="sizes"):
        init_mlp((64,), seed=0)


def test_large_mlp_size() -> None:
    params = init_large_mlp(seed=0)
    assert param_count(params) >= 10_000_000
    assert param_count(params) == sum(a * b + b for a, b in itertools.pairwise(LARGE_MLP_SIZES))
    assert LARGE_MLP_SIZES[0] == 64 and LARGE_MLP_SIZES[-1] == 10


# ---- reference training ---------------------------------------------------------------------


def test_train_reference_reaches_95_percent(dataset: Dataset) -> None:
    # adam(1e-2), 300 steps of batch 64 (about 13 epochs), seed 0: about 0.98 test accuracy.
    params, losses = train_reference(dataset, optimizer=optax.adam(1e-2), steps=300, batch_size=64, seed=0)
    assert len(losses) == 300
    assert np.mean(losses[-20:]) < 0.2 * np.mean(losses[:20])
    assert accuracy(params, dataset.x_test, dataset.y_test) >= 0.95


def test_train_reference_deterministic(dataset: Dataset) -> None:
    start = init_mlp(DIGITS_MLP_SIZES, seed=4)
    a, la = train_reference(dataset, optimizer=optax.sgd(0.1), steps=5, batch_size=32, seed=4, params=start)
    b, lb = train_reference(dataset, optimizer=optax.sgd(0.1), steps=5, batch_size=32, seed=4)
    assert la == lb
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
