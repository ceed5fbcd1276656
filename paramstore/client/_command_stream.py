"""``CommandStream``: one long-lived ``Session`` call that carries a client's commands.

A unary call costs grpcio a call set-up on each side (about 0.5 ms of Python here); a
message on an open stream costs far less. So the client keeps one Session stream to the
node it believes leads and writes each command on it, with a request id that the answer
carries back. Answers may come in any order; each waiter gets its own.

A stream that breaks (the node died, the call's lifetime ran out) fails every waiter at
once with ``StreamBrokenError``; the caller retries the command (same client id and
sequence, so it is applied at most once) on a new stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import grpc

from proto import coordinator_pb2 as pb
from proto import coordinator_service_pb2 as api
from proto import coordinator_service_pb2_grpc as api_grpc

__all__ = ["CommandStream", "StreamBrokenError"]

log = logging.getLogger("paramstore.client.command_stream")

# A stream is replaced before its call's deadline would end it under a waiting command.
STREAM_LIFETIME_S = 3600.0
_STREAM_RENEW_AFTER_S = STREAM_LIFETIME_S - 600.0
# Commands waiting on one stream at once. A CoordinatorClient has one at a time; a waiter
# that gave up is forgotten at once, so this only guards against a caller bug.
_PENDING_MAX = 64


class StreamBrokenError(Exception):
    """The stream ended before the answer came: the command's outcome is unknown."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


class CommandStream:
    """A Session call on ``stub``'s channel. Create it inside a running event loop."""

    def __init__(self, stub: api_grpc.CoordinatorStub, address: str) -> None:
        self.address = address
        self.opened_monotonic = time.monotonic()
        self._call = stub.Session(timeout=STREAM_LIFETIME_S)
        self._pending: dict[int, asyncio.Future[api.SessionResponse]] = {}
        self._next_request_id = 0
        self._write_lock = asyncio.Lock()
        self._broken: StreamBrokenError | None = None
        self._reader = asyncio.create_task(self._read_answers())

    @property
    def usable(self) -> bool:
        """Not broken, and young enough to outlive the next command."""
        return self._broken is None and time.monotonic() - self.opened_monotonic < _STREAM_RENEW_AFTER_S

    async def request(self, command: pb.Command, timeout_s: float) -> api.SessionResponse:
        """Send ``command`` and wait (at most ``timeout_s``) for its answer.

        Raises TimeoutError when no answer came in time and StreamBrokenError when the
        stream ended first; in both cases the command may or may not have been applied.
        """
        if self._broken is not None:
            raise self._broken
        if len(self._pending) >= _PENDING_MAX:
            raise RuntimeError(f"more than {_PENDING_MAX} commands waiting on one stream")
        self._next_request_id += 1
        request_id = self._next_request_id
        answer: asyncio.Future[api.SessionResponse] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = answer
        request = api.SessionRequest(
            request_id=request_id, command=command, timeout_ms=max(1, int(timeout_s * 1000))
        )
        try:
            async with asyncio.timeout(timeout_s):
                async with self._write_lock:
                    try:
                        await self._call.write(request)
                    except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError) as exc:
                        self._break(_broken_by(exc))
                        assert self._broken is not None
                        raise self._broken from None
                return await answer
        finally:
            self._pending.pop(request_id, None)
            if answer.done():
                # Mark an exception set by _break as seen: it was raised here, or is moot.
                answer.cancelled() or answer.exception()
            else:
                answer.cancel()

    async def close(self) -> None:
        self._call.cancel()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        self._break(StreamBrokenError(grpc.StatusCode.CANCELLED, "stream closed by the client"))

    async def _read_answers(self) -> None:
        try:
            while True:
                response = await self._call.read()
                if response is grpc.aio.EOF:
                    self._break(StreamBrokenError(grpc.StatusCode.UNAVAILABLE, "the node ended the stream"))
                    return
                assert isinstance(response, api.SessionResponse)
                answer = self._pending.get(response.request_id)
                if answer is not None and not answer.done():
                    answer.set_result(response)
        except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError) as exc:
            self._break(_broken_by(exc))

    def _break(self, error: StreamBrokenError) -> None:
        if self._broken is None:
            self._broken = error
            log.debug("command stream to %s ended: %s", self.address, error)
        for answer in self._pending.values():
            if not answer.done():
                answer.set_exception(self._broken)


def _broken_by(exc: Exception) -> StreamBrokenError:
    if isinstance(exc, grpc.aio.AioRpcError):
        return StreamBrokenError(exc.code(), exc.details() or "stream failed")
    return StreamBrokenError(grpc.StatusCode.UNAVAILABLE, f"stream unusable: {exc}")
