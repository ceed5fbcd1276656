"""The demo's model and data: an MLP on scikit-learn's bundled digits, in plain JAX and numpy.

paramstore's main demo trains a real model on real data, and this module is that model and
data. The digits dataset (1797 8x8 grey-scale images of the digits 0-9) ships inside
scikit-learn, so the demo and the tests need no download and no network; an MLP on it trains to
over 95% test accuracy in a few seconds on a CPU.

It is also the reference for fidelity tests: :func:`train_reference` trains with optax in one
process, step by step, exactly as a parameter-server worker would (same batches, same gradients,
same update rule), so a training run through the parameter server can be compared with it.
Everything is deterministic from integer seeds: :func:`batch_at` gives the global batch of any
step without iterating, so several workers can each compute it and take their
:func:`shard_batch` slice; because the loss is a mean, the mean of the slices' gradients is the
full batch's gradient.

Nothing here talks to the network or uses the rest of paramstore.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import count, pairwise
from typing import cast

import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt
import optax  # type: ignore[import-untyped]
from sklearn.datasets import load_digits  # type: ignore[import-untyped]

Params = dict[str, dict[str, jax.Array]]
"""An MLP's parameters: ``{"layer0": {"w": (in, out), "b": (out,)}, "layer1": ..., ...}``."""

Features = npt.NDArray[np.float32]
Labels = npt.NDArray[np.int32]

DIGITS_FEATURES = 64
DIGITS_CLASSES = 10

DIGITS_MLP_SIZES: tuple[int, ...] = (DIGITS_FEATURES, 128, DIGITS_CLASSES)
"""The demo model: 64 inputs, one hidden layer of 128, 10 classes (9,610 parameters)."""

LARGE_MLP_SIZES: tuple[int, ...] = (DIGITS_FEATURES, 3200, 3200, DIGITS_CLASSES)
"""The benchmark model: 10,483,210 float32 parameters (about 42 MB) on the same digits input."""


# ---- data -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dataset:
    """A train/test split: features float32 in [0, 1], shape (n, 64); labels int32 in 0..9."""

    x_train: Features
    y_train: Labels
    x_test: Features
    y_test: Labels


def load_digits_dataset(test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """Load the digits, scale the pixels (0..16) to [0, 1], and split them by a seeded shuffle.

    ``test_fraction`` of the 1797 examples (rounded) go to the test set; the same seed always
    gives the same split.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in the open interval (0, 1), got {test_fraction!r}")
    _check_seed(seed)
    digits = load_digits()
    x = (np.asarray(digits.data, dtype=np.float32) / np.float32(16.0)).astype(np.float32)
    y = np.asarray(digits.target, dtype=np.int32)
    n_test = round(len(x) * test_fraction)
    if not 0 < n_test < len(x):
        raise ValueError(f"test_fraction {test_fraction!r} leaves the train or test set empty")
    order = np.random.default_rng(seed).permutation(len(x))
    test, train = order[:n_test], order[n_test:]
    return Dataset(x_train=x[train], y_train=y[train], x_test=x[test], y_test=y[test])


def _steps_per_epoch(dataset: Dataset, batch_size: int) -> int:
    """Full batches per epoch (the remainder of the shuffled training set is dropped)."""
    n = len(dataset.x_train)
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must be in [1, {n}] (the training set's size), got {batch_size!r}")
    return n // batch_size


def _check_seed(seed: int) -> None:
    if seed < 0:  # numpy's SeedSequence takes only non-negative integers
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


def _epoch_order(dataset: Dataset, seed: int, epoch: int) -> npt.NDArray[np.int64]:
    """The training set's order in ``epoch``: a function of (seed, epoch) only, so any step's
    batch can be computed without replaying the epochs before it."""
    _check_seed(seed)
    return np.random.default_rng([seed, epoch]).permutation(len(dataset.x_train))


def _take(
    dataset: Dataset, order: npt.NDArray[np.int64], batch_size: int, index: int
) -> tuple[Features, Labels]:
    rows = order[index * batch_size : (index + 1) * batch_size]
    return dataset.x_train[rows], dataset.y_train[rows]


def batch_at(dataset: Dataset, batch_size: int, seed: int, step: int) -> tuple[Features, Labels]:
    """The minibatch that ``batches(dataset, batch_size, seed)`` yields at index ``step``."""
    if step < 0:
        raise ValueError(f"step must be a non-negative integer, got {step!r}")
    epoch, index = divmod(step, _steps_per_epoch(dataset, batch_size))
    return _take(dataset, _epoch_order(dataset, seed, epoch), batch_size, index)


def batches(dataset: Dataset, batch_size: int, seed: int) -> Iterator[tuple[Features, Labels]]:
    """Endless shuffled minibatches of the training set, each exactly ``batch_size`` examples,
    reshuffled every epoch; deterministic from ``seed`` and equal to :func:`batch_at` step by step.
    """
    per_epoch = _steps_per_epoch(dataset, batch_size)  # validate now, not at the first next()
    _check_seed(seed)
    return _batches(dataset, batch_size, seed, per_epoch)


def _batches(
    dataset: Dataset, batch_size: int, seed: int, per_epoch: int
) -> Iterator[tuple[Features, Labels]]:
    for epoch in count():
        order = _epoch_order(dataset, seed, epoch)
        for index in range(per_epoch):
            yield _take(dataset, order, batch_size, index)


def shard_batch(x: Features, y: Labels, worker_index: int, num_workers: int) -> tuple[Features, Labels]:
    """Worker ``worker_index``'s contiguous, equal slice of a global batch.

    The slices are equal so that the mean of the workers' (mean-loss) gradients is exactly the
    gradient of the whole batch.
    """
    if num_workers < 1:
        raise ValueError(f"num_workers must be >= 1, got {num_workers!r}")
    if not 0 <= worker_index < num_workers:
        raise ValueError(f"worker_index must be in [0, {num_workers}), got {worker_index!r}")
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    if len(x) % num_workers:
        raise ValueError(f"the batch size ({len(x)}) must be a multiple of num_workers ({num_workers})")
    part = len(x) // num_workers
    return x[worker_index * part : (worker_index + 1) * part], y[
        worker_index * part : (worker_index + 1) * part
    ]


# ---- model ----------------------------------------------------------------------------------


def init_mlp(sizes: Sequence[int], seed: int) -> Params:
    """An MLP with layer sizes ``sizes`` (inputs first, classes last), float32.

    Weights are He-normal (standard deviation ``sqrt(2 / fan_in)``, suited to the ReLU hidden
    layers), biases zero; each layer draws from its own split of ``jax.random.PRNGKey(seed)``.
    """
    sizes = tuple(sizes)
    if len(sizes) < 2 or any(n < 1 for n in sizes):
        raise ValueError(f"sizes must be at least two positive layer widths, got {sizes!r}")
    keys = jax.random.split(jax.random.PRNGKey(seed), len(sizes) - 1)
    params: Params = {}
    for i, (fan_in, fan_out) in enumerate(pairwise(sizes)):
        scale = float(np.sqrt(2.0 / fan_in))
        params[f"layer{i}"] = {
            "w": jax.random.normal(keys[i], (fan_in, fan_out), dtype=jnp.float32) * scale,
            "b": jnp.zeros((fan_out,), dtype=jnp.float32),
        }
    return params


def init_large_mlp(seed: int) -> Params:
    """The benchmark MLP (:data:`LARGE_MLP_SIZES`, 10,483,210 parameters): big enough that moving
    its parameters and gradients dominates a step, still trainable on the digits."""
    return init_mlp(LARGE_MLP_SIZES, seed)


def param_count(params: Params) -> int:
    """The number of scalars in ``params``."""
    return sum(int(leaf.size) for leaf in jax.tree_util.tree_leaves(params))


def mlp_logits(params: Params, x: jax.Array | Features) -> jax.Array:
    """Class logits: ReLU on every hidden layer, linear output."""
    n = len(params)
    h = jnp.asarray(x)
    for i in range(n):
        layer = params[f"layer{i}"]
        h = h @ layer["w"] + layer["b"]
        if i < n - 1:
            h = jax.nn.relu(h)
    return h


def loss(params: Params, x: jax.Array | Features, y: jax.Array | Labels) -> jax.Array:
    """Mean softmax cross-entropy; a mean, so equal slices' gradients average to the batch's."""
    logits = mlp_logits(params, x)
    return cast(jax.Array, optax.softmax_cross_entropy_with_integer_labels(logits, jnp.asarray(y)).mean())


_loss_and_grad = jax.jit(jax.value_and_grad(loss))


def loss_and_grad(params: Params, x: jax.Array | Features, y: jax.Array | Labels) -> tuple[jax.Array, Params]:
    """``(loss, gradients)`` for one batch: what a worker computes and pushes each step (jitted)."""
    value, grads = _loss_and_grad(params, x, y)
    return value, grads


@jax.jit
def _accuracy(params: Params, x: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.mean(jnp.argmax(mlp_logits(params, x), axis=-1) == y)


def accuracy(params: Params, x: jax.Array | Features, y: jax.Array | Labels) -> float:
    """The fraction of examples whose highest logit is the label."""
    return float(_accuracy(params, jnp.asarray(x), jnp.asarray(y)))


# ---- reference training ---------------------------------------------------------------------


def train_reference(
    dataset: Dataset,
    *,
    optimizer: optax.GradientTransformation,
    steps: int,
    batch_size: int,
    seed: int,
    params: Params | None = None,
) -> tuple[Params, list[float]]:
    """Train in this process with optax: the run the parameter server's training is compared with.

    A plain Python loop over the jitted :func:`loss_and_grad`, one :func:`batch_at` batch per
    step, so it does what a parameter-server worker does, in the same order. ``params`` defaults
    to ``init_mlp(DIGITS_MLP_SIZES, seed)``. Returns the final parameters and each step's loss
    (measured before that step's update).
    """
    if steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    if params is None:
        params = init_mlp(DIGITS_MLP_SIZES, seed)
    state = optimizer.init(params)
    losses: list[float] = []
    for step in range(steps):
        x, y = batch_at(dataset, batch_size, seed, step)
        value, grads = loss_and_grad(params, x, y)
        updates, state = optimizer.update(grads, state, params)
        params = cast(Params, optax.apply_updates(params, updates))
        losses.append(float(value))
    return params, losses
