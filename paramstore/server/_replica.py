"""``Replica``: one member of a Raft group as a running thing - its port, its disk, its
driver loop - for any deterministic state machine (the coordinator's now, a store shard's
later).

Start-up order is chosen so that a bad start writes nothing: the port is bound first (a
port in use fails before the data directory is touched), then the data directory is opened
and recovered (another cluster's directory, a locked one or a corrupted log fail there),
and only then does the Raft node start ticking.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from consensus.config import RaftConfig
from consensus.messages import ConfState, Message, Role
from consensus.runtime import RaftNode, RuntimeConfig, StateMachine
from consensus.storage import FsyncPolicy, NodeStorage, StorageConfig
from consensus.transport import Transport, TransportConfig

__all__ = ["HEARTBEAT_TICKS_DEFAULT", "Replica", "ReplicaOptions"]

log = logging.getLogger("paramstore.replica")

MIB = 1024 * 1024
# Room around one entry's data: the entry and batch headers in a WAL record, the Raft
# message and batch framing on the wire.
_RECORD_OVERHEAD_BYTES = 64 * 1024
_MESSAGE_OVERHEAD_BYTES = 1 * MIB


#: Ticks between a leader's heartbeats (``RaftConfig.heartbeat_interval_ticks``). Appends
#: reset a follower's election timer too, so under load heartbeats only repeat what
#: appends said; idle, they were most of a cluster's CPU use.
HEARTBEAT_TICKS_DEFAULT = 3


@dataclass(frozen=True, slots=True)
class ReplicaOptions:
    """Everything that makes one replica: who it is, where it listens, who its peers are."""

    cluster_id: str
    node_id: int
    listen: str
    # Every member's Raft address by node id, this node's own included.
    peers: Mapping[int, str]
    data_dir: Path
    fsync: FsyncPolicy = FsyncPolicy.BATCH
    # A node joining a running group starts as a learner: the group's leader adds it with a
    # membership change and it catches up before it is promoted.
    join: bool = False
    tick_interval_ms: float = 25.0
    election_timeout_ticks: int = 10
    heartbeat_interval_ticks: int = HEARTBEAT_TICKS_DEFAULT
    # See RaftConfig.broadcast_commit. The coordinator turns it off (its followers serve
    # only serializable reads, so a later apply there costs nothing); store groups keep it,
    # so that a follower read waits for no heartbeat.
    broadcast_commit: bool = True
    snapshot_every_entries: int = 10_000
    snapshot_every_bytes: int = 256 * 1024 * 1024
    # See RuntimeConfig.proposal_batches_in_flight_max: the coordinator sets 1 (many small
    # writes), store groups keep 0 (few big ones, pipelined).
    proposal_batches_in_flight_max: int = 0
    # The largest log entry (one proposal). The WAL record and the transport message limits
    # are derived from it, so that every entry the leader accepts can be stored and sent.
    # Bigger is not better: handling one entry blocks a node's loop, heartbeats included;
    # measured here, 32 MiB entries made store groups re-elect over and over, 16 MiB did not.
    entry_bytes_max: int = 16 * MIB + 256 * 1024
    # Serve the transport's RaftAdmin service (fault rules, tick-rate skew) on the node's
    # port. Off unless asked for: anyone who reaches the port could cut the node off.
    # ``paramstore up`` (a local cluster to attack) turns it on.
    fault_injection: bool = False
    transport: TransportConfig | None = None
    # See StorageConfig.direct_writes: store groups turn it on (entries of MiBs of
    # gradients), the coordinator keeps buffered writes (small entries).
    direct_writes: bool = False

    def __post_init__(self) -> None:
        if self.node_id not in self.peers:
            raise ValueError(f"peers {dict(self.peers)} must include this node's own id {self.node_id}")

    def storage_config(self) -> StorageConfig:
        return StorageConfig(
            fsync=self.fsync,
            record_bytes_max=self.entry_bytes_max + _RECORD_OVERHEAD_BYTES,
            direct_writes=self.direct_writes,
        )

    def transport_config(self) -> TransportConfig:
        if self.transport is not None:
            return self.transport
        return TransportConfig(
            message_bytes_max=max(64 * MIB, self.entry_bytes_max + _MESSAGE_OVERHEAD_BYTES),
            admin_service=self.fault_injection,
        )

    def initial_conf(self) -> ConfState:
        others = tuple(sorted(node_id for node_id in self.peers if node_id != self.node_id))
        if self.join:
            return ConfState(voters=others, learners=(self.node_id,))
        return ConfState(voters=tuple(sorted(self.peers)))


class Replica:
    """Transport + storage + ``RaftNode`` of one group member; ``services`` are gRPC
    registrars served on the same port as the Raft stream."""

    def __init__(
        self,
        options: ReplicaOptions,
        state_machine: StateMachine,
        services: Sequence[Callable[[grpc.aio.Server], None]] = (),
    ) -> None:
        self.options = options
        self.state_machine = state_machine
        self._node: RaftNode | None = None
        self.transport = Transport(
            options.node_id,
            options.listen,
            peers={
                node_id: address for node_id, address in options.peers.items() if node_id != options.node_id
            },
            on_message=self._deliver,
            config=options.transport_config(),
            seed=options.node_id,
            services=services,
        )
        self._storage: NodeStorage | None = None
        self._addresses: dict[int, str] = dict(options.peers)

    # ---- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind, recover, run. On failure everything started so far is stopped again."""
        await self.transport.start()
        self._addresses[self.options.node_id] = self.transport.address
        try:
            storage = NodeStorage.open(
                self.options.data_dir,
                cluster_id=self.options.cluster_id,
                node_id=self.options.node_id,
                config=self.options.storage_config(),
            )
        except BaseException:
            await self.transport.close()
            raise
        self._storage = storage
        for note in storage.recovery_notes:
            log.warning("node %d: recovery: %s", self.options.node_id, note)
        raft_config = RaftConfig(
            node_id=self.options.node_id,
            initial_conf=self.options.initial_conf(),
            election_timeout_ticks=self.options.election_timeout_ticks,
            heartbeat_interval_ticks=self.options.heartbeat_interval_ticks,
            broadcast_commit=self.options.broadcast_commit,
        )
        runtime_config = RuntimeConfig(
            tick_interval_ms=self.options.tick_interval_ms,
            snapshot_every_entries=self.options.snapshot_every_entries,
            snapshot_every_bytes=self.options.snapshot_every_bytes,
            entry_bytes_max=self.options.entry_bytes_max,
            proposal_batches_in_flight_max=self.options.proposal_batches_in_flight_max,
        )
        self._node = RaftNode(
            raft_config,
            storage,
            self.transport.send,
            self.state_machine,
            runtime_config,
            random.Random(),
            tick_rate=self.transport.tick_rate,  # RaftAdmin.SetTickRate skews this node's ticks
        )
        self._node.start()

    async def stop(self) -> None:
        """Graceful stop: the driver loop ends, the port closes, the log is synced and closed."""
        if self._node is not None:
            await self._node.stop()
        await self.transport.close()
        if self._storage is not None:
            self._storage.close()
            self._storage = None

    async def wait_failed(self) -> BaseException | None:
        """Returns when the driver loop has ended: its exception, or None after ``stop``."""
        try:
            await self.node.wait_done()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            return exc
        return None

    # ---- what the services need -------------------------------------------------------------

    @property
    def node(self) -> RaftNode:
        if self._node is None:
            raise RuntimeError("replica is not started")
        return self._node

    @property
    def address(self) -> str:
        return self.transport.address

    @property
    def is_leader(self) -> bool:
        return self._node is not None and self._node.core.role == Role.LEADER

    def leader(self) -> tuple[int, str]:
        """(leader id, its address); (0, "") while no leader is known."""
        if self._node is None:
            return 0, ""
        leader_id = self._node.core.leader_id
        return leader_id, self._addresses.get(leader_id, "")

    def address_of(self, node_id: int) -> str:
        return self._addresses.get(node_id, "")

    def addresses(self) -> dict[int, str]:
        return dict(self._addresses)

    def set_peer_addresses(self, addresses: Mapping[int, str]) -> None:
        """Follow the group's membership: dial new or moved peers, forget removed ones.
        ``addresses`` is every member's address (this node's own is ignored)."""
        own = self.options.node_id
        for node_id, address in addresses.items():
            if node_id == own or self._addresses.get(node_id) == address:
                continue
            if node_id in self.transport.peers:
                self.transport.remove_peer(node_id)
            self.transport.add_peer(node_id, address)
            self._addresses[node_id] = address
            log.info("node %d: peer %d is at %s", own, node_id, address)

    def _deliver(self, msg: Message) -> None:
        if self._node is not None:
            self._node.deliver(msg)
