"""paramstore's worker client: what a JAX training loop embeds.

    import workers

    with workers.Worker("/tmp/ps", "mnist-mlp", params, optimizer=workers.adam(1e-3), sync="bsp") as w:
        for _ in range(steps):
            params = w.pull()                 # pytree of jax arrays
            loss, grads = loss_and_grad(params, x, y)
            w.push(grads)                     # applied once, through failovers

The optimizer constructors have optax's names and defaults; the optimizer runs on the store
groups (deterministically on every replica), so the worker only sends gradients.

A worker that pulls a big model can call ``workers.keep_freed_buffers_for_reuse()`` once at
start: glibc then keeps freed multi-MiB buffers for the next pull instead of faulting fresh
pages in every time (a 64 MiB pull ran ~3x faster with it; see the README's store figures).
It changes the malloc of the whole process, which is why it is a call and not a default.
"""

from paramstore.client import ClientError, PushFailedError, keep_freed_buffers_for_reuse
from paramstore.coordinator import SyncMode
from paramstore.optim import (
    Optimizer,
    adagrad,
    adam,
    adamw,
    constant_schedule,
    cosine_decay_schedule,
    exponential_decay,
    linear_schedule,
    momentum,
    piecewise_constant_schedule,
    polynomial_schedule,
    rmsprop,
    sgd,
    warmup_cosine_decay_schedule,
)
from workers._errors import (
    ClusterUnreachableError,
    DeadlineExceededError,
    ModelSpecConflictError,
    ShapeMismatchError,
    WorkerClosedError,
    WorkerError,
)
from workers._worker import Pending, PushAck, Worker, WorkerStats, resolve_coordinators

__all__ = [
    "ClientError",
    "ClusterUnreachableError",
    "DeadlineExceededError",
    "ModelSpecConflictError",
    "Optimizer",
    "Pending",
    "PushAck",
    "PushFailedError",
    "ShapeMismatchError",
    "SyncMode",
    "Worker",
    "WorkerClosedError",
    "WorkerError",
    "WorkerStats",
    "adagrad",
    "adam",
    "adamw",
    "constant_schedule",
    "cosine_decay_schedule",
    "exponential_decay",
    "keep_freed_buffers_for_reuse",
    "linear_schedule",
    "momentum",
    "piecewise_constant_schedule",
    "polynomial_schedule",
    "resolve_coordinators",
    "rmsprop",
    "sgd",
    "warmup_cosine_decay_schedule",
]
