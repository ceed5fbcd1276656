"""``CommandStream``: one long-lived ``Session`` call that carries commands, shared by all
the ``CoordinatorClient``s of an event loop (``CommandStreams``).

A unary call costs grpcio a call set-up on each side (about 0.5 ms of Python here); a
message on an open stream costs far less, and one message carrying several commands
costs little more than one carrying one. So a process keeps one Session stream to each
node it believes leads; every client writes its commands there, each with a request id
that the answer carries back. Commands that queue while the last write is in flight leave
together in the next message (the server batches its answers in the same way). Answers
may come in any order; each waiter gets its own.

A stream that breaks (the node died, the call's lifetime ran out) fails every waiter at
once with ``StreamBrokenError``; each caller retries its command (same client id and
sequence, so it is applied at most once) on a new stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Callable

import grpc

from proto import coordinator_pb2 as pb
from proto import coordinator_service_pb2 as api
from proto import coordinator_service_pb2_grpc as api_grpc

__all__ = ["CommandStream", "CommandStreams", "StreamBrokenError", "command_streams"]

log = logging.getLogger("paramstore.client.command_stream")

# A stream is replaced before its call's deadline would end it under a waiting command.
STREAM_LIFETIME_S = 3600.0
_STREAM_RENEW_AFTER_S = STREAM_LIFETIME_S - 600.0
# Commands waiting on one stream at once (one per client that is in a command); a command
# beyond that waits for a slot, within its timeout. The server takes as many in flight.
PENDING_MAX = 256
# One request message: at most this many commands, and no more command bytes than this
# unless it is a single command (a command is at most 4 MiB; a message at most 16 MiB).
REQUESTS_PER_MESSAGE_MAX = 64
_MESSAGE_COMMAND_BYTES_MAX = 4 << 20


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
        self._outbox: dict[int, api.SessionRequest] = {}  # not yet written, by request id
        self._outbox_ready = asyncio.Event()
        self._slots = asyncio.Semaphore(PENDING_MAX)
        self._next_request_id = 0
        self._broken: StreamBrokenError | None = None
        self._retired = False
        self._reader = asyncio.create_task(self._read_answers())
        self._writer = asyncio.create_task(self._write_requests())

    @property
    def usable(self) -> bool:
        """Not broken or retired, and young enough to outlive the next command."""
        return (
            self._broken is None
            and not self._retired
            and time.monotonic() - self.opened_monotonic < _STREAM_RENEW_AFTER_S
        )

    @property
    def idle(self) -> bool:
        """No command is waiting on it."""
        return not self._pending

    def retire(self) -> None:
        """Take no new commands; those waiting still get their answers."""
        self._retired = True

    async def request(self, command: pb.Command, timeout_s: float) -> api.SessionResponse:
        """Send ``command`` and wait (at most ``timeout_s``) for its answer.

        Raises TimeoutError when no answer came in time and StreamBrokenError when the
        stream ended first; in both cases the command may or may not have been applied.
        """
        async with asyncio.timeout(timeout_s):
            await self._slots.acquire()
            try:
                return await self._request(command, timeout_s)
            finally:
                self._slots.release()

    async def _request(self, command: pb.Command, timeout_s: float) -> api.SessionResponse:
        if self._broken is not None:
            raise self._broken
        self._next_request_id += 1
        request_id = self._next_request_id
        answer: asyncio.Future[api.SessionResponse] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = answer
        self._outbox[request_id] = api.SessionRequest(
            request_id=request_id, command=command, timeout_ms=max(1, int(timeout_s * 1000))
        )
        self._outbox_ready.set()
        try:
            return await answer
        finally:
            # A command given up before it was written is never sent.
            self._outbox.pop(request_id, None)
            self._pending.pop(request_id, None)
            if answer.done():
                # Mark an exception set by _break as seen: it was raised here, or is moot.
                answer.cancelled() or answer.exception()
            else:
                answer.cancel()

    async def close(self) -> None:
        self._call.cancel()
        for task in (self._reader, self._writer):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._break(StreamBrokenError(grpc.StatusCode.CANCELLED, "stream closed by the client"))

    async def _write_requests(self) -> None:
        try:
            while True:
                await self._outbox_ready.wait()
                self._outbox_ready.clear()
                while self._outbox:
                    await self._call.write(api.SessionRequests(requests=self._take_message()))
        except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError) as exc:
            self._break(_broken_by(exc))

    def _take_message(self) -> list[api.SessionRequest]:
        """The oldest queued requests that fit one message, removed from the outbox."""
        requests: list[api.SessionRequest] = []
        command_bytes = 0
        for request in self._outbox.values():
            size = request.command.ByteSize()
            if requests and (
                len(requests) == REQUESTS_PER_MESSAGE_MAX or command_bytes + size > _MESSAGE_COMMAND_BYTES_MAX
            ):
                break
            requests.append(request)
            command_bytes += size
        for request in requests:
            del self._outbox[request.request_id]
        return requests

    async def _read_answers(self) -> None:
        try:
            while True:
                message = await self._call.read()
                if message is grpc.aio.EOF:
                    self._break(StreamBrokenError(grpc.StatusCode.UNAVAILABLE, "the node ended the stream"))
                    return
                assert isinstance(message, api.SessionResponses)
                for response in message.responses:
                    answer = self._pending.get(response.request_id)
                    if answer is not None and not answer.done():
                        answer.set_result(response)
        except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError) as exc:
            self._break(_broken_by(exc))

    def _break(self, error: StreamBrokenError) -> None:
        if self._broken is None:
            self._broken = error
            log.debug("command stream to %s ended: %s", self.address, error)
        self._outbox.clear()
        for answer in self._pending.values():
            if not answer.done():
                answer.set_exception(self._broken)


class CommandStreams:
    """The command streams of one event loop: one usable stream per node address, and the
    channels they run on. Shared by the clients that joined; the last to leave closes all.
    A retired stream is closed once no command waits on it."""

    def __init__(self, open_channel: Callable[[str], grpc.aio.Channel]) -> None:
        self._open_channel = open_channel
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._streams: dict[str, CommandStream] = {}
        self._retired: list[CommandStream] = []
        self._users = 0

    def join(self) -> None:
        self._users += 1

    async def leave(self) -> None:
        self._users -= 1
        if self._users > 0:
            return
        streams = [*self._streams.values(), *self._retired]
        self._streams.clear()
        self._retired.clear()
        for stream in streams:
            await stream.close()
        channels = list(self._channels.values())
        self._channels.clear()
        for channel in channels:
            await channel.close()

    async def stream(self, address: str) -> CommandStream:
        """The usable stream to ``address``, opened if there is none."""
        await self._close_idle_retired()
        stream = self._streams.get(address)
        if stream is not None and stream.usable:
            return stream
        if stream is not None:
            await self.retire(stream)
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = self._open_channel(address)
        stream = self._streams[address] = CommandStream(api_grpc.CoordinatorStub(channel), address)
        return stream

    async def retire(self, stream: CommandStream) -> None:
        """``stream`` takes no new commands (it broke, or its node does not lead)."""
        stream.retire()
        if self._streams.get(stream.address) is stream:
            del self._streams[stream.address]
        if stream.idle:
            await stream.close()
        elif stream not in self._retired:
            self._retired.append(stream)

    async def _close_idle_retired(self) -> None:
        idle = [stream for stream in self._retired if stream.idle]
        self._retired = [stream for stream in self._retired if not stream.idle]
        for stream in idle:
            await stream.close()


_STREAMS_OF_LOOP: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, CommandStreams] = (
    weakref.WeakKeyDictionary()
)


def command_streams(open_channel: Callable[[str], grpc.aio.Channel]) -> CommandStreams:
    """The running event loop's ``CommandStreams`` (made with ``open_channel`` if it has
    none yet). Join it before use and leave it when done."""
    loop = asyncio.get_running_loop()
    streams = _STREAMS_OF_LOOP.get(loop)
    if streams is None:
        streams = _STREAMS_OF_LOOP[loop] = CommandStreams(open_channel)
    return streams


def _broken_by(exc: Exception) -> StreamBrokenError:
    if isinstance(exc, grpc.aio.AioRpcError):
        return StreamBrokenError(exc.code(), exc.details() or "stream failed")
    return StreamBrokenError(grpc.StatusCode.UNAVAILABLE, f"stream unusable: {exc}")
