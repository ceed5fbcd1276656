"""The store leader's membership follower: worker leases in the coordinator -> SetWorkers
entries in the store group's log.

Why through the log: a BSP barrier and SSP's staleness bound depend on who the workers are,
and every replica must agree on that at the same log position, or replicas would complete
steps at different entries. So the leader watches the coordinator's config and, when the
live workers of a model it holds differ from the workers its state machine has, proposes
``SetWorkers(model, config number, workers)``. The state machine ignores a config number
that is not newer than the last one it applied, so a deposed leader's late proposal cannot
undo a newer membership, and replaying the same config twice changes nothing.

A worker whose lease expires (its process died, say) disappears from the coordinator's
config once the lease's deadline passes on the log clock; the next poll here removes it from
every shard, so a barrier never waits for a dead worker longer than its lease plus one poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from paramstore.client import ClientError, CoordinatorClient
from paramstore.server._replica import Replica
from paramstore.shard import ShardStateMachine, encode_set_workers

__all__ = ["MembershipFollower"]

log = logging.getLogger("paramstore.store.membership")


class MembershipFollower:
    """Polls the coordinator every ``poll_s`` while this replica leads; proposes changes."""

    def __init__(
        self,
        replica: Replica,
        machine: ShardStateMachine,
        coordinators: Sequence[str],
        *,
        poll_s: float = 0.1,
        request_timeout_s: float = 2.0,
    ) -> None:
        if poll_s <= 0 or request_timeout_s <= 0:
            raise ValueError("poll_s and request_timeout_s must be > 0")
        self._replica = replica
        self._machine = machine
        self._coordinators = list(coordinators)
        self._poll_s = poll_s
        self._request_timeout_s = request_timeout_s
        self._task: asyncio.Task[None] | None = None
        self.proposed = 0  # SetWorkers entries proposed (for tests and status)

    def start(self) -> None:
        if self._coordinators and self._task is None:
            self._task = asyncio.create_task(self._run(), name="membership-follower")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        client = CoordinatorClient(
            self._coordinators, client_id="store-membership", deadline_s=self._request_timeout_s
        )
        try:
            while True:
                if self._replica.is_leader and self._machine.models():
                    try:
                        await self.sync_once(client)
                    except (ClientError, TimeoutError) as exc:
                        log.debug("membership poll failed: %s", exc)
                    except Exception as exc:  # not leader any more, dropped, stopped
                        log.debug("membership proposal failed: %s", exc)
                await asyncio.sleep(self._poll_s)
        finally:
            await client.close()

    async def sync_once(self, client: CoordinatorClient) -> int:
        """One poll: propose SetWorkers for each model whose workers changed; returns how many."""
        config = await client.config(serializable=False)
        number = int(config.config_number)
        live: dict[str, list[str]] = {}
        for worker in config.workers:
            live.setdefault(worker.model, []).append(worker.worker_id)
        proposed = 0
        for model in self._machine.models():
            sync = self._machine.sync_state(model)
            workers = sorted(live.get(model, []))
            if number <= sync.workers_config or workers == sorted(sync.clocks):
                continue
            data = encode_set_workers(model, number, workers)
            await self._replica.node.propose(data, self._request_timeout_s)
            proposed += 1
            self.proposed += 1
            log.info("model %r: workers %s (config %d)", model, workers, number)
        return proposed
