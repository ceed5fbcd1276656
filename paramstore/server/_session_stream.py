"""Serving one ``Session`` call: commands come in batches, answers leave in batches.

All the ``CoordinatorClient``s of a process share one Session stream to the leader, so a
stream carries many commands at once. On these 2 cores a stream message costs grpcio
about 75 us on each side, more than a put's Raft work per command once batched. So both
ends put into one message whatever queued while their last write was in flight: the
answers of one Raft batch are applied together and mostly leave as one message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import grpc

from proto import coordinator_service_pb2 as api

__all__ = ["ANSWERS_PER_MESSAGE_MAX", "IN_FLIGHT_MAX", "REQUESTS_PER_MESSAGE_MAX", "serve_session"]

log = logging.getLogger("paramstore.coordinator.session")

# A request message with more commands ends the call (the client library sends at most 64).
REQUESTS_PER_MESSAGE_MAX = 256
# Commands of one stream received and not yet answered on the wire; the reader waits for a
# slot beyond that, which pushes back on the client through HTTP/2 flow control.
IN_FLIGHT_MAX = 256
# Answers are small (a CommandResult, or a refusal's status and text).
ANSWERS_PER_MESSAGE_MAX = 256

_GONE = (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError)

Answer = Callable[[api.SessionRequest], Awaitable[api.SessionResponse]]


async def serve_session(context: grpc.aio.ServicerContext, answer: Answer) -> None:
    """Read ``context``'s request messages until the client ends the stream, answering each
    command with ``answer`` as soon as it resolves. Returns once every answer is written or
    the client went away."""
    stream = _SessionStream(context, answer)
    await stream.run()


class _SessionStream:
    def __init__(self, context: grpc.aio.ServicerContext, answer: Answer) -> None:
        self._context = context
        self._answer = answer
        self._slots = asyncio.Semaphore(IN_FLIGHT_MAX)
        self._outbox: list[api.SessionResponse] = []
        self._outbox_ready = asyncio.Event()
        self._answering: set[asyncio.Task[None]] = set()
        self._gone = False
        self._finished = False  # read to the end, and every command answered

    async def run(self) -> None:
        writer = asyncio.create_task(self._write_answers())
        try:
            await self._read_requests()
            if self._answering:
                # Each is bounded by its request's timeout.
                await asyncio.wait(set(self._answering))
            self._finished = True
            self._outbox_ready.set()
            await writer
        finally:
            writer.cancel()
            for task in self._answering:
                task.cancel()

    async def _read_requests(self) -> None:
        while True:
            message = await self._context.read()
            if message is grpc.aio.EOF:
                return
            assert isinstance(message, api.SessionRequests)
            if len(message.requests) > REQUESTS_PER_MESSAGE_MAX:
                await self._context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"a SessionRequests message carries at most {REQUESTS_PER_MESSAGE_MAX} requests; "
                    f"got {len(message.requests)}",
                )
            for request in message.requests:
                await self._slots.acquire()
                task = asyncio.create_task(self._answer_one(request))
                self._answering.add(task)
                task.add_done_callback(self._answering.discard)

    async def _answer_one(self, request: api.SessionRequest) -> None:
        try:
            response = await self._answer(request)
        except BaseException:
            self._slots.release()
            raise
        if self._gone:
            self._slots.release()
            return
        self._outbox.append(response)
        self._outbox_ready.set()

    async def _write_answers(self) -> None:
        while True:
            await self._outbox_ready.wait()
            self._outbox_ready.clear()
            while self._outbox:
                batch = self._outbox[:ANSWERS_PER_MESSAGE_MAX]
                del self._outbox[: len(batch)]
                try:
                    await self._context.write(api.SessionResponses(responses=batch))
                except _GONE as exc:
                    # The client went away; its retries (same client id and sequence) are safe.
                    log.debug("%d session answers not delivered: %s", len(batch), exc)
                    self._gone = True
                finally:
                    for _ in batch:
                        self._slots.release()
                if self._gone:
                    self._release_outbox()
                    return
            if self._finished:
                return

    def _release_outbox(self) -> None:
        for _ in self._outbox:
            self._slots.release()
        self._outbox.clear()
