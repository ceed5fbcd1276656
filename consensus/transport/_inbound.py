"""The receiving half: the ``RaftTransport.Stream`` handler, inbound checks and delivery.

Every batch and message is checked before it is handed over; whatever fails a check is
dropped, counted and logged (rate-limited), and the stream goes on. Nothing a peer sends
can make the handler raise.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from google.protobuf.message import DecodeError

from consensus.codec import message_from_proto
from consensus.errors import InvalidMessageError
from consensus.messages import Message
from consensus.transport._config import TransportConfig
from consensus.transport._faults import FaultDirection, FaultInjector
from consensus.transport._stats import DropLog, TransportStats
from proto import raft_service_pb2

log = logging.getLogger("consensus.transport")


class Inbound:
    def __init__(
        self,
        node_id: int,
        config: TransportConfig,
        faults: FaultInjector,
        stats: TransportStats,
        drop_log: DropLog,
        on_message: Callable[[Message], None] | None,
        queue: asyncio.Queue[Message],
    ) -> None:
        self.node_id = node_id
        self._config = config
        self._faults = faults
        self._stats = stats
        self._drop_log = drop_log
        self._on_message = on_message
        self._queue = queue
        self._delayed: dict[int, asyncio.TimerHandle] = {}
        self._delayed_sequence = itertools.count()
        self._closed = False
        # The tasks serving streams right now; close() waits for them after stopping the server.
        self._streams: set[asyncio.Task[Any]] = set()

    async def stream(
        self, request_iterator: AsyncIterator[bytes], _context: object
    ) -> raft_service_pb2.StreamAck:
        """The ``RaftTransport.Stream`` handler (requests arrive as raw ``RaftBatch`` bytes)."""
        task = asyncio.current_task()
        if task is None:
            raise AssertionError("grpc runs every stream handler in a task")
        # Tracked until the task ends, not until this coroutine does: grpc's task goes on to
        # send the reply and the status.
        self._streams.add(task)
        task.add_done_callback(self._streams.discard)
        batches = 0
        messages = 0
        async for raw in request_iterator:
            batches += 1
            messages += self.receive_batch(raw)
        return raft_service_pb2.StreamAck(batches=batches, messages=messages)

    def receive_batch(self, raw: bytes) -> int:
        """Check and deliver one batch; returns how many of its messages were accepted."""
        totals = self._stats.totals
        try:
            batch = raft_service_pb2.RaftBatch.FromString(raw)
        except DecodeError as exc:
            totals["batches_malformed"] += 1
            self._drop_log.warning(
                "malformed", f"node {self.node_id}: dropped a malformed batch ({len(raw)} bytes): {exc}"
            )
            return 0
        sender = batch.from_node
        if sender == 0:
            totals["batches_without_sender"] += 1
            self._drop_log.warning("no-sender", f"node {self.node_id}: dropped a batch that names no sender")
            return 0
        counters = self._stats.peer(sender)
        counters["batches_received"] += 1
        counters["bytes_received"] += len(raw)
        if batch.to_node != self.node_id:
            totals["batches_wrong_recipient"] += 1
            counters["messages_dropped_wrong_recipient"] += len(batch.messages)
            self._drop_log.warning(
                "batch-recipient",
                f"node {self.node_id}: dropped a batch from node {sender} meant for node {batch.to_node}"
                " (does the sender have this node's address right?)",
            )
            return 0
        accepted = 0
        for proto in batch.messages:
            try:
                msg = message_from_proto(proto)
            except InvalidMessageError as exc:
                counters["messages_dropped_invalid"] += 1
                self._drop_log.warning(
                    "invalid", f"node {self.node_id}: dropped a message from node {sender}: {exc}"
                )
                continue
            if msg.recipient != self.node_id:
                counters["messages_dropped_wrong_recipient"] += 1
                self._drop_log.warning(
                    "recipient",
                    f"node {self.node_id}: dropped a {msg.type.name} from node {sender} "
                    f"addressed to node {msg.recipient}",
                )
                continue
            if msg.sender != sender:
                counters["messages_dropped_invalid"] += 1
                self._drop_log.warning(
                    "sender",
                    f"node {self.node_id}: dropped a {msg.type.name} claiming sender {msg.sender} "
                    f"on the stream of node {sender}",
                )
                continue
            counters["messages_received"] += 1
            accepted += 1
            if self._faults.active:
                self._deliver_with_faults(msg, counters)
            else:
                self._deliver(msg, counters)
        return accepted

    def _deliver_with_faults(self, msg: Message, counters: dict[str, int]) -> None:
        fate = self._faults.fate(FaultDirection.INBOUND, msg.sender)
        if not fate:
            counters["messages_dropped_fault_in"] += 1
            return
        counters["messages_duplicated_fault_in"] += len(fate) - 1
        loop = asyncio.get_running_loop()
        for delay_s in fate:
            if delay_s <= 0.0:
                self._deliver(msg, counters)
                continue
            counters["messages_delayed_fault_in"] += 1
            if len(self._delayed) >= self._config.inbound_delayed_messages_max:
                counters["messages_dropped_inbound_full"] += 1
                continue
            key = next(self._delayed_sequence)
            self._delayed[key] = loop.call_later(delay_s, self._deliver_delayed, key, msg, counters)

    def _deliver_delayed(self, key: int, msg: Message, counters: dict[str, int]) -> None:
        del self._delayed[key]
        if not self._closed:
            self._deliver(msg, counters)

    def _deliver(self, msg: Message, counters: dict[str, int]) -> None:
        on_message = self._on_message
        if on_message is None:
            try:
                self._queue.put_nowait(msg)
            except asyncio.QueueFull:
                counters["messages_dropped_inbound_full"] += 1
            return
        try:
            on_message(msg)
        except Exception:
            # The receiver's bug, not the peer's: log it in full, but keep the stream (and
            # the other messages in this batch) alive.
            self._stats.totals["deliver_errors"] += 1
            self._drop_log.warning("deliver", f"node {self.node_id}: on_message raised", exc_info=True)

    def close(self) -> None:
        self._closed = True
        for handle in self._delayed.values():
            handle.cancel()
        self._delayed.clear()

    async def wait_streams_done(self, timeout_s: float) -> bool:
        """After the server stopped: wait for the stream handlers to unwind (True if they did)."""
        if not self._streams:
            return True
        _, pending = await asyncio.wait(set(self._streams), timeout=timeout_s)
        return not pending

    @property
    def delayed_messages(self) -> int:
        return len(self._delayed)
