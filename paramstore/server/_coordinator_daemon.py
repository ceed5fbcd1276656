"""The coordinator daemon: one coordinator replica with its client service, run until
SIGTERM or SIGINT, then stopped gracefully (driver loop ended, port closed, log synced).

Besides serving, the daemon does two small jobs while it leads:

* it proposes a ``Tick`` when nothing else was proposed for ``tick_command_interval_s``, so
  that the log clock (which expires client sessions and worker leases) moves on an idle
  cluster;
* every replica follows the group's peer addresses, kept in the replicated key/value store
  under ``PEER_ADDRESS_PREFIX`` (``cluster add-node`` writes the new node's address there
  before adding it), so a node added at run time is dialled by every member.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import grpc

from consensus.errors import RaftError
from paramstore.coordinator import CoordinatorStateMachine
from paramstore.server._coordinator_service import CoordinatorService, NotifyingStateMachine
from paramstore.server._replica import Replica, ReplicaOptions
from paramstore.server._serving import serve_until_stopped
from paramstore.server._shard_mover import ShardMover

__all__ = ["PEER_ADDRESS_PREFIX", "CoordinatorDaemon", "peer_address_key"]

log = logging.getLogger("paramstore.coordinator")

PEER_ADDRESS_PREFIX = "/paramstore/coordinators/"
_LEADERLESS_CHECK_S = 5.0


def peer_address_key(node_id: int) -> str:
    return f"{PEER_ADDRESS_PREFIX}{node_id}"


class CoordinatorDaemon:
    """One coordinator process's worth of parts. ``start``, then ``run_until_stopped``."""

    def __init__(
        self,
        options: ReplicaOptions,
        *,
        tick_command_interval_s: float = 0.5,
        leaderless_check_s: float = _LEADERLESS_CHECK_S,
    ) -> None:
        self.options = options
        self.tick_command_interval_s = tick_command_interval_s
        self.leaderless_check_s = leaderless_check_s
        self.machine = NotifyingStateMachine(CoordinatorStateMachine())
        self.replica = Replica(options, self.machine, services=[self._register])
        self.service = CoordinatorService(self.replica, self.machine)
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        # Carries out pending shard moves while this node leads (clients dial every member).
        self.mover = ShardMover(lambda: self.replica.is_leader, sorted(set(options.peers.values())))

    def _register(self, server: grpc.aio.Server) -> None:
        self.service.register(server)

    async def start(self) -> None:
        await self.replica.start()
        self._tasks = [
            asyncio.create_task(self._tick_while_leading(), name="coordinator-ticker"),
            asyncio.create_task(self._follow_peer_addresses(), name="coordinator-peers"),
            asyncio.create_task(self._warn_while_leaderless(), name="coordinator-leaderless"),
        ]
        self.mover.start()

    def request_stop(self) -> None:
        self._stop.set()

    async def run_until_stopped(self) -> int:
        """Serve until SIGTERM/SIGINT (or ``request_stop``); 0 after a graceful stop, 1 if
        the Raft driver failed (a storage fault, say)."""
        what = f"node {self.options.node_id}"
        return await serve_until_stopped(self._stop, self.replica, self.stop, log, what)

    async def stop(self) -> None:
        await self.mover.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        try:
            await self.replica.stop()
        except Exception as exc:  # the driver's own failure was already reported
            log.warning("node %d: stop: %s", self.options.node_id, exc)

    # ---- background jobs --------------------------------------------------------------------

    async def _tick_while_leading(self) -> None:
        interval = self.tick_command_interval_s
        while True:
            await asyncio.sleep(interval)
            idle_s = time.monotonic() - self.service.last_proposal_monotonic
            if not self.replica.is_leader or idle_s < interval:
                continue
            try:
                await self.service.propose_tick()
            except (RaftError, TimeoutError) as exc:
                log.debug("node %d: tick not applied: %s", self.options.node_id, exc)

    async def _warn_while_leaderless(self) -> None:
        """An operator's one line when this node sees no leader for a while, naming the
        peers it cannot reach (a wrong --peers list, a firewall, members not started)."""
        leaderless_since: float | None = None
        while True:
            await asyncio.sleep(self.leaderless_check_s)
            if self.replica.leader()[0] != 0:
                leaderless_since = None
                continue
            now = time.monotonic()
            if leaderless_since is None:
                leaderless_since = now
                continue
            transport = self.replica.transport
            unreachable = [
                f"{peer_id}={address}"
                for peer_id, address in sorted(transport.peers.items())
                if not transport.peer_counters(peer_id).get("connected", 0)
            ]
            log.warning(
                "node %d: no leader for %.0f s; peers not reachable: %s",
                self.options.node_id,
                now - leaderless_since,
                ", ".join(unreachable) or "none (a quorum may still be electing)",
            )

    async def _follow_peer_addresses(self) -> None:
        seen_revision = -1
        while True:
            machine = self.machine.machine
            if machine.revision != seen_revision:
                seen_revision = machine.revision
                addresses = {}
                for kv in machine.prefix(PEER_ADDRESS_PREFIX, 1000).kvs:
                    suffix = kv.key[len(PEER_ADDRESS_PREFIX) :]
                    if suffix.isdigit() and int(suffix) > 0:
                        addresses[int(suffix)] = kv.value.decode("utf-8", "replace")
                if addresses:
                    self.replica.set_peer_addresses(addresses)
            # Woken only by changes under the prefix, not by every put (bounded by 1 s).
            await self.machine.wait_changed(1.0, PEER_ADDRESS_PREFIX)
