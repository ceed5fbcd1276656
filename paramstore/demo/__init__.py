"""paramstore's demo: a real model (an MLP) on real data (scikit-learn's bundled digits).

See :mod:`paramstore.demo._digits`. Needs jax, optax and scikit-learn.
"""

from paramstore.demo._digits import (
    DIGITS_CLASSES,
    DIGITS_FEATURES,
    DIGITS_MLP_SIZES,
    LARGE_MLP_SIZES,
    Dataset,
    Params,
    accuracy,
    batch_at,
    batches,
    init_large_mlp,
    init_mlp,
    load_digits_dataset,
    loss,
    loss_and_grad,
    mlp_logits,
    param_count,
    shard_batch,
    train_reference,
)

__all__ = [
    "DIGITS_CLASSES",
    "DIGITS_FEATURES",
    "DIGITS_MLP_SIZES",
    "LARGE_MLP_SIZES",
    "Dataset",
    "Params",
    "accuracy",
    "batch_at",
    "batches",
    "init_large_mlp",
    "init_mlp",
    "load_digits_dataset",
    "loss",
    "loss_and_grad",
    "mlp_logits",
    "param_count",
    "shard_batch",
    "train_reference",
]
