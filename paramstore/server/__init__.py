"""paramstore's processes: a Raft replica host (``Replica``) and the daemons built on it."""

from paramstore.server._coordinator_daemon import PEER_ADDRESS_PREFIX, CoordinatorDaemon, peer_address_key
from paramstore.server._coordinator_service import CoordinatorService, NotifyingStateMachine
from paramstore.server._replica import HEARTBEAT_TICKS_DEFAULT, Replica, ReplicaOptions
from paramstore.server._store_batcher import BatcherLimits
from paramstore.server._store_daemon import StoreDaemon
from paramstore.server._store_service import ERROR_CODE_METADATA, StoreService, StoreServiceLimits

__all__ = [
    "ERROR_CODE_METADATA",
    "HEARTBEAT_TICKS_DEFAULT",
    "PEER_ADDRESS_PREFIX",
    "BatcherLimits",
    "CoordinatorDaemon",
    "CoordinatorService",
    "NotifyingStateMachine",
    "Replica",
    "ReplicaOptions",
    "StoreDaemon",
    "StoreService",
    "StoreServiceLimits",
    "peer_address_key",
]
