"""Aggregation before replication: the leader's push batcher.

Each model has a queue of checked pushes and at most ``entries_in_flight_max`` (2) Push
entries in flight. While they replicate, the pushes that arrive queue up; when one is
applied, the queued ones (bounded by count and bytes, at most one push per client, one BSP
step) are merged into the next entry: the summed gradient plus every covered (client,
sequence). Replication traffic is then one gradient per round trip instead of one per
worker, and with two entries in flight the leader writes and sends the next while the
followers still write the last (one would leave every disk and link idle half the time).

Each waiting push gets its own answer:

* the entry applied: every covered push gets the entry's result;
* every covered push was applied before (retries): each gets its own stored result;
* ``PARTIAL_DUPLICATE`` (a retry raced its original across a leader change): the applied
  ones get their stored results, the rest are proposed again without them, as
  ``paramstore.shard`` prescribes;
* any other refusal of a merged entry (the state changed between the check and the apply,
  or the sum overflowed to infinity): each push is proposed on its own, so that only the
  bad one is refused.

A push whose gradient is not finite (possible only under the "skip" policy: "reject" refuses
it before it is queued) is never merged: it would make the whole sum non-finite and every
covered push would be skipped with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from consensus.errors import ProposalTooLargeError
from paramstore.shard import (
    ClientSequence,
    ErrorCode,
    ShardResult,
    all_finite,
    decode_result,
    encode_push,
)

__all__ = ["BatcherLimits", "PendingPush", "PushBatcher", "QueueFullError"]

log = logging.getLogger("paramstore.store.batcher")

#: Proposes one encoded entry, returns the state machine's encoded result (raises what
#: ``RaftNode.propose`` raises).
Propose = Callable[[bytes], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class BatcherLimits:
    merge_pushes_max: int = 64  # pushes merged into one entry
    entries_in_flight_max: int = 2  # per model: proposed and not yet answered
    merge_bytes_max: int = 16 << 20  # their gradient bytes together: one log entry
    queued_pushes_max: int = 1024  # per model, waiting for their entry
    queued_bytes_max: int = 512 << 20  # every model together

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            if getattr(self, item.name) < 1:
                raise ValueError(f"{item.name} must be >= 1")


class QueueFullError(Exception):
    """Too many pushes are already waiting; the client should retry later."""


@dataclass(slots=True)
class PendingPush:
    """One client's checked push: flat gradients (read-only views over the received bytes)."""

    model: str
    cover: ClientSequence
    config_number: int
    gradients: dict[str, npt.NDArray[Any]]
    nbytes: int
    finite: bool
    step: int = 0  # BSP: the step it is for (only pushes for the same step are merged)
    # (result, pushes covered by the entry that answered it); or the propose exception.
    waiters: list[asyncio.Future[tuple[ShardResult, int]]] = field(default_factory=list)

    def answer(self, result: ShardResult, merged: int) -> None:
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_result((result, merged))

    def fail(self, exc: BaseException) -> None:
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_exception(exc)
                # The RPC may have given up already (its deadline); nobody else will look.
                waiter.exception()


def merge_gradients(pushes: list[PendingPush]) -> dict[str, npt.NDArray[Any]]:
    """The per-key sum over ``pushes``; a key only one push carries is passed as it is
    (its dtype kept), a key several carry is summed in float32."""
    carriers: dict[str, list[npt.NDArray[Any]]] = {}
    for push in pushes:
        for key, grads in push.gradients.items():
            carriers.setdefault(key, []).append(grads)
    merged: dict[str, npt.NDArray[Any]] = {}
    for key, arrays in carriers.items():
        if len(arrays) == 1:
            merged[key] = arrays[0]
            continue
        total = arrays[0].astype(np.float32, copy=True)
        for grads in arrays[1:]:
            np.add(total, grads.astype(np.float32, copy=False), out=total)
        merged[key] = total
    return merged


class PushBatcher:
    """Per-model queues and their drain tasks, on the leader."""

    def __init__(self, propose: Propose, limits: BatcherLimits | None = None) -> None:
        self._propose = propose
        self.limits = limits or BatcherLimits()
        self._queues: dict[str, deque[PendingPush]] = {}
        # Per model, the tasks that take batches off its queue and propose them, one entry
        # at a time each: at most ``entries_in_flight_max`` of them.
        self._drainers: dict[str, set[asyncio.Task[None]]] = {}
        self._queued_bytes = 0
        self.counters: dict[str, int] = {
            "push_entries": 0,  # Push entries proposed
            "merged_entries": 0,  # of those, the ones covering more than one push
            "merged_pushes": 0,  # pushes covered by merged entries
            "partial_duplicates": 0,
            "split_entries": 0,  # merged entries refused and proposed again push by push
        }

    def submit(self, push: PendingPush) -> asyncio.Future[tuple[ShardResult, int]]:
        """Queue a checked push; the future gets its answer. ``QueueFullError`` when full."""
        waiter: asyncio.Future[tuple[ShardResult, int]] = asyncio.get_running_loop().create_future()
        queue = self._queues.setdefault(push.model, deque())
        for queued in queue:  # a retry of a push still waiting joins it
            if queued.cover == push.cover:
                queued.waiters.append(waiter)
                return waiter
        if len(queue) >= self.limits.queued_pushes_max:
            raise QueueFullError(f"{len(queue)} pushes of model {push.model!r} are already waiting")
        if self._queued_bytes + push.nbytes > self.limits.queued_bytes_max:
            raise QueueFullError(f"{self._queued_bytes} gradient bytes are already waiting")
        push.waiters.append(waiter)
        queue.append(push)
        self._queued_bytes += push.nbytes
        drainers = self._drainers.setdefault(push.model, set())
        if len(drainers) < self.limits.entries_in_flight_max:
            # Each takes its batch (and proposes it) when it first runs, in the order they
            # were started: the log gets the batches in queue order.
            task = asyncio.create_task(
                self._drain(push.model, queue, drainers), name=f"push-batcher-{push.model}"
            )
            drainers.add(task)
            task.add_done_callback(drainers.discard)
        return waiter

    async def close(self) -> None:
        """Stop the drain tasks; waiting pushes are failed with ``exc`` by the caller's stop."""
        tasks = [task for drainers in self._drainers.values() for task in drainers]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for queue in self._queues.values():
            for push in queue:
                push.fail(asyncio.CancelledError())
        self._queues.clear()
        self._queued_bytes = 0

    # ---- draining -------------------------------------------------------------------------------

    async def _drain(self, model: str, queue: deque[PendingPush], drainers: set[asyncio.Task[None]]) -> None:
        try:
            while queue:
                batch = self._take_batch(queue)
                await self._propose_batch(batch)
        finally:
            # The last drainer of an empty queue forgets it (the next push starts afresh);
            # its own task is still in ``drainers`` here.
            if not queue and len(drainers) <= 1 and self._queues.get(model) is queue:
                del self._queues[model]
                del self._drainers[model]

    def _take_batch(self, queue: deque[PendingPush]) -> list[PendingPush]:
        batch = [queue.popleft()]
        nbytes = batch[0].nbytes
        clients = {batch[0].cover.client_id}
        if batch[0].finite:
            while queue and len(batch) < self.limits.merge_pushes_max:
                head = queue[0]
                if (
                    not head.finite
                    or head.cover.client_id in clients
                    or head.step != batch[0].step
                    or nbytes + head.nbytes > self.limits.merge_bytes_max
                ):
                    break
                batch.append(queue.popleft())
                nbytes += head.nbytes
                clients.add(head.cover.client_id)
        self._queued_bytes -= nbytes
        return batch

    async def _propose_batch(self, batch: list[PendingPush]) -> None:
        todo = batch
        while todo:
            gradients = merge_gradients(todo)
            if len(todo) > 1 and not all(all_finite(g) for g in gradients.values()):
                await self._split(todo, "the summed gradient overflowed")
                return
            data = encode_push(
                todo[0].model,
                [p.cover for p in todo],
                gradients,
                config_number=min(p.config_number for p in todo),
                step=todo[0].step,
                now_ms=int(time.time() * 1000),  # log time: the dedup table ages by it
            )
            self.counters["push_entries"] += 1
            if len(todo) > 1:
                self.counters["merged_entries"] += 1
                self.counters["merged_pushes"] += len(todo)
            try:
                raw = await self._propose(data)
            except asyncio.CancelledError:
                for push in todo:
                    push.fail(asyncio.CancelledError())
                raise
            except ProposalTooLargeError as exc:
                if len(todo) > 1:
                    await self._split(todo, str(exc))
                else:
                    todo[0].fail(exc)
                return
            except Exception as exc:  # not leader, dropped, timed out, stopped: for every push
                for push in todo:
                    push.fail(exc)
                return
            assert isinstance(raw, bytes)
            result = decode_result(raw)
            if result.ok and not result.duplicate:
                for push in todo:
                    push.answer(result, len(todo))
                return
            if result.ok or result.code == ErrorCode.PARTIAL_DUPLICATE:
                todo = self._answer_replays(todo, result)
                if todo:
                    self.counters["partial_duplicates"] += 1
                continue
            if len(todo) == 1:
                todo[0].answer(result, 1)
                return
            await self._split(todo, result.message)
            return

    def _answer_replays(self, todo: list[PendingPush], result: ShardResult) -> list[PendingPush]:
        """Answer the pushes ``result`` says were applied before; the others remain."""
        stored = {replay.push: replay.result for replay in result.replays}
        rest = []
        for push in todo:
            replay = stored.get(push.cover)
            if replay is None:
                rest.append(push)
            else:
                push.answer(dataclasses.replace(decode_result(replay), duplicate=True), 1)
        if len(rest) == len(todo):  # nothing answered: never loop on the same entry
            for push in rest:
                push.answer(result, len(todo))
            return []
        return rest

    async def _split(self, todo: list[PendingPush], why: str) -> None:
        log.info("merged entry of %d pushes refused (%s): proposing them one by one", len(todo), why)
        self.counters["split_entries"] += 1
        for push in todo:
            await self._propose_batch([push])
