"""The shard mover: runs on the coordinator leader and carries every pending shard move out.

Moves are recorded in the coordinator (``paramstore.client._shard_moves``); this task polls
them while its node leads and drives each one through its steps:

1. ``ReleaseShard`` at the giving group: it stops serving the shard (WRONG_GROUP from then
   on) and freezes its state;
2. ``FetchShard`` from the giving group and ``AcceptShard`` at the receiving group, which
   installs the state through its own log and serves the shard;
3. ``AssignShards`` in the coordinator: clients route the shard to its new group;
4. ``DropShard`` at the giving group, then the move's record is deleted.

Every step is idempotent per move id, and which step is next is read from the state each
time (the coordinator's map; the groups answer repeats as no-ops), so a mover that crashes
or loses leadership anywhere is simply followed by the next leader's mover doing the rest.
Two movers overlapping for a moment (an old leader that has not noticed yet) are harmless
for the same reason. Until step 3 the shard is served by neither group for a moment: pushes
and pulls that reach it wait (WRONG_GROUP, then the client retries where the map says).

A move that cannot proceed now stays pending and is retried on the next poll (a group
without a leader, say). A move whose record no longer
matches the map (someone reassigned the shard by hand) is abandoned with a warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TypeVar

import grpc

from paramstore.client import (
    ClientError,
    CoordinatorClient,
    ShardMove,
    StoreClient,
    StoreRefusedError,
    pending_moves,
)
from paramstore.coordinator import AssignShards
from paramstore.shard import ErrorCode
from proto import shard_pb2 as shard_pb
from proto import store_service_pb2 as api
from proto import store_service_pb2_grpc as api_grpc

__all__ = ["ShardMover"]

log = logging.getLogger("paramstore.coordinator.mover")

_T = TypeVar("_T")


class ShardMover:
    """Polls the pending moves every ``poll_s`` while ``is_leader()``; drives them."""

    def __init__(
        self,
        is_leader: Callable[[], bool],
        coordinators: Sequence[str],
        *,
        poll_s: float = 0.2,
        request_timeout_s: float = 10.0,
        moves_per_poll_max: int = 64,
    ) -> None:
        if poll_s <= 0 or request_timeout_s <= 0 or moves_per_poll_max < 1:
            raise ValueError("poll_s and request_timeout_s must be > 0, moves_per_poll_max >= 1")
        self._is_leader = is_leader
        self._coordinators = list(coordinators)
        self._poll_s = poll_s
        self._request_timeout_s = request_timeout_s
        self._moves_per_poll_max = moves_per_poll_max
        self._task: asyncio.Task[None] | None = None
        self.finished = 0  # moves this mover carried to the end (for tests and logs)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="shard-mover")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        # A fresh client id per run: the coordinator deduplicates by (client id, sequence), so
        # two movers (leaders one after the other) sharing an id would take each other's
        # commands for retries.
        incarnation = uuid.uuid4().hex[:16]
        coordinator = CoordinatorClient(
            self._coordinators, client_id=f"shard-mover-{incarnation}", deadline_s=self._request_timeout_s
        )
        stores = StoreClient(
            self._coordinators,
            client_id=f"shard-mover-{incarnation}-stores",
            deadline_s=self._request_timeout_s,
        )
        try:
            while True:
                if self._is_leader():
                    try:
                        await self.run_once(coordinator, stores)
                    except (ClientError, grpc.aio.AioRpcError, TimeoutError) as exc:
                        log.info("shard moves: %s (retrying)", exc)
                await asyncio.sleep(self._poll_s)
        finally:
            await stores.close()
            await coordinator.close()

    async def run_once(self, coordinator: CoordinatorClient, stores: StoreClient) -> int:
        """One pass over the pending moves; returns how many finished."""
        moves = await pending_moves(coordinator, limit=self._moves_per_poll_max)
        finished = 0
        for move in moves:
            if not self._is_leader():
                break
            if await self._drive(move, coordinator, stores):
                finished += 1
        self.finished += finished
        return finished

    async def _drive(self, move: ShardMove, coordinator: CoordinatorClient, stores: StoreClient) -> bool:
        config = await coordinator.config()
        model = next((m for m in config.models if m.spec.name == move.model), None)
        members = {g.group_id: tuple(m.address for m in g.members) for g in config.groups}
        if model is None or move.shard >= len(model.shard_groups):
            log.warning("move %d: no shard %d of model %r: abandoned", move.move_id, move.shard, move.model)
            await coordinator.delete(move.key)
            return False
        owner = int(model.shard_groups[move.shard])
        if owner not in (move.source, move.target):
            log.warning(
                "move %d of %r shard %d: the shard is on group %d now, not %d or %d: abandoned",
                move.move_id, move.model, move.shard, owner, move.source, move.target,
            )  # fmt: skip
            await coordinator.delete(move.key)
            return False
        if owner == move.source:
            if move.source not in members:
                log.warning("move %d: group %d is not listed; waiting", move.move_id, move.source)
                return False
            if move.target not in members:  # unlisted meanwhile: the shard stays where it was
                await self._give_back(move, members, stores)
                await coordinator.delete(move.key)
                log.warning("move %d: group %d is not listed: move called off", move.move_id, move.target)
                return False
            if not await self._hand_over(move, members, stores):
                return False
            result = await coordinator.execute(AssignShards(move.model, ((move.shard, move.target),)))
            if not result.ok:
                log.warning("move %d: AssignShards refused: %s", move.move_id, result.message)
                return False
        if move.source in members:
            drop = shard_pb.DropShard(model=move.model, shard=move.shard, move_id=move.move_id)
            await self._call(stores, move.source, members, lambda stub, t: stub.DropShard(drop, timeout=t))
        await coordinator.delete(move.key)
        log.info("move %d: %r shard %d now on group %d", move.move_id, move.model, move.shard, move.target)
        return True

    async def _hand_over(
        self, move: ShardMove, members: dict[int, tuple[str, ...]], stores: StoreClient
    ) -> bool:
        """Steps 1 and 2; False when the move must wait (retried on a later poll)."""
        release = shard_pb.ReleaseShard(model=move.model, shard=move.shard, move_id=move.move_id)
        # A group that holds nothing of the model fences the shard instead (see
        # paramstore/shard/_fences.py): its keys can no longer be installed there.
        await self._call(stores, move.source, members, lambda stub, t: stub.ReleaseShard(release, timeout=t))
        try:
            parts = await self._call(stores, move.source, members, self._fetcher(move))
        except StoreRefusedError as exc:
            if exc.code == ErrorCode.WRONG_GROUP:  # dropped: a mover before us finished the hand-over
                return True
            if exc.code == ErrorCode.UNKNOWN_MODEL:  # fenced: the group held nothing to hand over
                return True
            raise
        await self._call(stores, move.target, members, _acceptor(parts))
        return True

    async def _give_back(
        self, move: ShardMove, members: dict[int, tuple[str, ...]], stores: StoreClient
    ) -> None:
        """Call a move off: if the giving group released the shard, it accepts its own frozen
        state back (the same AcceptShard steps, at the giving group)."""
        try:
            parts = await self._call(stores, move.source, members, self._fetcher(move))
        except StoreRefusedError as exc:
            if exc.code == ErrorCode.WRONG_GROUP:
                return  # never released: nothing to give back
            if exc.code != ErrorCode.UNKNOWN_MODEL:
                raise
            # The group holds nothing of the model: take back the fence, if the release left one.
            lift = shard_pb.AcceptShard(model=move.model, shard=move.shard, move_id=move.move_id, last=True)
            parts = [lift]
        await self._call(stores, move.source, members, _acceptor(parts))

    def _fetcher(
        self, move: ShardMove
    ) -> Callable[[api_grpc.StoreStub, float], Awaitable[list[shard_pb.AcceptShard]]]:
        fetch = api.FetchShardRequest(model=move.model, shard=move.shard, move_id=move.move_id)

        async def fetch_parts(stub: api_grpc.StoreStub, timeout_s: float) -> list[shard_pb.AcceptShard]:
            return [part async for part in stub.FetchShard(fetch, timeout=timeout_s)]

        return fetch_parts

    async def _call(
        self,
        stores: StoreClient,
        group: int,
        members: dict[int, tuple[str, ...]],
        call: Callable[[api_grpc.StoreStub, float], Awaitable[_T]],
    ) -> _T:
        return await stores.call_group(group, members[group], call)


def _acceptor(
    parts: list[shard_pb.AcceptShard],
) -> Callable[[api_grpc.StoreStub, float], Awaitable[api.MoveResponse]]:
    async def accept(stub: api_grpc.StoreStub, timeout_s: float) -> api.MoveResponse:
        response: api.MoveResponse = await stub.AcceptShard(_stream(parts), timeout=timeout_s)
        return response

    return accept


async def _stream(parts: list[shard_pb.AcceptShard]) -> AsyncIterator[shard_pb.AcceptShard]:
    for part in parts:
        yield part
