"""The store daemon: one replica of a store group (a ``ShardStateMachine`` under Raft) with
its parameter service, run until SIGTERM or SIGINT, then stopped gracefully.

With coordinator addresses, the leader follows the coordinator's worker leases into the
group's log (``_store_membership``), which BSP and SSP models need. Fencing requests by the
shard map's config number is still to come: the node serves whatever models are installed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import grpc

from paramstore.server._replica import Replica, ReplicaOptions
from paramstore.server._serving import serve_until_stopped
from paramstore.server._store_membership import MembershipFollower
from paramstore.server._store_service import StoreService, StoreServiceLimits
from paramstore.shard import ShardLimits, ShardStateMachine

__all__ = ["StoreDaemon"]

log = logging.getLogger("paramstore.store")


class StoreDaemon:
    """One store process's worth of parts. ``start``, then ``run_until_stopped``."""

    def __init__(
        self,
        options: ReplicaOptions,
        *,
        group_id: int,
        coordinators: Sequence[str] = (),
        shard_limits: ShardLimits | None = None,
        service_limits: StoreServiceLimits | None = None,
    ) -> None:
        if group_id < 1:
            raise ValueError(f"group_id must be >= 1, got {group_id}")
        self.options = options
        self.group_id = group_id
        self.coordinators = list(coordinators)
        self.machine = ShardStateMachine(shard_limits)
        self.replica = Replica(options, self.machine, services=[self._register])
        self.service = StoreService(self.replica, self.machine, group_id=group_id, limits=service_limits)
        self.membership = MembershipFollower(self.replica, self.machine, self.coordinators)
        self._stop = asyncio.Event()

    def _register(self, server: grpc.aio.Server) -> None:
        self.service.register(server)

    async def start(self) -> None:
        await self.replica.start()
        self.membership.start()

    def request_stop(self) -> None:
        self._stop.set()

    async def run_until_stopped(self) -> int:
        """Serve until SIGTERM/SIGINT (or ``request_stop``); 0 after a graceful stop, 1 if
        the Raft driver failed (a storage fault, say)."""
        what = f"store node {self.options.node_id}"
        return await serve_until_stopped(self._stop, self.replica, self.stop, log, what)

    async def stop(self) -> None:
        await self.membership.stop()
        await self.service.close()
        try:
            await self.replica.stop()
        except Exception as exc:  # the driver's own failure was already reported
            log.warning("store node %d: stop: %s", self.options.node_id, exc)
