"""``RaftAdmin.SetTickRate``: a node's tick timer skewed over real gRPC on 127.0.0.1.

The RPC's validation, the driver loop following the transport's rate, a fast-ticking node
campaigning more often than one at the normal rate, and a group whose leader ticks slowly
going on committing without an election. Every wait is a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import grpc
import pytest

from consensus import ConfState, Entry, Message, MessageType, RaftConfig, Role
from consensus.runtime import RaftNode, RuntimeConfig
from consensus.storage import FsyncPolicy, NodeStorage, StorageConfig
from consensus.tick_rate import TickRate, TickRateError
from consensus.transport import AdminClient, Transport, TransportConfig

FAST = TransportConfig(
    backoff_initial_ms=10.0, backoff_max_ms=100.0, connect_timeout_ms=1000.0, idle_wake_ms=200.0
)
TICK_MS = 10.0


def run(test: Callable[[], Coroutine[Any, Any, None]], timeout_s: float = 30.0) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(test(), timeout_s)

    asyncio.run(bounded())


async def wait_until(predicate: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.005)


class Counter:
    """A state machine that counts what it applied."""

    def __init__(self) -> None:
        self.applied = 0

    def apply(self, entry: Entry) -> object:
        self.applied += 1
        return self.applied

    def snapshot(self) -> bytes:
        return str(self.applied).encode()

    def restore(self, data: bytes) -> None:
        self.applied = int(data or b"0")


def open_storage(directory: Path, node_id: int) -> NodeStorage:
    return NodeStorage.open(
        directory, cluster_id="tick-rate", node_id=node_id, config=StorageConfig(fsync=FsyncPolicy.NEVER)
    )


def make_node(
    directory: Path,
    node_id: int,
    voters: tuple[int, ...],
    send: Callable[[Message], None],
    tick_rate: TickRate | None = None,
    tick_ms: float = TICK_MS,
) -> RaftNode:
    return RaftNode(
        RaftConfig(node_id, ConfState(voters), election_timeout_ticks=10),
        open_storage(directory / f"n{node_id}", node_id),
        send,
        Counter(),
        RuntimeConfig(tick_interval_ms=tick_ms),
        random.Random(node_id),
        tick_rate=tick_rate,
    )


# ---- the rate and the RPC ----------------------------------------------------------------------


@pytest.mark.parametrize("factor", [0.0, -1.0, 0.05, 10.5, math.inf, math.nan])
def test_a_tick_rate_outside_its_bounds_is_refused(factor: float) -> None:
    rate = TickRate()
    with pytest.raises(TickRateError, match=r"\[0\.1, 10\]|finite"):
        rate.set(factor)
    assert rate.factor == 1.0


def test_set_tick_rate_refuses_bad_factors_with_invalid_argument_and_restores_with_1() -> None:
    async def scenario() -> None:
        async with (
            Transport(1, "127.0.0.1:0", config=FAST) as transport,
            AdminClient(transport.address) as admin,
        ):
            for bad in (0.0, 0.09, 11.0, -2.0, math.nan):
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await admin.set_tick_rate(bad)
                assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                details = caught.value.details() or ""
                assert details.startswith("SetTickRateRequest.factor: tick rate factor must be"), details
                assert transport.tick_rate.factor == 1.0
            fast = await admin.set_tick_rate(4.0)
            assert (fast.previous_factor, fast.factor, fast.driven) == (1.0, 4.0, False)
            assert transport.tick_rate.factor == 4.0
            back = await admin.set_tick_rate(1.0)
            assert (back.previous_factor, back.factor) == (4.0, 1.0)

    run(scenario)


def test_a_node_given_its_transports_rate_follows_set_tick_rate(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Transport(1, "127.0.0.1:0", config=FAST) as transport:
            node = make_node(tmp_path, 1, (1,), transport.send, tick_rate=transport.tick_rate)
            node.start()
            try:
                async with AdminClient(transport.address) as admin:
                    response = await admin.set_tick_rate(2.5)
                assert response.driven
                assert node.status()["tick_rate"] == 2.5
            finally:
                await node.stop()
                node.storage.close()
            assert not transport.tick_rate.driven  # a stopped node no longer listens

    run(scenario)


# ---- what a skewed timer does to Raft ----------------------------------------------------------


def test_a_fast_ticking_node_campaigns_sooner_than_one_at_the_normal_rate(tmp_path: Path) -> None:
    """Two lone nodes of 3-voter groups whose peers are down: each campaigns (pre-votes)
    whenever its election timer runs out. The one at 10x gets far more rounds in."""

    async def scenario() -> None:
        campaigns = {1: 0, 2: 0}

        def recorder(node_id: int) -> Callable[[Message], None]:
            def send(msg: Message) -> None:
                if msg.type in (MessageType.PRE_VOTE, MessageType.VOTE):
                    campaigns[node_id] += 1

            return send

        async with Transport(1, "127.0.0.1:0", config=FAST) as transport:
            rate = transport.tick_rate
            fast = make_node(tmp_path, 1, (1, 2, 3), recorder(1), tick_rate=rate, tick_ms=20.0)
            normal = make_node(tmp_path, 2, (1, 2, 3), recorder(2), tick_ms=20.0)
            async with AdminClient(transport.address) as admin:
                assert (await admin.set_tick_rate(10.0)).driven is False  # no node started yet
            fast.start()
            normal.start()
            try:
                # Each round asks both peers. The fast node's election timeout is 10-20 ticks
                # of 2 ms, so 8 rounds take ~0.2-0.3 s; the normal one's first takes 0.2-0.4 s.
                await wait_until(lambda: campaigns[1] >= 16, "8 campaigns of the fast node")
                assert campaigns[2] <= campaigns[1] // 4, campaigns
                assert fast.counters["ticks"] > 3 * normal.counters["ticks"], (fast.status(), normal.status())
            finally:
                for node in (fast, normal):
                    await node.stop()
                    node.storage.close()

    run(scenario)


@contextlib.asynccontextmanager
async def transport_group(tmp_path: Path, size: int) -> AsyncIterator[tuple[list[Transport], list[RaftNode]]]:
    """``size`` nodes, each on its own transport (so each has a ``RaftAdmin``), all peers."""
    by_id: dict[int, RaftNode] = {}

    def receiver(node_id: int) -> Callable[[Message], None]:
        def deliver(msg: Message) -> None:
            node = by_id.get(node_id)
            if node is not None:
                node.deliver(msg)

        return deliver

    transports = [
        Transport(i, "127.0.0.1:0", config=FAST, seed=i, on_message=receiver(i)) for i in range(1, size + 1)
    ]
    try:
        for transport in transports:
            await transport.start()
        for transport in transports:
            for other in transports:
                if other is not transport:
                    transport.add_peer(other.node_id, other.address)
        voters = tuple(range(1, size + 1))
        for transport in transports:
            by_id[transport.node_id] = make_node(
                tmp_path, transport.node_id, voters, transport.send, tick_rate=transport.tick_rate
            )
        for node in by_id.values():
            node.start()
        yield transports, list(by_id.values())
    finally:
        for node in by_id.values():
            await node.stop()
            node.storage.close()
        for transport in transports:
            await transport.close()


def test_a_group_whose_leader_ticks_slowly_keeps_it_and_commits(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with transport_group(tmp_path, 3) as (transports, nodes):
            await wait_until(lambda: sum(n.core.role == Role.LEADER for n in nodes) == 1, "a leader")
            leader = next(n for n in nodes if n.core.role == Role.LEADER)
            followers = [n for n in nodes if n is not leader]
            term = leader.core.term
            async with AdminClient(transports[leader.node_id - 1].address) as admin:
                response = await admin.set_tick_rate(0.25)
            assert response.driven
            for k in range(20):
                assert await leader.propose(f"slow-{k}".encode(), timeout_s=5.0)
            # Long enough for any follower's timer to have run out twice over (20 ticks at most).
            start = [f.counters["ticks"] for f in followers]
            leader_start = leader.counters["ticks"]
            await wait_until(
                lambda: all(f.counters["ticks"] - s >= 50 for f, s in zip(followers, start, strict=True)),
                "50 follower ticks",
            )
            assert leader.core.role == Role.LEADER and leader.core.term == term
            assert all(f.core.leader_id == leader.node_id and f.core.term == term for f in followers)
            assert leader.counters["ticks"] - leader_start <= 25  # about 12 at a quarter of the rate
            assert await leader.propose(b"still-leading", timeout_s=5.0)
            await wait_until(lambda: all(applied(n) >= 21 for n in nodes), "every replica applied the 21")

    run(scenario)


def applied(node: RaftNode) -> int:
    machine = node.state_machine
    assert isinstance(machine, Counter)
    return machine.applied
