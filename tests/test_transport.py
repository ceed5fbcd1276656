"""consensus.transport over real gRPC servers on 127.0.0.1 (free ports, closed in ``finally``).

Each test runs its own event loop with ``asyncio.run`` and an overall deadline. Tests wait
for conditions (a message arrived, a counter moved) with deadlines, never for fixed times.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import grpc
import pytest

from consensus.codec import encode_message, message_to_proto
from consensus.messages import ConfState, Entry, EntryKind, Message, MessageType, SnapshotMeta
from consensus.transport import (
    AdminClient,
    FaultDirection,
    FaultInjector,
    FaultRule,
    MessageTooLargeError,
    Transport,
    TransportConfig,
    TransportError,
    batch_header,
    encode_batch,
)
from consensus.transport._framing import STREAM_METHOD_PATH
from proto import raft_pb2, raft_service_pb2

T = TypeVar("T")
MIB = 1024 * 1024

# Quick reconnects so that tests of restarts take milliseconds.
FAST = TransportConfig(
    backoff_initial_ms=10.0, backoff_max_ms=100.0, connect_timeout_ms=1000.0, idle_wake_ms=200.0
)


def run(test: Callable[[], Coroutine[Any, Any, None]], timeout_s: float = 15.0) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(test(), timeout_s)

    asyncio.run(bounded())


async def wait_until(predicate: Callable[[], bool], what: str, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.005)


async def receive(transport: Transport, count: int, timeout_s: float = 5.0) -> list[Message]:
    return [await asyncio.wait_for(transport.inbound.get(), timeout_s) for _ in range(count)]


async def within(awaitable: Awaitable[T], timeout_s: float = 5.0) -> T:
    return await asyncio.wait_for(awaitable, timeout_s)


@contextlib.asynccontextmanager
async def mesh(count: int, config: TransportConfig = FAST) -> AsyncIterator[list[Transport]]:
    """``count`` started transports (node ids 1..count), every one a peer of every other."""
    transports = [
        Transport(node_id, "127.0.0.1:0", config=config, seed=node_id) for node_id in range(1, count + 1)
    ]
    try:
        for transport in transports:
            await transport.start()
        for transport in transports:
            for other in transports:
                if other is not transport:
                    transport.add_peer(other.node_id, other.address)
        yield transports
    finally:
        for transport in transports:
            await transport.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def heartbeat(sender: int, recipient: int, context: int) -> Message:
    return Message(MessageType.HEARTBEAT, sender, recipient, term=1, context=context)


def every_kind_of_message(sender: int, recipient: int) -> list[Message]:
    conf = ConfState(voters=(1, 2, 3))
    meta = SnapshotMeta(index=10_500, term=4, conf=conf)
    ten_thousand = tuple(
        Entry(4, 1001 + i, EntryKind.NORMAL, i.to_bytes(4, "little") * 8) for i in range(10_000)
    )
    mixed = (
        Entry(4, 1, EntryKind.NOOP),
        Entry(4, 2, EntryKind.CONFIG, conf.encode()),
        Entry(4, 3, data=b"x"),
    )
    chunk = bytes(range(256)) * (4 * 1024)  # 1 MiB
    kinds = MessageType
    messages = [
        Message(kinds.PRE_VOTE, sender, recipient, term=5, log_term=4, index=11_000),
        Message(kinds.PRE_VOTE_RESPONSE, sender, recipient, term=5, reject=True),
        Message(kinds.VOTE, sender, recipient, term=5, log_term=4, index=11_000, force=True),
        Message(kinds.VOTE_RESPONSE, sender, recipient, term=5),
        Message(
            kinds.APPEND, sender, recipient, term=4, log_term=4, index=1000, entries=ten_thousand, commit=999
        ),
        Message(kinds.APPEND, sender, recipient, term=4, entries=mixed, commit=2),
        Message(
            kinds.APPEND_RESPONSE, sender, recipient, term=4, index=17, reject=True, reject_hint=9, log_term=3
        ),
        Message(kinds.HEARTBEAT, sender, recipient, term=4, commit=11_000, context=77),
        Message(kinds.HEARTBEAT_RESPONSE, sender, recipient, term=4, context=77),
        Message(
            kinds.SNAPSHOT,
            sender,
            recipient,
            term=4,
            snapshot_meta=meta,
            chunk_offset=MIB,
            chunk_data=chunk,
            chunk_last=True,
            snapshot_size=2 * MIB,
        ),
        Message(kinds.SNAPSHOT_RESPONSE, sender, recipient, term=4, chunk_offset=2 * MIB, index=10_500),
        Message(kinds.TIMEOUT_NOW, sender, recipient, term=4),
    ]
    assert {msg.type for msg in messages} == set(MessageType)
    return messages


# ---- moving messages ---------------------------------------------------------------------------


def test_three_nodes_exchange_every_kind_of_message_in_order() -> None:
    async def scenario() -> None:
        async with mesh(3) as nodes:
            sent = {node.node_id: [] for node in nodes}  # by recipient
            for sender in nodes:
                for recipient in nodes:
                    if recipient is not sender:
                        for msg in every_kind_of_message(sender.node_id, recipient.node_id):
                            sender.send(msg)
                            sent[recipient.node_id].append(msg)
            for node in nodes:
                arrived = await receive(node, len(sent[node.node_id]), timeout_s=10.0)
                for peer_id in {msg.sender for msg in sent[node.node_id]}:
                    expected = [msg for msg in sent[node.node_id] if msg.sender == peer_id]
                    assert [msg for msg in arrived if msg.sender == peer_id] == expected
                assert node.inbound.empty()
            counters = nodes[0].counters()
            json.dumps(counters)  # plain values, ready for a status page
            to_2 = counters["peers"][2]
            assert to_2["messages_sent"] == 12 and to_2["messages_received"] == 12
            assert to_2["connected"] == 1 and to_2["messages_dropped"] == 0
            assert to_2["bytes_sent"] == nodes[1].peer_counters(1)["bytes_received"] > MIB

    run(scenario)


def test_order_holds_across_many_batches_and_batches_stay_within_limits() -> None:
    config = TransportConfig(
        batch_bytes_max=64 * 1024, batch_messages_max=100, backoff_initial_ms=10.0, backoff_max_ms=100.0
    )

    async def scenario() -> None:
        async with mesh(3, config) as nodes:
            first, second, third = nodes
            payload = b"p" * 1000
            for i in range(3000):
                first.send(
                    Message(
                        MessageType.APPEND, 1, 3, term=1, index=i, entries=(Entry(1, i + 1, data=payload),)
                    )
                )
                second.send(heartbeat(2, 3, i))
            arrived = await receive(third, 6000)
            assert [msg.index for msg in arrived if msg.sender == 1] == list(range(3000))
            assert [msg.context for msg in arrived if msg.sender == 2] == list(range(3000))
            from_first = first.peer_counters(3)
            # ~1 KiB each and at most 64 KiB a batch: many batches, none over the limit.
            assert from_first["batches_sent"] >= 3000 * 1000 // (64 * 1024)
            assert from_first["bytes_sent"] <= from_first["batches_sent"] * 64 * 1024
            assert second.peer_counters(3)["batches_sent"] >= 30  # at most 100 messages a batch

    run(scenario)


def test_callback_receives_messages_and_its_errors_do_not_break_the_stream() -> None:
    async def scenario() -> None:
        got: list[Message] = []

        def on_message(msg: Message) -> None:
            if msg.context == 1:
                raise RuntimeError("a bug in the receiver")
            got.append(msg)

        receiver = Transport(2, "127.0.0.1:0", on_message=on_message, config=FAST)
        sender = Transport(1, "127.0.0.1:0", config=FAST)
        try:
            await receiver.start()
            await sender.start()
            sender.add_peer(2, receiver.address)
            for context in range(3):
                sender.send(heartbeat(1, 2, context))
            await wait_until(lambda: len(got) == 2, "the two good messages")
            assert [msg.context for msg in got] == [0, 2]
            assert receiver.counters()["deliver_errors"] == 1
        finally:
            await sender.close()
            await receiver.close()

    run(scenario)


# ---- peers coming and going --------------------------------------------------------------------


def test_a_peer_that_starts_late_gets_its_messages_once_up() -> None:
    async def scenario() -> None:
        port = free_port()
        sender = Transport(1, "127.0.0.1:0", config=FAST)
        late = Transport(2, f"127.0.0.1:{port}", config=FAST)
        try:
            await sender.start()
            sender.add_peer(2, f"127.0.0.1:{port}")
            sender.send(heartbeat(1, 2, 0))  # queued while nobody listens
            await wait_until(lambda: sender.peer_counters(2)["connect_failures"] >= 2, "failed attempts")
            assert sender.peer_counters(2)["queued_messages"] == 1
            await late.start()
            await wait_until(lambda: sender.peer_counters(2)["connected"] == 1, "the reconnect")
            for context in range(1, 6):
                sender.send(heartbeat(1, 2, context))
            assert [msg.context for msg in await receive(late, 6)] == list(range(6))
        finally:
            await sender.close()
            await late.close()

    run(scenario)


def test_a_restarted_peer_on_the_same_port_is_reconnected_to() -> None:
    async def scenario() -> None:
        sender = Transport(1, "127.0.0.1:0", config=FAST)
        first = Transport(2, "127.0.0.1:0", config=FAST)
        second: Transport | None = None
        try:
            await sender.start()
            await first.start()
            sender.add_peer(2, first.address)
            sender.send(heartbeat(1, 2, 1))
            assert [msg.context for msg in await receive(first, 1)] == [1]
            await first.close()
            await wait_until(
                lambda: sender.peer_counters(2)["connected"] == 0, "the broken stream to be seen"
            )
            second = Transport(2, first.address, config=FAST)
            await second.start()
            await wait_until(lambda: sender.peer_counters(2)["connects"] >= 2, "the reconnect")
            for context in range(2, 12):
                sender.send(heartbeat(1, 2, context))
            assert [msg.context for msg in await receive(second, 10)] == list(range(2, 12))
            assert sender.peer_counters(2)["streams_broken"] >= 1
        finally:
            await sender.close()
            await first.close()
            if second is not None:
                await second.close()

    run(scenario)


def test_a_second_transport_cannot_take_a_port_in_use() -> None:
    async def scenario() -> None:
        async with mesh(1) as (only,):
            intruder = Transport(2, only.address, config=FAST)
            try:
                with pytest.raises(TransportError, match="cannot listen"):
                    await intruder.start()
            finally:
                await intruder.close()

    run(scenario)


def test_queue_bounds_hold_under_a_dead_peer_and_reconnects_back_off() -> None:
    config = TransportConfig(
        outbound_queue_messages_max=100,
        outbound_queue_bytes_max=2 * MIB,
        message_bytes_max=MIB,
        batch_bytes_max=MIB,
        backoff_initial_ms=20.0,
        backoff_max_ms=100.0,
    )

    async def scenario() -> None:
        sender = Transport(1, "127.0.0.1:0", config=config)
        try:
            await sender.start()
            started = time.monotonic()
            sender.add_peer(2, f"127.0.0.1:{free_port()}")
            for context in range(1000):
                sender.send(heartbeat(1, 2, context))
            counters = sender.peer_counters(2)
            assert counters["queued_messages"] == 100
            assert counters["messages_dropped_queue_full"] == 900
            # The byte bound holds too: 512 KiB chunks, 2 MiB in all.
            sender.add_peer(3, f"127.0.0.1:{free_port()}")
            chunk = b"c" * (512 * 1024)
            for offset in range(10):
                sender.send(
                    Message(MessageType.SNAPSHOT, 1, 3, term=1, chunk_offset=offset, chunk_data=chunk)
                )
            counters = sender.peer_counters(3)
            assert counters["queued_messages"] == 3
            assert counters["queued_bytes"] <= 2 * MIB
            assert counters["messages_dropped_queue_full"] == 7
            # Attempts are paced: the n-th failure waits at least min(100, 20 * 2**(n-1)) / 2 ms.
            await wait_until(lambda: sender.peer_counters(2)["connect_failures"] >= 5, "five attempts")
            assert time.monotonic() - started >= (10 + 20 + 40 + 50) / 1000
            assert sender.peer_counters(2)["queued_messages"] == 100
            sender.remove_peer(2)
            assert sender.peer_counters(2)["messages_discarded"] == 100
            sender.send(heartbeat(1, 2, 0))
            assert sender.peer_counters(2)["messages_dropped_unknown_peer"] == 1
        finally:
            await sender.close()
        assert sender.peer_counters(3)["messages_discarded"] == 3

    run(scenario)


def test_a_peer_that_stops_reading_has_its_stream_dropped_after_the_write_timeout() -> None:
    """The write deadline is kept by the link's watchdog, not a timer per write: a peer whose
    handler never reads fills the HTTP/2 window, the write stalls, and the stream is dropped
    (the stalled batch counted as lost) within write_timeout_ms + idle_wake_ms."""
    config = TransportConfig(
        write_timeout_ms=300.0, idle_wake_ms=100.0, backoff_initial_ms=10.0, backoff_max_ms=50.0
    )
    stop_reading = asyncio.Event()

    async def never_read(request_iterator: object, context: grpc.aio.ServicerContext) -> bytes:
        await stop_reading.wait()
        return b""

    async def scenario() -> None:
        server = grpc.aio.server()
        handler = grpc.method_handlers_generic_handler(
            STREAM_METHOD_PATH.strip("/").split("/")[0],
            {STREAM_METHOD_PATH.rsplit("/", 1)[1]: grpc.stream_unary_rpc_method_handler(never_read)},
        )
        server.add_generic_rpc_handlers((handler,))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        sender = Transport(1, "127.0.0.1:0", config=config)
        try:
            await sender.start()
            sender.add_peer(2, f"127.0.0.1:{port}")
            chunk = b"c" * (512 * 1024)
            for offset in range(64):  # 32 MiB: far more than the peer's flow-control window
                message = Message(MessageType.SNAPSHOT, 1, 2, term=1, chunk_offset=offset, chunk_data=chunk)
                sender.send(message)
            await wait_until(
                lambda: sender.peer_counters(2)["messages_dropped_write_failed"] >= 1, "a write to time out"
            )
            counters = sender.peer_counters(2)
            assert counters["streams_broken"] >= 1
            assert counters["messages_sent"] < 64
        finally:
            stop_reading.set()
            await sender.close()
            await server.stop(grace=None)

    run(scenario)


# ---- limits and bad input ----------------------------------------------------------------------


def test_an_oversize_message_is_refused_and_counted() -> None:
    config = TransportConfig(message_bytes_max=MIB, batch_bytes_max=MIB, backoff_initial_ms=10.0)

    async def scenario() -> None:
        async with mesh(2, config) as (first, second):
            too_big = Message(MessageType.SNAPSHOT, 1, 2, term=1, chunk_data=b"s" * MIB)
            with pytest.raises(MessageTooLargeError, match="message_bytes_max"):
                first.send(too_big)
            assert first.peer_counters(2)["messages_refused_oversize"] == 1
            # Just under the limit still goes, one per batch.
            fits = MIB - 64
            for offset in range(3):
                first.send(
                    Message(MessageType.SNAPSHOT, 1, 2, term=1, chunk_offset=offset, chunk_data=b"s" * fits)
                )
            arrived = await receive(second, 3)
            assert [msg.chunk_offset for msg in arrived] == [0, 1, 2]
            assert first.peer_counters(2)["batches_sent"] == 3

    run(scenario)


def test_malformed_and_misaddressed_input_is_counted_and_dropped() -> None:
    async def scenario() -> None:
        async with mesh(1) as (node,):
            channel = grpc.aio.insecure_channel(node.address)
            try:
                call = channel.stream_unary(STREAM_METHOD_PATH)()  # raw bytes in, raw bytes out

                def good(context: int) -> bytes:
                    return encode_message(heartbeat(5, 1, context))

                bad_type = message_to_proto(heartbeat(5, 1, 0))
                bad_type.type = 99  # type: ignore[assignment]
                await call.write(b"\xff\xff\xff\xff")  # not a RaftBatch at all
                await call.write(encode_batch(batch_header(5, 9), [good(1)]))  # batch for node 9
                await call.write(
                    encode_batch(
                        batch_header(5, 1),
                        [
                            good(2),
                            bad_type.SerializeToString(),  # parses, but no such message type
                            encode_message(heartbeat(5, 4, 3)),  # for node 4
                            encode_message(heartbeat(6, 1, 4)),  # claims another sender
                            good(5),
                        ],
                    )
                )
                await call.write(raft_service_pb2.RaftBatch(to_node=1).SerializeToString())  # no sender
                await call.done_writing()
                ack = raft_service_pb2.StreamAck.FromString(await within(call))
                assert (ack.batches, ack.messages) == (4, 2)
                assert [msg.context for msg in await receive(node, 2)] == [2, 5]
                counters = node.counters()
                assert counters["batches_malformed"] == 1
                assert counters["batches_wrong_recipient"] == 1
                assert counters["batches_without_sender"] == 1
                from_5 = counters["peers"][5]
                assert from_5["messages_dropped_wrong_recipient"] == 2
                assert from_5["messages_dropped_invalid"] == 2
                assert from_5["messages_received"] == 2
            finally:
                await channel.close()

    run(scenario)


# ---- faults through the admin service ----------------------------------------------------------


def test_partition_through_the_admin_service_cuts_both_ways_until_cleared() -> None:
    async def scenario() -> None:
        async with mesh(2) as (first, second), AdminClient(first.address) as admin:
            rule_id = await admin.inject_fault(
                FaultRule(peers=frozenset({2}), direction=FaultDirection.BOTH, partition=True)
            )
            assert [rule_id for rule_id, _ in await admin.list_faults()] == [rule_id]
            for context in range(50):
                first.send(heartbeat(1, 2, context))
                second.send(heartbeat(2, 1, context))
            assert first.peer_counters(2)["messages_dropped_fault_out"] == 50
            assert first.peer_counters(2)["queued_messages"] == 0
            await wait_until(
                lambda: first.peer_counters(2)["messages_dropped_fault_in"] == 50, "inbound drops"
            )
            assert await admin.clear_faults() == 1
            # Links keep their order: had any partitioned message got through, it would come first.
            first.send(heartbeat(1, 2, 1000))
            second.send(heartbeat(2, 1, 1000))
            assert [msg.context for msg in await receive(second, 1)] == [1000]
            assert [msg.context for msg in await receive(first, 1)] == [1000]

    run(scenario)


def test_drop_through_the_admin_service_follows_the_seed() -> None:
    async def scenario() -> None:
        async with mesh(2) as (first, second), AdminClient(first.address) as admin:
            rule = FaultRule(peers=frozenset({2}), drop_probability=0.5)
            await admin.inject_fault(rule)
            for context in range(200):
                first.send(heartbeat(1, 2, context))
            await admin.clear_faults()
            first.send(heartbeat(1, 2, 1000))
            arrived: list[int] = []
            while not arrived or arrived[-1] != 1000:
                arrived.append((await within(second.inbound.get())).context)
            # The same seed, node and rule give the same fates, message by message.
            replay = FaultInjector(1, first.seed, rules_max=1, delay_ms_max=1.0)
            replay.add(rule)
            expected = [c for c in range(200) if replay.fate(FaultDirection.OUTBOUND, 2)]
            assert arrived == [*expected, 1000]
            assert 60 <= len(expected) <= 140
            assert first.peer_counters(2)["messages_dropped_fault_out"] == 200 - len(expected)

    run(scenario)


def test_duplicate_through_the_admin_service_delivers_each_message_twice() -> None:
    async def scenario() -> None:
        async with mesh(2) as (first, second), AdminClient(first.address) as admin:
            await admin.inject_fault(FaultRule(duplicate_probability=1.0))
            for context in range(20):
                first.send(heartbeat(1, 2, context))
            arrived = [msg.context for msg in await receive(second, 40)]
            assert arrived == [context for context in range(20) for _ in range(2)]
            assert first.peer_counters(2)["messages_duplicated_fault_out"] == 20

    run(scenario)


def test_delay_through_the_admin_service_shifts_arrival() -> None:
    async def scenario() -> None:
        async with mesh(3) as (first, second, third), AdminClient(second.address) as admin:
            # On node 2's receiving side: only what node 1 sends it is held back.
            await admin.inject_fault(
                FaultRule(
                    peers=frozenset({1}),
                    direction=FaultDirection.INBOUND,
                    delay_ms_min=300.0,
                    delay_ms_max=300.0,
                )
            )
            started = time.monotonic()
            first.send(heartbeat(1, 2, 1))
            third.send(heartbeat(3, 2, 3))
            fast = await receive(second, 1)
            slow = await receive(second, 1)
            slow_s = time.monotonic() - started
            assert [fast[0].context, slow[0].context] == [3, 1]
            assert slow_s >= 0.3
            assert second.peer_counters(1)["messages_delayed_fault_in"] == 1
            # The same on the sending side.
            await admin.clear_faults()
            second.inject_fault(FaultRule(peers=frozenset({3}), delay_ms_min=200.0, delay_ms_max=200.0))
            started = time.monotonic()
            second.send(heartbeat(2, 3, 7))
            await receive(third, 1)
            assert time.monotonic() - started >= 0.2
            assert second.peer_counters(3)["messages_delayed_fault_out"] == 1

    run(scenario)


def test_admin_service_refuses_an_impossible_rule() -> None:
    async def scenario() -> None:
        async with mesh(1) as (node,), AdminClient(node.address) as admin:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await admin.inject_fault(FaultRule(drop_probability=2.0))
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "drop_probability" in (caught.value.details() or "")
            assert await admin.list_faults() == []
            # A raw request with no direction is refused too.
            stub_call = admin._channel.unary_unary(
                "/paramstore.raft.RaftAdmin/InjectFault",
                request_serializer=raft_service_pb2.InjectFaultRequest.SerializeToString,
                response_deserializer=raft_service_pb2.InjectFaultResponse.FromString,
            )
            with pytest.raises(grpc.aio.AioRpcError, match="direction"):
                await stub_call(
                    raft_service_pb2.InjectFaultRequest(rule=raft_service_pb2.FaultRule()), timeout=5.0
                )

    run(scenario)


def test_admin_service_can_be_turned_off() -> None:
    async def scenario() -> None:
        config = TransportConfig(admin_service=False)
        async with mesh(1, config) as (node,), AdminClient(node.address) as admin:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await admin.list_faults()
            assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
            node.inject_fault(FaultRule(partition=True))  # the Python API stays
            assert len(node.list_faults()) == 1

    run(scenario)


def test_raft_pb2_is_what_the_batches_carry() -> None:
    # The service schema embeds the Raft message type itself, not a copy of it.
    field = raft_service_pb2.RaftBatch.DESCRIPTOR.fields_by_name["messages"]
    assert field.message_type is raft_pb2.Message.DESCRIPTOR
