"""``Transport``: moves ``Message`` values between the nodes of one Raft group over gRPC."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

import grpc

from consensus.messages import Message
from consensus.tick_rate import TickRate
from consensus.transport._admin import AdminServicer
from consensus.transport._config import TransportConfig
from consensus.transport._errors import MessageTooLargeError, TransportError
from consensus.transport._faults import UNTOUCHED, FaultDirection, FaultInjector, FaultRule
from consensus.transport._framing import (
    BATCH_HEADER_BYTES_MAX,
    STREAM_METHOD_NAME,
    TRANSPORT_SERVICE_NAME,
    encode_message_parts,
    message_framing_bytes,
)
from consensus.transport._inbound import Inbound
from consensus.transport._link import Link, channel_options
from consensus.transport._stats import DropLog, TransportStats
from proto import raft_service_pb2, raft_service_pb2_grpc

log = logging.getLogger("consensus.transport")


class Transport:
    """The network of one Raft node: a gRPC server for what peers send it, and one stream
    per peer for what it sends them. It knows node ids and addresses, not Raft.

    * ``send(msg)`` never blocks: it encodes the message and queues it for
      ``msg.recipient``. Delivery is best effort, as Raft expects of a network: a message
      can be lost (a peer down for long, a full queue, a broken stream) but is never
      altered. Without faults, the messages of one stream arrive in send order.
    * Received messages go to ``on_message`` (called on the event loop, must not block)
      or, when none is given, into the bounded ``inbound`` queue.
    * Fault rules (``inject_fault``, or the ``RaftAdmin`` service on the same port) drop,
      duplicate, delay or cut off messages on chosen links, deterministically from ``seed``.
    * ``tick_rate`` (or ``RaftAdmin.SetTickRate``) speeds up or slows down the tick timer of
      the ``RaftNode`` that sends through this transport: a skewed clock, for fault tests.
    * ``counters()`` reports what moved and what was dropped, and why, per peer.

    Not thread-safe: call everything from the event loop that ran ``start``.
    """

    def __init__(
        self,
        node_id: int,
        listen_address: str,
        *,
        peers: Mapping[int, str] | None = None,
        on_message: Callable[[Message], None] | None = None,
        config: TransportConfig | None = None,
        seed: int = 0,
        services: Sequence[Callable[[grpc.aio.Server], None]] = (),
    ) -> None:
        if not isinstance(node_id, int) or node_id <= 0:
            raise ValueError(f"node_id must be a positive integer, got {node_id!r}")
        self.node_id = node_id
        self.config = config or TransportConfig()
        self.listen_address = listen_address
        self.seed = seed
        # Registrars of the application's own gRPC services (the coordinator's client API, a
        # store's parameter service): they share the node's one port with the Raft stream.
        self._services = tuple(services)
        self.faults = FaultInjector(
            node_id, seed, self.config.fault_rules_max, self.config.fault_delay_ms_max
        )
        # The tick rate of the Raft node this transport carries (``RaftAdmin.SetTickRate``):
        # a ``RaftNode`` whose ``send`` is this transport's follows it.
        self.tick_rate = TickRate()
        self.inbound: asyncio.Queue[Message] = asyncio.Queue(maxsize=self.config.inbound_queue_messages_max)
        self._stats = TransportStats()
        self._drop_log = DropLog(log, self.config.drop_log_interval_ms / 1000.0)
        self._inbound = Inbound(
            node_id, self.config, self.faults, self._stats, self._drop_log, on_message, self.inbound
        )
        self._channel_options = channel_options(self.config)
        self._links: dict[int, Link] = {}
        self._stopping_links: set[asyncio.Task[None]] = set()
        self._server: grpc.aio.Server | None = None
        self._port: int | None = None
        self._started = False
        self._closed = False
        for peer_id, address in (peers or {}).items():
            self.add_peer(peer_id, address)

    # ---- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on ``listen_address`` (port 0: a free port, see ``port``) and start sending."""
        if self._started or self._closed:
            raise TransportError(f"transport of node {self.node_id} was already started")
        self._started = True
        server = grpc.aio.server(options=self._server_options())
        stream_handler = grpc.stream_unary_rpc_method_handler(
            self._inbound.stream,
            request_deserializer=None,  # raw bytes: a batch that does not parse is counted, not fatal
            response_serializer=raft_service_pb2.StreamAck.SerializeToString,
        )
        handlers = {STREAM_METHOD_NAME: stream_handler}
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(TRANSPORT_SERVICE_NAME, handlers),)
        )
        if self.config.admin_service:
            raft_service_pb2_grpc.add_RaftAdminServicer_to_server(
                AdminServicer(self.faults, self.tick_rate), server
            )
        for register in self._services:
            register(server)
        try:
            port = server.add_insecure_port(self.listen_address)
        except RuntimeError as exc:
            text = f"node {self.node_id} cannot listen on {self.listen_address}: {exc}"
            raise TransportError(text) from exc
        if port == 0:
            raise TransportError(f"node {self.node_id} cannot listen on {self.listen_address}")
        await server.start()
        self._server = server
        self._port = port
        for link in self._links.values():
            link.start()
        log.info("node %d: transport listening on %s", self.node_id, self.address)

    async def close(self) -> None:
        """Stop sending and serving; waits (bounded by ``close_timeout_ms``) until done."""
        if self._closed:
            return
        self._closed = True
        self._inbound.close()
        tasks = set(self._stopping_links)
        for peer_id, link in self._links.items():
            task = link.stop()
            if task is not None:
                tasks.add(task)
            self._stats.peer(peer_id)["messages_discarded"] += link.discard_queue()
        self._links.clear()
        timeout_s = self.config.close_timeout_ms / 1000.0
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout_s)
            if pending:
                log.warning(
                    "node %d: %d sender tasks did not stop in %.1f s", self.node_id, len(pending), timeout_s
                )
        if self._server is not None:
            # No grace: streams never end on their own, and Raft tolerates the messages lost.
            async with asyncio.timeout(timeout_s):
                await self._server.stop(grace=None)
            self._server = None
            # stop() returns before the handlers of cancelled streams have unwound; an event
            # loop closed under them makes grpc print tracebacks.
            if not await self._inbound.wait_streams_done(timeout_s):
                log.warning("node %d: inbound streams did not end in %.1f s", self.node_id, timeout_s)

    async def __aenter__(self) -> Transport:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def port(self) -> int:
        """The port actually listened on (known once started)."""
        if self._port is None:
            raise TransportError(f"transport of node {self.node_id} is not started")
        return self._port

    @property
    def address(self) -> str:
        """``host:port`` with the port actually listened on: what peers should dial."""
        host = self.listen_address.rsplit(":", 1)[0]
        return f"{host}:{self.port}"

    # ---- peers ----------------------------------------------------------------------------

    def add_peer(self, node_id: int, address: str) -> None:
        """Send to ``node_id`` at ``address`` from now on (replacing an earlier address)."""
        if not isinstance(node_id, int) or node_id <= 0:
            raise ValueError(f"peer ids must be positive integers, got {node_id!r}")
        if node_id == self.node_id:
            raise ValueError(f"node {self.node_id} cannot be its own peer")
        if self._closed:
            raise TransportError(f"transport of node {self.node_id} is closed")
        existing = self._links.get(node_id)
        if existing is not None:
            if existing.address == address:
                return
            self.remove_peer(node_id)
        rng = random.Random(f"raft-transport-backoff/{self.seed}/{self.node_id}/{node_id}")
        link = Link(
            self.node_id, node_id, address, self.config, self._stats.peer(node_id), rng, self._channel_options
        )
        self._links[node_id] = link
        if self._server is not None:
            link.start()

    def remove_peer(self, node_id: int) -> None:
        """Stop sending to ``node_id``; its queued messages are discarded (and counted)."""
        link = self._links.pop(node_id, None)
        if link is None:
            return
        self._stats.peer(node_id)["messages_discarded"] += link.discard_queue()
        task = link.stop()
        if task is not None:
            # close() waits for it, so its channel is closed before the transport is.
            self._stopping_links.add(task)
            task.add_done_callback(self._stopping_links.discard)

    @property
    def peers(self) -> dict[int, str]:
        return {peer_id: link.address for peer_id, link in self._links.items()}

    # ---- sending --------------------------------------------------------------------------

    def send(self, msg: Message) -> None:
        """Queue ``msg`` for ``msg.recipient``; never blocks.

        Dropped (and counted) when the recipient is not a peer, or when its queue is full:
        then the message being sent is the one dropped, and what is already queued stays.
        For Raft that keeps the front of a pipelined stream of appends intact (dropping
        older messages would leave a gap that makes every later append fail the log check),
        and the leader resends whatever was lost once the follower's replies show it.

        Raises ``MessageTooLargeError`` (and counts it) for a message whose encoding cannot
        fit in one gRPC message of ``config.message_bytes_max``: it could never be sent, so
        the sender must split it (fewer entries per append, smaller snapshot chunks).
        """
        if msg.sender != self.node_id:
            raise ValueError(
                f"node {self.node_id} cannot send a {msg.type.name} whose sender is node {msg.sender}"
            )
        recipient = msg.recipient
        counters = self._stats.peer(recipient)
        if self._closed:
            counters["messages_discarded"] += 1
            return
        link = self._links.get(recipient)
        if link is None:
            counters["messages_dropped_unknown_peer"] += 1
            self._drop_log.warning(
                "unknown-peer",
                f"node {self.node_id}: dropped a {msg.type.name} for node {recipient}: not a peer",
            )
            return
        encoded = encode_message_parts(msg)
        if BATCH_HEADER_BYTES_MAX + message_framing_bytes(encoded.size) > self.config.message_bytes_max:
            counters["messages_refused_oversize"] += 1
            text = (
                f"node {self.node_id}: refused a {msg.type.name} for node {recipient} "
                f"of {encoded.size} bytes "
                f"({len(msg.entries)} entries, {len(msg.chunk_data)} snapshot bytes): one message must "
                f"fit in {self.config.message_bytes_max} bytes with its framing "
                "(TransportConfig.message_bytes_max)"
            )
            log.error("%s", text)
            raise MessageTooLargeError(text)
        fate = self.faults.fate(FaultDirection.OUTBOUND, recipient) if self.faults.active else UNTOUCHED
        if not fate:
            counters["messages_dropped_fault_out"] += 1
            return
        counters["messages_duplicated_fault_out"] += len(fate) - 1
        now = time.monotonic()
        for delay_s in fate:
            if delay_s > 0.0:
                counters["messages_delayed_fault_out"] += 1
            if not link.enqueue(encoded, delay_s, now):
                counters["messages_dropped_queue_full"] += 1

    # ---- faults ---------------------------------------------------------------------------

    def inject_fault(self, rule: FaultRule) -> int:
        """Add a fault rule (see ``FaultRule``); returns its id."""
        return self.faults.add(rule)

    def clear_faults(self, rule_ids: Iterable[int] | None = None) -> int:
        """Remove the given rules, or all when ``None``; returns how many were removed."""
        return self.faults.clear(rule_ids)

    def list_faults(self) -> list[tuple[int, FaultRule]]:
        return self.faults.rules()

    # ---- status ---------------------------------------------------------------------------

    def peer_counters(self, peer_id: int) -> dict[str, int]:
        """The counters of one peer, plus ``messages_dropped`` (every kind of drop summed)."""
        counters = self._stats.snapshot_peer(peer_id)
        link = self._links.get(peer_id)
        counters["queued_messages"] = link.queued_messages if link is not None else 0
        counters["queued_bytes"] = link.queued_bytes if link is not None else 0
        counters["connected"] = int(link is not None and link.connected)
        return counters

    def counters(self) -> dict[str, Any]:
        """Everything worth showing in a status output, as plain JSON-able values."""
        peer_ids = sorted(set(self._stats.peer_ids()) | set(self._links))
        return {
            "node_id": self.node_id,
            "address": self.address if self._port is not None else self.listen_address,
            "peers": {
                peer_id: {
                    "address": self._links[peer_id].address if peer_id in self._links else None,
                    **self.peer_counters(peer_id),
                }
                for peer_id in peer_ids
            },
            "inbound_queue_messages": self.inbound.qsize(),
            "inbound_delayed_messages": self._inbound.delayed_messages,
            "fault_rules": len(self.faults.rules()),
            **self._stats.totals,
        }

    # ---- internals ------------------------------------------------------------------------

    def _server_options(self) -> list[tuple[str, Any]]:
        config = self.config
        return [
            ("grpc.max_send_message_length", config.message_bytes_max),
            ("grpc.max_receive_message_length", config.message_bytes_max),
            # Two servers on one port would split a node's traffic between them: a restarted
            # node must fail to bind while its old self still listens.
            ("grpc.so_reuseport", 0),
            # Both ends ping to find a peer that vanished without closing its connection: the
            # server so that the handler of a dead peer's stream ends.
            ("grpc.keepalive_time_ms", config.keepalive_time_ms),
            ("grpc.keepalive_timeout_ms", config.keepalive_timeout_ms),
            # Peers ping at keepalive_time_ms even when idle; never punish that.
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_ping_strikes", 0),
        ]
