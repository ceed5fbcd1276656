"""The store daemon: one replica of a store group (a ``ShardStateMachine`` under Raft) with
its parameter service, run until SIGTERM or SIGINT, then stopped gracefully.

With coordinator addresses, the leader follows the coordinator's worker leases into the
group's log (``_store_membership``), which BSP and SSP models need. Fencing requests by the
shard map's config number is still to come: the node serves whatever models are installed.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence

import grpc

from paramstore.server._replica import Replica, ReplicaOptions
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
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.request_stop)
        stop_wait = asyncio.create_task(self._stop.wait())
        failed = asyncio.create_task(self.replica.wait_failed())
        done, _ = await asyncio.wait({stop_wait, failed}, return_when=asyncio.FIRST_COMPLETED)
        status = 0
        if failed in done and failed.result() is not None:
            log.error("store node %d: the Raft driver failed: %s", self.options.node_id, failed.result())
            status = 1
        stop_wait.cancel()
        failed.cancel()
        await self.stop()
        return status

    async def stop(self) -> None:
        await self.membership.stop()
        await self.service.close()
        try:
            await self.replica.stop()
        except Exception as exc:  # the driver's own failure was already reported
            log.warning("store node %d: stop: %s", self.options.node_id, exc)
