"""paramstore's processes: a Raft replica host (``Replica``) and the daemons built on it."""

from paramstore.server._coordinator_daemon import PEER_ADDRESS_PREFIX, CoordinatorDaemon, peer_address_key
from paramstore.server._coordinator_service import CoordinatorService, NotifyingStateMachine
from paramstore.server._replica import Replica, ReplicaOptions

__all__ = [
    "PEER_ADDRESS_PREFIX",
    "CoordinatorDaemon",
    "CoordinatorService",
    "NotifyingStateMachine",
    "Replica",
    "ReplicaOptions",
    "peer_address_key",
]
