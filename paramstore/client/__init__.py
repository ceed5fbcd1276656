"""Clients of paramstore's services: the coordinator group's and the store groups'."""

from paramstore._malloc_tuning import keep_freed_buffers_for_reuse
from paramstore.client._coordinator_client import CoordinatorClient, NodeStatus, parse_addresses
from paramstore.client._errors import (
    ClientError,
    ClusterUnavailableError,
    CommandRejectedError,
    DeadlineExceededError,
    RequestInvalidError,
)
from paramstore.client._shard_moves import (
    MOVES_PREFIX,
    PlannedMove,
    ShardMove,
    move_key,
    pending_moves,
    plan_balance,
    plan_drain,
    record_moves,
)
from paramstore.client._store_client import (
    GroupPushResult,
    ModelNotRoutedError,
    PushFailedError,
    StoreClient,
    StoreRefusedError,
)

__all__ = [
    "MOVES_PREFIX",
    "ClientError",
    "ClusterUnavailableError",
    "CommandRejectedError",
    "CoordinatorClient",
    "DeadlineExceededError",
    "GroupPushResult",
    "ModelNotRoutedError",
    "NodeStatus",
    "PlannedMove",
    "PushFailedError",
    "RequestInvalidError",
    "ShardMove",
    "StoreClient",
    "StoreRefusedError",
    "keep_freed_buffers_for_reuse",
    "move_key",
    "parse_addresses",
    "pending_moves",
    "plan_balance",
    "plan_drain",
    "record_moves",
]
