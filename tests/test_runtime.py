"""The asyncio driver over real storage: three nodes in one event loop.

Messages between the nodes are handed over through the event loop (the gRPC transport is
tested on its own); storage is the real ``NodeStorage`` on disk. Tests wait for
conditions with deadlines, never for fixed times.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from consensus import ConfState, Entry, Message, MessageType, NotLeaderError, RaftConfig, Role
from consensus.runtime import NodeStoppedError, RaftNode, RuntimeConfig
from consensus.storage import FsyncPolicy, NodeStorage, StorageConfig

T = TypeVar("T")


class AppendLog:
    """A state machine that records every applied payload (and returns its position)."""

    def __init__(self) -> None:
        self.items: list[bytes] = []

    def apply(self, entry: Entry) -> object:
        self.items.append(entry.data)
        return len(self.items)

    def snapshot(self) -> bytes:
        return b"\n".join(self.items)

    def restore(self, data: bytes) -> None:
        self.items = data.split(b"\n") if data else []


def items(node: RaftNode) -> list[bytes]:
    machine = node.state_machine
    assert isinstance(machine, AppendLog)
    return machine.items


class LoopCluster:
    def __init__(
        self,
        tmp_path: Path,
        n: int = 3,
        snapshot_every_entries: int = 10_000,
        snapshot_every_bytes: int = 256 << 20,
        proposal_batches_in_flight_max: int = 0,
    ) -> None:
        self.tmp_path = tmp_path
        self.conf = ConfState(tuple(range(1, n + 1)))
        self.nodes: dict[int, RaftNode] = {}
        self.runtime_config = RuntimeConfig(
            tick_interval_ms=5,
            snapshot_every_entries=snapshot_every_entries,
            snapshot_every_bytes=snapshot_every_bytes,
            proposal_batches_in_flight_max=proposal_batches_in_flight_max,
        )
        # While set, appends that carry entries are kept here instead of delivered
        # (heartbeats still pass, so nobody's election timer runs out).
        self.held_appends: list[Message] | None = None

    def hold_appends(self) -> None:
        self.held_appends = []

    def release_appends(self) -> None:
        held, self.held_appends = self.held_appends or [], None
        for msg in held:
            self.send(msg)

    def send(self, msg: Message) -> None:
        if self.held_appends is not None and msg.type == MessageType.APPEND and msg.entries:
            self.held_appends.append(msg)
            return
        target = self.nodes.get(msg.recipient)
        if target is not None:
            asyncio.get_running_loop().call_soon(target.deliver, msg)

    def start(self, node_id: int) -> RaftNode:
        storage = NodeStorage.open(
            self.tmp_path / f"n{node_id}", cluster_id="runtime-test", node_id=node_id,
            config=StorageConfig(fsync=FsyncPolicy.NEVER),
        )  # fmt: skip
        node = RaftNode(
            RaftConfig(node_id, self.conf),
            storage,
            self.send,
            AppendLog(),
            self.runtime_config,
            random.Random(node_id),
        )
        self.nodes[node_id] = node
        node.start()
        return node

    async def stop(self, node_id: int) -> None:
        node = self.nodes.pop(node_id)
        await node.stop()
        node.storage.close()

    async def stop_all(self) -> None:
        for node_id in list(self.nodes):
            await self.stop(node_id)

    async def leader(self, timeout_s: float = 10.0) -> RaftNode:
        async def one_leader() -> RaftNode | None:
            leaders = [n for n in self.nodes.values() if n.core.role == Role.LEADER]
            return leaders[0] if len(leaders) == 1 else None

        return await wait_for_value(one_leader, timeout_s)


async def wait_for_value(probe: Callable[[], Awaitable[T | None]], timeout_s: float) -> T:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        value = await probe()
        if value is not None and value is not False:
            return value
        await asyncio.sleep(0.005)
    raise AssertionError(f"condition not met within {timeout_s} s")


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    async def probe() -> bool | None:
        return True if predicate() else None

    await wait_for_value(probe, timeout_s)


def run(coro: Awaitable[None]) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(coro, 60)

    asyncio.run(bounded())


def test_proposals_from_many_clients_are_applied_once_everywhere(tmp_path: Path) -> None:
    async def scenario() -> None:
        cluster = LoopCluster(tmp_path)
        for node_id in (1, 2, 3):
            cluster.start(node_id)
        try:
            leader = await cluster.leader()
            payloads = [f"p{k}".encode() for k in range(200)]
            results = await asyncio.gather(*(leader.propose(p, timeout_s=10) for p in payloads))
            assert sorted(results) == list(range(1, 201))  # type: ignore[type-var]
            await wait_until(lambda: all(len(items(n)) == 200 for n in cluster.nodes.values()))
            logs = [items(n) for n in cluster.nodes.values()]
            assert logs[0] == logs[1] == logs[2]
            assert sorted(logs[0]) == sorted(payloads)
        finally:
            await cluster.stop_all()

    run(scenario())


@pytest.mark.parametrize("batches_in_flight_max", [0, 1])
def test_proposals_wait_for_the_batch_in_flight_only_when_the_limit_says_so(
    tmp_path: Path, batches_in_flight_max: int
) -> None:
    async def scenario() -> None:
        cluster = LoopCluster(tmp_path, proposal_batches_in_flight_max=batches_in_flight_max)
        for node_id in (1, 2, 3):
            cluster.start(node_id)
        try:
            leader = await cluster.leader()
            await leader.propose(b"warm-up", timeout_s=10)  # the term's first entry is committed
            batches_before = leader.counters["proposal_batches"]
            proposals_before = leader.counters["proposals"]
            cluster.hold_appends()  # the next batch cannot commit until released
            first = asyncio.ensure_future(leader.propose(b"first", timeout_s=10))
            await wait_until(lambda: leader.counters["proposal_batches"] == batches_before + 1)
            rest = [asyncio.ensure_future(leader.propose(b"rest-%d" % k, timeout_s=10)) for k in range(20)]
            if batches_in_flight_max == 1:
                # The driver takes several turns (ticks) with the 20 proposals queued...
                await wait_until(lambda: leader.status()["proposals_queued"] == 20)
                ticks = leader.counters["ticks"]
                await wait_until(lambda: leader.counters["ticks"] >= ticks + 3)
                # ...and proposes none of them while "first" is not committed.
                assert leader.counters["proposal_batches"] == batches_before + 1
                assert leader.status()["proposals_queued"] == 20
            else:  # without a limit they go at once, behind the uncommitted batch
                await wait_until(lambda: leader.counters["proposals"] == proposals_before + 21)
                assert not first.done()
            cluster.release_appends()
            results = await asyncio.gather(first, *rest)
            assert sorted(results) == list(range(2, 23))  # type: ignore[type-var]
            if batches_in_flight_max == 1:
                # Everything that waited left as one batch once "first" committed.
                assert leader.counters["proposal_batches"] == batches_before + 2
            expected = [b"warm-up", b"first", *(b"rest-%d" % k for k in range(20))]
            await wait_until(lambda: all(len(items(n)) == 22 for n in cluster.nodes.values()))
            for node in cluster.nodes.values():
                assert items(node) == expected
        finally:
            await cluster.stop_all()

    run(scenario())


def test_a_negative_batches_in_flight_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="proposal_batches_in_flight_max must be >= 0, got -1"):
        RuntimeConfig(proposal_batches_in_flight_max=-1)


def test_a_log_of_big_entries_is_snapshotted_by_bytes_but_never_more_than_the_state_is_worth(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        # 60 entries of 100 bytes, a snapshot every 1,500 bytes at the least: the entry count
        # (10,000) never triggers one. This state machine's snapshot grows with every entry,
        # so each snapshot waits for as many new bytes as the previous snapshot held: at
        # 15 entries, then 31, never a fourth (that would need 63); by bytes alone, four.
        cluster = LoopCluster(tmp_path, n=1, snapshot_every_bytes=1_500)
        node = cluster.start(1)
        try:
            await cluster.leader()
            for k in range(60):
                await node.propose(f"{k:03d}".encode().ljust(100, b"."), timeout_s=10)
            # Snapshot files are written in a thread; each is counted once it is durable.
            await wait_until(lambda: node.counters["snapshots_taken"] >= 1 and node._snapshot_write is None)
            assert 1 <= node.counters["snapshots_taken"] <= 2
            assert node.storage.snapshot_meta is not None and node.storage.snapshot_meta.index >= 15
        finally:
            await cluster.stop_all()
        restarted = cluster.start(1)  # the snapshot and the log after it give back every entry
        try:
            await wait_until(lambda: len(items(restarted)) == 60)
            assert items(restarted) == [f"{k:03d}".encode().ljust(100, b".") for k in range(60)]
        finally:
            await cluster.stop_all()

    run(scenario())


def test_leader_stop_fails_over_and_writes_continue_and_restart_catches_up(tmp_path: Path) -> None:
    async def scenario() -> None:
        cluster = LoopCluster(tmp_path, snapshot_every_entries=50)
        for node_id in (1, 2, 3):
            cluster.start(node_id)
        try:
            leader = await cluster.leader()
            for k in range(30):
                await leader.propose(b"before-%d" % k, timeout_s=10)
            old = leader.node_id
            await cluster.stop(old)
            new_leader = await cluster.leader()
            assert new_leader.node_id != old
            for k in range(100):  # enough to pass a snapshot threshold: the old node needs it
                await new_leader.propose(b"after-%d" % k, timeout_s=10)
            assert new_leader.counters["snapshots_taken"] >= 1
            restarted = cluster.start(old)
            expected = items(new_leader)
            await wait_until(lambda: items(restarted) == expected)
            assert restarted.counters["snapshots_installed"] >= 1
        finally:
            await cluster.stop_all()

    run(scenario())


def test_read_index_waits_for_apply_and_followers_redirect(tmp_path: Path) -> None:
    async def scenario() -> None:
        cluster = LoopCluster(tmp_path)
        for node_id in (1, 2, 3):
            cluster.start(node_id)
        try:
            leader = await cluster.leader()
            await leader.propose(b"x", timeout_s=10)
            index = await leader.read_index(timeout_s=10)
            assert leader.core.applied_index >= index >= 2
            assert items(leader) == [b"x"]
            follower = next(n for n in cluster.nodes.values() if n is not leader)
            await wait_until(lambda: follower.core.leader_id == leader.node_id)
            with pytest.raises(NotLeaderError) as info:
                await follower.read_index(timeout_s=1)
            assert info.value.leader_id == leader.node_id
            with pytest.raises(NotLeaderError):
                await follower.propose(b"y", timeout_s=1)
        finally:
            await cluster.stop_all()

    run(scenario())


def test_everything_survives_a_full_stop_and_restart(tmp_path: Path) -> None:
    async def scenario() -> None:
        cluster = LoopCluster(tmp_path)
        for node_id in (1, 2, 3):
            cluster.start(node_id)
        leader = await cluster.leader()
        for k in range(20):
            await leader.propose(b"v%d" % k, timeout_s=10)
        acknowledged = list(items(leader))
        await cluster.stop_all()
        with pytest.raises(NodeStoppedError):
            await leader.propose(b"late", timeout_s=1)
        for node_id in (1, 2, 3):
            cluster.start(node_id)
        try:
            leader = await cluster.leader()
            await leader.propose(b"after-restart", timeout_s=10)
            assert items(leader) == [*acknowledged, b"after-restart"]
        finally:
            await cluster.stop_all()

    run(scenario())
