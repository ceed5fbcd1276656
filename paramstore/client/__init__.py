"""Clients of paramstore's services (the coordinator group's now)."""

from paramstore.client._coordinator_client import CoordinatorClient, NodeStatus, parse_addresses
from paramstore.client._errors import (
    ClientError,
    ClusterUnavailableError,
    CommandRejectedError,
    DeadlineExceededError,
    RequestInvalidError,
)

__all__ = [
    "ClientError",
    "ClusterUnavailableError",
    "CommandRejectedError",
    "CoordinatorClient",
    "DeadlineExceededError",
    "NodeStatus",
    "RequestInvalidError",
    "parse_addresses",
]
