"""The errors a training loop can act on, each naming what was wrong and what was expected.

They subclass the client library's ``ClientError`` (and ``ValueError`` where the caller's
input was wrong), so ``except paramstore.client.ClientError`` still catches everything.
"""

from __future__ import annotations

from paramstore.client import ClientError, ClusterUnavailableError, DeadlineExceededError

__all__ = [
    "ClusterUnreachableError",
    "DeadlineExceededError",
    "ModelSpecConflictError",
    "ShapeMismatchError",
    "WorkerClosedError",
    "WorkerError",
]


class WorkerError(ClientError):
    """Base of the worker client's own errors."""


class ModelSpecConflictError(WorkerError, ValueError):
    """The model is registered with another layout, optimizer or sync mode (or other initial
    values): join it with the same definition, or register under another name."""


class ShapeMismatchError(WorkerError, ValueError):
    """A pytree passed in does not have the registered model's structure, shapes or dtypes."""


class WorkerClosedError(WorkerError):
    """The worker was closed; make a new one."""


#: No node of the coordinator (or of a store group) answered within the call's deadline.
ClusterUnreachableError = ClusterUnavailableError
