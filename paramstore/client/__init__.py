"""Clients of paramstore's services: the coordinator group's and the store groups'."""

from paramstore.client._coordinator_client import CoordinatorClient, NodeStatus, parse_addresses
from paramstore.client._errors import (
    ClientError,
    ClusterUnavailableError,
    CommandRejectedError,
    DeadlineExceededError,
    RequestInvalidError,
)
from paramstore.client._store_client import (
    GroupPushResult,
    ModelNotRoutedError,
    PushFailedError,
    StoreClient,
    StoreRefusedError,
)

__all__ = [
    "ClientError",
    "ClusterUnavailableError",
    "CommandRejectedError",
    "CoordinatorClient",
    "DeadlineExceededError",
    "GroupPushResult",
    "ModelNotRoutedError",
    "NodeStatus",
    "PushFailedError",
    "RequestInvalidError",
    "StoreClient",
    "StoreRefusedError",
    "parse_addresses",
]
