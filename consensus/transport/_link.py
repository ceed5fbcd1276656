"""The sending half of one link: a bounded queue and the task that streams it to the peer.

One task per peer keeps one client-streaming RPC open and writes a ``RaftBatch`` whenever
messages are queued and the previous write is done, so whatever queued up during a write
leaves in the next batch. When the peer cannot be reached, or the stream breaks, the task
drops the stream and reconnects after a jittered exponential back-off; queued messages
wait (within the queue's bounds) and leave once a stream is up again.

Deadlines cost one timer per link, not one per write: a watchdog fires every
``idle_wake_ms`` while a stream is up. It bounds the idle wait, and it ends a write that has
run past ``write_timeout_ms`` (so that deadline holds to within ``idle_wake_ms``). A timer
per write was a measurable part of a small message's cost on these 2 cores.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import random
import time
from collections import deque
from typing import Any

import grpc

from consensus.transport._config import TransportConfig
from consensus.transport._framing import (
    STREAM_METHOD_PATH,
    EncodedMessage,
    batch_header,
    encode_batch,
    message_framing_bytes,
)
from proto import raft_service_pb2

log = logging.getLogger("consensus.transport")


class _ConnectFailedError(Exception):
    """One connection attempt ended in TRANSIENT_FAILURE or SHUTDOWN."""


class Link:
    """Outbound queue and stream to one peer. Driven by ``Transport``; not thread-safe."""

    def __init__(
        self,
        node_id: int,
        peer_id: int,
        address: str,
        config: TransportConfig,
        counters: dict[str, int],
        rng: random.Random,
        channel_options: list[tuple[str, Any]],
    ) -> None:
        self.node_id = node_id
        self.peer_id = peer_id
        self.address = address
        self.connected = False
        self._config = config
        self._counters = counters
        self._rng = rng
        self._channel_options = channel_options
        self._header = batch_header(node_id, peer_id)
        self._ready: deque[EncodedMessage] = deque()
        # Messages held back by a delay fault: (due time on the monotonic clock, tie-break, message).
        self._delayed: list[tuple[float, int, EncodedMessage]] = []
        self._delayed_sequence = itertools.count()
        # The batch being written: still counted as queued, so the bounds hold across a
        # write, and put back in front if the write provably sent nothing.
        self._in_flight: list[EncodedMessage] = []
        self.queued_bytes = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        # The watchdog (see the module docstring): when the write in flight began, and the
        # deadline that ends the stream's pump when that write is overdue.
        self._write_started: float | None = None
        self._pump_deadline: asyncio.Timeout | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._stream_progressed = False  # a batch was written on the current stream

    # ---- queue ----------------------------------------------------------------------------

    @property
    def queued_messages(self) -> int:
        return len(self._ready) + len(self._delayed) + len(self._in_flight)

    def enqueue(self, message: EncodedMessage, delay_s: float, now: float) -> bool:
        """Queue one encoded message; ``False`` (and nothing queued) when the queue is full."""
        config = self._config
        if (
            self.queued_messages >= config.outbound_queue_messages_max
            or self.queued_bytes + message.size > config.outbound_queue_bytes_max
        ):
            return False
        if delay_s > 0.0:
            heapq.heappush(self._delayed, (now + delay_s, next(self._delayed_sequence), message))
        else:
            self._ready.append(message)
        self.queued_bytes += message.size
        self._wake.set()
        return True

    def discard_queue(self) -> int:
        """Forget every queued message; returns how many there were."""
        count = self.queued_messages
        self._ready.clear()
        self._delayed.clear()
        self._in_flight = []
        self.queued_bytes = 0
        return count

    def _release_due(self, now: float) -> None:
        delayed = self._delayed
        while delayed and delayed[0][0] <= now:
            self._ready.append(heapq.heappop(delayed)[2])

    def _take_batch(self) -> bytes:
        """Move the next batch from the ready queue to in flight; returns its RaftBatch bytes."""
        config = self._config
        ready = self._ready
        taken: list[EncodedMessage] = []
        batch_size = len(self._header)
        while ready and len(taken) < config.batch_messages_max:
            size = message_framing_bytes(ready[0].size)
            # The first message always goes: send() made sure it fits in a gRPC message.
            if taken and batch_size + size > config.batch_bytes_max:
                break
            taken.append(ready.popleft())
            batch_size += size
        self._in_flight = taken
        batch = encode_batch(self._header, taken)
        if len(batch) != batch_size or len(batch) > config.message_bytes_max:
            raise AssertionError(
                f"batch to node {self.peer_id} is {len(batch)} bytes; expected {batch_size}, "
                f"at most {config.message_bytes_max}"
            )
        return batch

    def _end_write(self, requeue: bool) -> None:
        """The batch in flight is done with: put it back in front, or forget it."""
        if requeue:
            self._ready.extendleft(reversed(self._in_flight))
        else:
            self.queued_bytes -= sum(message.size for message in self._in_flight)
        self._in_flight = []

    # ---- task -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is not None:
            raise AssertionError(f"link to node {self.peer_id} already started")
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"raft-transport-{self.node_id}-to-{self.peer_id}"
        )

    def stop(self) -> asyncio.Task[None] | None:
        """Cancel the task; returns it so the caller can wait for its channel to close."""
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        return task

    async def _run(self) -> None:
        failures = 0
        # The flag as well as the cancellation: a cancellation swallowed by library code
        # must not leave the task running.
        while not self._stopping:
            progressed = await self._session()
            # A stream that carried something resets the back-off; even then the next
            # attempt waits a little, so a peer that accepts and then fails every stream
            # is never retried in a tight loop.
            failures = 1 if progressed else failures + 1
            await asyncio.sleep(self._backoff_s(failures))

    def _backoff_s(self, failures: int) -> float:
        config = self._config
        exponent = min(failures - 1, 32)
        ceiling_ms = min(config.backoff_max_ms, config.backoff_initial_ms * 2.0**exponent)
        return ceiling_ms * (0.5 + 0.5 * self._rng.random()) / 1000.0

    async def _session(self) -> bool:
        """Connect, then stream until the stream breaks. True if any batch was written."""
        channel = grpc.aio.insecure_channel(self.address, options=self._channel_options)
        try:
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
                # cancellation that arrives as the awaited thing finishes, and then close()
                # would wait on a task that never stops.
                async with asyncio.timeout(self._config.connect_timeout_ms / 1000.0):
                    await _wait_until_ready(channel)
            except (TimeoutError, _ConnectFailedError):
                self._counters["connect_failures"] += 1
                log.debug("node %d: cannot reach node %d at %s", self.node_id, self.peer_id, self.address)
                return False
            call = channel.stream_unary(
                STREAM_METHOD_PATH,
                request_serializer=None,  # batches are framed by hand (see _framing)
                response_deserializer=raft_service_pb2.StreamAck.FromString,
            )()
            call.add_done_callback(self._on_call_done)
            self._counters["connects"] += 1
            self.connected = True
            try:
                return await self._pump(call)
            finally:
                self.connected = False
                if not call.done():
                    call.cancel()
        finally:
            await channel.close()

    def _on_call_done(self, _call: object) -> None:
        self._wake.set()

    async def _pump(self, call: Any) -> bool:
        """Write batches to ``call`` until it breaks; True if any batch was written."""
        self._stream_progressed = False
        try:
            async with asyncio.timeout(None) as deadline:
                self._pump_deadline = deadline
                self._arm_watchdog()
                await self._pump_batches(call)
        except TimeoutError:
            # The watchdog found a write overdue: the peer stopped reading. Some of the
            # batch may have been sent: drop it rather than risk sending it twice.
            message_count = len(self._in_flight)
            self._end_write(requeue=False)
            self._counters["messages_dropped_write_failed"] += message_count
            self._counters["streams_broken"] += 1
            log.info(
                "node %d: stream to node %d broke while writing %d messages: write timed out",
                self.node_id,
                self.peer_id,
                message_count,
            )
        finally:
            self._pump_deadline = None
            self._write_started = None
            if self._watchdog is not None:
                self._watchdog.cancel()
                self._watchdog = None
        return self._stream_progressed

    def _arm_watchdog(self) -> None:
        loop = asyncio.get_running_loop()
        self._watchdog = loop.call_at(loop.time() + self._config.idle_wake_ms / 1000.0, self._on_watchdog)

    def _on_watchdog(self) -> None:
        self._wake.set()
        started = self._write_started
        deadline = self._pump_deadline
        if deadline is None:
            self._watchdog = None
            return
        now = asyncio.get_running_loop().time()
        if started is not None and now - started >= self._config.write_timeout_ms / 1000.0:
            self._watchdog = None
            deadline.reschedule(now)  # ends _pump_batches with a TimeoutError in _pump
            return
        self._arm_watchdog()

    async def _pump_batches(self, call: Any) -> None:
        counters = self._counters
        loop = asyncio.get_running_loop()
        while not self._stopping:
            if call.done():
                counters["streams_broken"] += 1
                code = await call.code()
                log.info("node %d: stream to node %d ended (%s)", self.node_id, self.peer_id, code)
                return
            now = time.monotonic()
            self._release_due(now)
            if not self._ready:
                self._wake.clear()
                if self._delayed:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(max(0.0, self._delayed[0][0] - now)):
                            await self._wake.wait()
                else:
                    # Bounded by the watchdog, which sets the event every idle_wake_ms.
                    await self._wake.wait()
                continue
            batch = self._take_batch()
            message_count = len(self._in_flight)
            self._write_started = loop.time()
            try:
                await call.write(batch)
            except asyncio.InvalidStateError:
                # The stream had ended before the write began: nothing was sent, so the
                # batch goes back in front and leaves on the next stream.
                self._end_write(requeue=True)
                continue
            except grpc.aio.AioRpcError as exc:
                # Some of it may have been sent: drop it rather than risk sending it twice.
                self._end_write(requeue=False)
                counters["messages_dropped_write_failed"] += message_count
                counters["streams_broken"] += 1
                log.info(
                    "node %d: stream to node %d broke while writing %d messages: %s",
                    self.node_id,
                    self.peer_id,
                    message_count,
                    _describe(exc),
                )
                return
            finally:
                self._write_started = None
            self._end_write(requeue=False)
            counters["messages_sent"] += message_count
            counters["bytes_sent"] += len(batch)
            counters["batches_sent"] += 1
            self._stream_progressed = True


async def _wait_until_ready(channel: grpc.aio.Channel) -> None:
    """Wait for one connection attempt; raises ``_ConnectFailedError`` if it fails.

    Each channel gets one attempt (grpc's own reconnect back-off never comes into play):
    the link makes a fresh channel per attempt and paces attempts with its own back-off.
    """
    connectivity = grpc.ChannelConnectivity
    state = channel.get_state(try_to_connect=True)
    while state is not connectivity.READY:
        if state in (connectivity.TRANSIENT_FAILURE, connectivity.SHUTDOWN):
            raise _ConnectFailedError(state.name)
        await channel.wait_for_state_change(state)
        state = channel.get_state(try_to_connect=True)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return f"{type(exc).__name__}: {exc}"


def channel_options(config: TransportConfig) -> list[tuple[str, Any]]:
    return [
        ("grpc.max_send_message_length", config.message_bytes_max),
        ("grpc.max_receive_message_length", config.message_bytes_max),
        # A private subchannel per channel: a fresh channel must not inherit the connection
        # (or the reconnect back-off) of one that failed.
        ("grpc.use_local_subchannel_pool", 1),
        ("grpc.enable_retries", 0),
        ("grpc.keepalive_time_ms", config.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", config.keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]
